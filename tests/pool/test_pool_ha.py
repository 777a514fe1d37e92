#!/usr/bin/env python3
"""test_pool_ha.py: HA settings and fencing on one host of a pool (one etcd
member, one cellad on the etcd store with a pool section; docs/pool.md,
"High availability").

- Settings: a pool section whose fence settings break the timing argument
  (fence_ms past its bound, ride-through without its time) is refused.
- Definitions: `ha` and `ha_priority` are API fields (and cella flags); an
  HA VM whose disk is not on pool storage is refused naming the disk, one
  on pool storage is accepted, the settings reach etcd.
- Fencing by cellad: etcd frozen (SIGSTOP) under a running HA VM and a
  non-HA one: cellad stops the HA worker (event vm-fenced) before the
  lease's TTL has passed since the freeze, and leaves the other running;
  etcd back: the host gets a new lease and, nobody else having taken it,
  takes the fenced VM back and starts it (it was fenced, not stopped).
- Fencing by the worker itself: cellad killed (kill -9) with the HA VM
  running and nothing to renew the lease: the HA worker dies by its own
  deadline (lease-extend, a timer on CLOCK_BOOTTIME; exit status 18,
  fenced) before the TTL has passed; the non-HA worker is left running.
- cellad alone killed on host-a (its workers left, nothing renews the
  lease): the HA worker (halog: appends (boot id, sequence) records to a
  disk on pool storage, a FLUSH after each) ends itself before the VM's
  first output on the host that takes it over; the disk's records form one
  run per boot, never interleaved (the guest-side proof of one copy at a
  time).
- Two hosts racing (ha_backoff_ms 0: every survivor tries at once): each
  of host-a's six HA VMs ends up owned by, and running on, exactly one.
- Isolation (three cellads in network namespaces on a bridge, three etcd
  members on the bridge's address): host-a's veth taken down under its HA
  VM (halog): host-a fences it (vm-fenced; the worker gone) before its
  first output on the host that takes it over; link up again: host-a gets
  a new lease and forgets the VM (vm-owned-elsewhere), one copy runs
  pool-wide, and the disk's records show one copy at a time.
- Ride-through: a pool section with "isolation": "ride-through" (30 s)
  and fencing 1 s after a renewal, TTL 8 s; etcd frozen for 5 s (past the fence
  time of the restart policy, within the TTL): the HA VM keeps running (same
  worker, the guest's rounds go on), events pool-host-isolated then
  pool-host-rejoined, no vm-fenced.
- Failover (three cellads on one etcd, prefix /cella/ha2): host-a's cellad
  and all its workers killed (kill -9), its HA VM's runtime record left as a
  host that fenced it itself would (stopped, "fenced: ..."): its HA VM runs
  on host-b or host-c
  (guest output there, event vm-failed-over naming host-a) within a
  deadline, exactly one of them owns and runs it; its non-HA VM is not
  started anywhere; its stopped HA VM is taken over but not started. host-a started again: it does not load or start the VM
  (owned elsewhere), one copy runs pool-wide.

Usage: test_pool_ha.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import shutil
import signal
import struct
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from cellad import Daemon, TestFailure, check, log, main  # noqa: E402

import etcdutil  # noqa: E402
import netutil  # noqa: E402

PREFIX = "/cella/ha"
TTL_S = 3
# Short settings for test speed: fence 2.29 s after the last confirmed
# renewal (fence_settings_check derives it), workers gone by 2.8 s < TTL.
POOL = {"lease_ttl_s": TTL_S, "renew_ms": 500, "kill_ms": 500, "margin_ms": 200}


def refused(args, config, text):
    d = Daemon(args, config=config)
    try:
        d.start()
    except TestFailure as e:
        ok = "exited with 2" in str(e) and text in d.log()
        if not ok:
            log(f"cellad: {e}; log: {d.log()[-400:]}")
        check(ok, f"pool {json.dumps(config['pool'])}: refused, '{text}'")
        return
    finally:
        d.stop()
        shutil.rmtree(d.dir, ignore_errors=True)
    raise TestFailure(f"cellad started with {config['pool']}")


def wait_for(what, pred, timeout=20):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out: {what}")
        time.sleep(0.02)  # polling with a deadline
    check(True, what)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test(args):
    etcdutil.need_etcd()
    work = tempfile.mkdtemp(prefix="cella-ha-")
    shared, local = os.path.join(work, "shared"), os.path.join(work, "local")
    os.makedirs(shared)
    os.makedirs(local)
    for d in (shared, local):
        with open(os.path.join(d, "d.img"), "wb") as f:
            f.truncate(1 << 20)
    storage = [{"name": "shared", "path": shared, "role": "operator", "pool": True},
               {"name": "local", "path": local, "role": "operator"}]
    try:
        with etcdutil.Cluster(1) as c:
            run(args, c, storage, shared, local)
            failover(args, c, storage, shared, local)
            ride_through(args, c, storage, shared)
            race(args, c, storage)
        if os.geteuid() == 0:
            isolation(args, storage, shared)
        else:
            log("SKIP the isolation scenario: needs root (network namespaces)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, c, storage, shared, local):
    store = {"etcd": dict(c.store_config(prefix=PREFIX, host="host-a"), timeout_ms=1000)}
    refused(args, {"store": store, "pool": dict(POOL, fence_ms=2900)}, "is unsafe")
    refused(args, {"store": store, "pool": dict(POOL, isolation="ride-through")},
            "goes with \"ride_through_s\"")
    conf = {"store": store, "pool": POOL, "storage": storage}
    with Daemon(args, config=conf) as d:
        body = {"ha": True, "disks": [{"path": os.path.join(local, "d.img")}]}
        r = d.post("/v1/vms", dict(body, name="ha1", kernel=args["guests"]["memwriter"],
                                   memory_mib=64))
        check(r.status == 400 and r.json["error"]["field"] == "disks[0].path" and
              "pool storage" in r.json["error"]["reason"],
              f"an HA VM's disk off pool storage is refused: {r.json}")
        r = d.post("/v1/vms", {"name": "ha1", "kernel": args["guests"]["memwriter"],
                               "memory_mib": 64, "ha": True, "ha_priority": 1001})
        check(r.status == 400 and r.json["error"]["field"] == "ha_priority",
              "ha_priority past 1000 is refused")
        ha = d.define("ha1", "memwriter", "rounds=0 mib=1 pause_ms=50", ha=True, ha_priority=5,
                      disks=[{"path": os.path.join(shared, "d.img")}])
        check(ha["ha"] is True and ha["ha_priority"] == 5, "an HA VM on pool storage is defined")
        rec = json.loads(c.etcdctl("get", f"{PREFIX}/vms/{ha['uuid']}",
                                   "--print-value-only").stdout)
        check(rec["ha"] is True and rec["ha_priority"] == 5, "its HA settings are in etcd")
        d.define("plain", "memwriter", "rounds=0 mib=1 pause_ms=50",
                 disks=[{"path": os.path.join(local, "d.img")}])
        p = d.cli("vm", "set", "plain", "--ha", expect=None)
        check(p.returncode != 0 and "pool storage" in (p.stdout + p.stderr),
              "cella vm set --ha on a VM with a local disk is refused")
        d.cli("vm", "set", "ha1", "--ha-priority", "7")
        check(d.vm("ha1")["ha_priority"] == 7, "cella vm set --ha-priority")

        # Fencing by cellad: etcd frozen.
        d.action("ha1", "start")
        d.action("plain", "start")
        d.wait_console("ha1", "round 2")
        d.wait_console("plain", "round 2")
        ha_pid, plain_pid = d.vm("ha1")["pid"], d.vm("plain")["pid"]
        etcd = c.members[0].proc.pid
        log("freezing etcd (SIGSTOP)")
        t0 = time.monotonic()
        os.kill(etcd, signal.SIGSTOP)
        try:
            wait_for("the HA worker is stopped", lambda: not alive(ha_pid), timeout=10)
            took = time.monotonic() - t0
            check(took < TTL_S, f"... {took:.2f} s after the freeze, before the TTL ({TTL_S} s)")
            d.wait_event("ha1", "vm-fenced", timeout=10)
            check(True, "event vm-fenced")
            check(alive(plain_pid) and d.vm("plain")["state"] == "running",
                  "the non-HA VM keeps running")
        finally:
            os.kill(etcd, signal.SIGCONT)
        wait_for("the host gets a new lease once etcd is back",
                 lambda: "alive again" in d.log(), timeout=20)
        check(d.vm("ha1")["state"] in ("stopped", "crashed"),
              f"the fenced VM is not started again here: {d.vm('ha1')['state']}")

        # Its owner key went with the fenced lease; the host, up again, takes
        # the VM back (nobody else did) and starts it: it was fenced by the
        # pool, not stopped by its user (its runtime record says "fenced").
        wait_for("host-a owns the fenced VM again", lambda: c.etcdctl(
            "get", f"{PREFIX}/owner/{ha['uuid']}", "--print-value-only").stdout.strip() ==
            "host-a", timeout=10)
        rt = json.loads(c.etcdctl("get", f"{PREFIX}/hosts/host-a/runtime/{ha['uuid']}",
                                  "--print-value-only").stdout or "{}")
        wait_for("... and starts it again (HA)", lambda: d.vm("ha1")["state"] == "running",
                 timeout=20)
        check(True, f"the fenced VM's record said {rt.get('exit_reason', '')[:40]!r}; HA "
              "started it again on the only host")

        # A quick cellad restart (SIGTERM, start): the HA worker is adopted,
        # its ownership moves to the new lease and its deadline is extended.
        d.wait_console("ha1", "round 2")
        ha_pid = d.vm("ha1")["pid"]
        d.stop()
        d.start()
        check(d.vm("ha1")["pid"] == ha_pid, "a restarted cellad adopts the HA worker")
        wait_for("its ownership is bound to the new lease",
                 lambda: d.log().count("ownership is on host host-a's lease") >= 1, timeout=10)
        n = d.console("ha1").count("round")
        d.wait_console("ha1", f"round {n + 80} ", timeout=30)  # 80 x 50 ms: past the TTL
        check(alive(ha_pid), "the HA worker outlives its first deadline (extended by the new "
              "cellad)")

        # Fencing by the worker: cellad dies, nothing renews the lease.
        try:
            with open(f"/proc/{ha_pid}/timers") as f:
                log("timers: " + f.read().replace("\n", " | "))
        except OSError as e:
            log(f"timers: {e}")
        log("kill -9 cellad")
        t0 = time.monotonic()
        d.kill9()
        wait_for("the HA worker dies by its own deadline", lambda: not alive(ha_pid),
                 timeout=10)
        took = time.monotonic() - t0
        check(took < TTL_S, f"... {took:.2f} s after cellad died, before the TTL ({TTL_S} s)")
        check(alive(plain_pid), "the non-HA worker is left running")
        d.start()
        check(d.vm("plain")["state"] == "running", "a new cellad re-adopts the non-HA VM")
        last = d.vm("ha1").get("last_exit") or {}
        check(last.get("status") == 18, f"the worker's exit record says fenced (status 18): "
              f"{last}")
        d.action("plain", "kill")


def ride_through(args, c, storage, shared):
    # The case: a 5 s isolation under a 30 s ride-through (shorter
    # than the lease's TTL), then a 12 s one (longer).
    pool = dict(POOL, lease_ttl_s=8, fence_ms=1000, isolation="ride-through",
                ride_through_s=30)
    store = {"etcd": dict(c.store_config(prefix="/cella/ha3", host="host-r"), timeout_ms=1000)}
    with Daemon(args, name="host-r", config={"store": store, "pool": pool,
                                             "storage": storage}) as d:
        d.define("ride", "memwriter", "rounds=0 mib=1 pause_ms=50", ha=True,
                 disks=[{"path": os.path.join(shared, "d.img")}])
        d.action("ride", "start")
        d.wait_console("ride", "round 2")
        pid = d.vm("ride")["pid"]
        etcd = c.members[0].proc.pid
        log("freezing etcd for 5 s (the isolation)")
        os.kill(etcd, signal.SIGSTOP)
        try:
            wait_for("event pool-host-isolated", lambda: [
                e for e in d.events() if e["event"] == "pool-host-isolated"], timeout=10)
            time.sleep(5)  # the isolation's length, not a synchronisation
        finally:
            os.kill(etcd, signal.SIGCONT)
        wait_for("event pool-host-rejoined", lambda: [
            e for e in d.events() if e["event"] == "pool-host-rejoined"], timeout=10)
        n = d.console("ride").count("round")
        d.wait_console("ride", f"round {n + 2} ")
        check(alive(pid) and d.vm("ride")["pid"] == pid, "the HA VM rode through: same "
              "worker, the guest's rounds go on")
        check(not [e for e in d.events() if e["event"] == "vm-fenced"], "no vm-fenced")

        # Longer than the TTL (8 s): the lease expires in etcd and takes
        # the owner key with it; back before its fence time (30 s of
        # ride-through), the host takes the key back on a new lease.
        uuid = d.vm("ride")["uuid"]
        log("freezing etcd for 12 s (an isolation longer than the lease's TTL)")
        os.kill(etcd, signal.SIGSTOP)
        try:
            time.sleep(12)  # the isolation's length, not a synchronisation
        finally:
            os.kill(etcd, signal.SIGCONT)
        wait_for("the host rides through past the TTL: ownership taken back",
                 lambda: "rode through: alive again" in d.log(), timeout=20)
        owner = c.etcdctl("get", f"/cella/ha3/owner/{uuid}", "--print-value-only").stdout.strip()
        check(owner == "host-r", f"etcd names host-r the owner again: {owner!r}")
        lease = c.etcdctl("get", f"/cella/ha3/owner/{uuid}", "-w", "json").stdout
        check('"lease"' in lease, "on a lease (the new one)")
        n = d.console("ride").count("round")
        d.wait_console("ride", f"round {n + 2} ")
        check(alive(pid) and d.vm("ride")["pid"] == pid, "the HA VM rode through the 12 s: "
              "same worker, the guest's rounds go on")
        check(not [e for e in d.events() if e["event"] == "vm-fenced"], "no vm-fenced")
        m = d.get("/metrics").body
        check("cella_pool_ride_through_retakes_total 1" in m, "counted in /metrics")
        # The worker's deadline follows the new lease: past the old fence
        # time (30 s after the freeze began) it still runs.
        d.wait_console("ride", f"round {n + 2 + 400} ", timeout=60)  # 400 x 50 ms
        check(alive(pid), "the worker outlives the old lease's fence time")
        d.action("ride", "kill")


HALOG_MAGIC = 0x474f4c4148414c43


def halog_runs(path):
    """The records of guest/tests/halog.c in disk order, as runs of one boot
    each: [(boot id, [sequences])]; raises on a torn record."""
    with open(path, "rb") as f:
        data = f.read()
    runs = []
    for i in range(0, len(data), 512):
        sec = data[i:i + 512]
        magic, boot, seq = struct.unpack_from("<QQQ", sec)
        if magic != HALOG_MAGIC:
            break
        if zlib.crc32(sec[:508]) != struct.unpack_from("<I", sec, 508)[0]:
            raise TestFailure(f"halog record at sector {i // 512} is torn")
        if runs and runs[-1][0] == boot:
            runs[-1][1].append(seq)
        else:
            runs.append((boot, [seq]))
    return runs


def cellad_only(args, c, hosts, shared):
    a = hosts["host-a"]
    disk = os.path.join(shared, "log.img")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    a.define("log", "halog", "pause_ms=20", ha=True, rng=True, disks=[{"path": disk}])
    a.action("log", "start")
    a.wait_console("log", "halog: 10")
    pid = a.vm("log")["pid"]
    log("kill -9 host-a's cellad alone")
    t0 = time.monotonic()
    a.kill9()
    wait_for("the HA worker on host-a ends itself", lambda: not alive(pid), timeout=10)
    t_dead = time.monotonic()

    def new_host():
        for n in ("host-b", "host-c"):
            m = hosts[n].get("/v1/vms/log/metrics")
            if m.status == 200 and "first_output_monotonic_ns" in m.json:
                return n, m.json["first_output_monotonic_ns"] / 1e9
        return None
    wait_for("the VM runs on another host", new_host, timeout=20)
    n, t_first = new_host()
    check(t_dead < t_first, f"host-a's worker ended {t_dead - t0:.2f} s after its cellad died, "
          f"before the first output on {n} ({t_first - t0:.2f} s)")
    hosts[n].wait_console("log", "halog: 10")
    hosts[n].action("log", "kill")
    runs = halog_runs(disk)
    boots = [r[0] for r in runs]
    check(len(runs) == 2 and len(set(boots)) == 2 and
          all(r[1] == list(range(len(r[1]))) for r in runs),
          f"the disk holds two runs, one per copy, never interleaved: "
          f"{[(hex(b), len(s)) for b, s in runs]}")


class NsHost(Daemon):
    """A cellad in its host's network namespace, on the pool's store."""

    def __init__(self, args, h, ns, c, storage):
        super().__init__(args, name=f"host-{h}", config={
            "store": {"etcd": dict(c.store_config(prefix="/cella/iso", host=f"host-{h}"),
                                   timeout_ms=1000)},
            "pool": POOL, "storage": storage, "memory_capacity_mib": 4096,
            "cgroup_parent": f"cella-test-{os.getpid()}-{h}"})
        self.cgroup_parent = f"cella-test-{os.getpid()}-{h}"
        self.ns = ns

    def start(self):
        self.args = dict(self.args, cellad=netutil.ns_wrapper(
            os.path.join(self.dir, "cellad-in-ns"), self.ns, self.args["cellad"]))
        return super().start()


def isolation(args, storage, shared):
    net_ = netutil.subnet(7)
    addr = {"a": f"{net_}.2", "b": f"{net_}.3", "c": f"{net_}.4"}
    net = netutil.Net(addr, f"{net_}.1", tag="ch")
    hosts = {}
    try:
        net.up()
        with etcdutil.Cluster(3, host=net.bridge_ip) as c:
            hosts = {h: NsHost(args, h, net.ns[h], c, storage) for h in addr}
            for d in hosts.values():
                d.start()
            a = hosts["a"]
            disk = os.path.join(shared, "iso.img")
            with open(disk, "wb") as f:
                f.truncate(1 << 20)
            a.define("iso", "halog", "pause_ms=20", ha=True, rng=True, disks=[{"path": disk}])
            a.action("iso", "start")
            a.wait_console("iso", "halog: 10")
            pid = a.vm("iso")["pid"]
            wait_for("the VM's ownership is on host-a's lease",
                     lambda: "ownership is on host host-a's lease" in a.log(), timeout=10)
            log("cutting host-a's link (ip link set down)")
            t0 = time.monotonic()
            net.cut("a")
            wait_for("host-a stops its HA worker", lambda: not alive(pid), timeout=10)
            t_dead = time.monotonic()
            a.wait_event("iso", "vm-fenced", timeout=10)
            check(True, "event vm-fenced on host-a")

            def new_host():
                for h in ("b", "c"):
                    m = hosts[h].get("/v1/vms/iso/metrics")
                    if m.status == 200 and "first_output_monotonic_ns" in m.json:
                        return h, m.json["first_output_monotonic_ns"] / 1e9
                return None
            wait_for("the VM runs on another host", new_host, timeout=20)
            h, t_first = new_host()
            check(t_dead < t_first, f"host-a's worker gone {t_dead - t0:.2f} s after the cut, "
                  f"before the first output on host-{h} ({t_first - t0:.2f} s)")
            hosts[h].wait_event("iso", "vm-failed-over", timeout=5)
            check(True, f"event vm-failed-over on host-{h}")
            log("host-a's link up again")
            net.cut("a", up=True)
            wait_for("host-a gets a new lease", lambda: "alive again" in a.log(), timeout=20)
            wait_for("host-a forgets the VM owned elsewhere",
                     lambda: [e for e in a.events() if e["event"] == "vm-owned-elsewhere"],
                     timeout=10)
            running = [x for x in ("a", "b", "c")
                       if hosts[x].get("/v1/vms/iso").status == 200 and
                       hosts[x].get("/v1/vms/iso").json.get("state") == "running" and
                       hosts[x].get("/v1/vms/iso").json.get("host", f"host-{x}") == f"host-{x}"]
            check(running == [h], f"one copy runs pool-wide, on host-{h}: {running}")
            hosts[h].wait_console("iso", "halog: 10")
            hosts[h].action("iso", "kill")
            runs = halog_runs(disk)
            check(len(runs) == 2 and len({r[0] for r in runs}) == 2 and
                  all(r[1] == list(range(len(r[1]))) for r in runs),
                  f"the disk holds two runs, one per copy, never interleaved: "
                  f"{[(hex(b), len(q)) for b, q in runs]}")
    finally:
        for d in hosts.values():
            d.stop()
            shutil.rmtree(d.dir, ignore_errors=True)
        net.down()


def host_conf(c, name, storage, prefix="/cella/ha2", pool=POOL):
    return {"store": {"etcd": dict(c.store_config(prefix=prefix, host=name),
                                   timeout_ms=1000)},
            "pool": pool, "storage": storage, "memory_capacity_mib": 4096}


def race(args, c, storage):
    """ha_backoff_ms 0: both survivors try every VM at once; each VM must
    end up owned by, and running on, exactly one of them."""
    pool = dict(POOL, ha_backoff_ms=0)
    hosts = {n: Daemon(args, name=n, config=host_conf(c, n, storage, "/cella/race", pool))
             for n in ("host-a", "host-b", "host-c")}
    names = [f"r{i}" for i in range(6)]
    try:
        for d in hosts.values():
            d.start()
        a = hosts["host-a"]
        for n in names:
            a.define(n, "memwriter", "rounds=0 mib=1 pause_ms=50", ha=True)
            a.action(n, "start")
        pids = []
        for n in names:
            a.wait_console(n, "round 1")
            pids.append(a.vm(n)["pid"])
        wait_for("the VMs' ownership is on host-a's lease", lambda: a.log().count(
            "ownership is on host host-a's lease") >= len(names), timeout=10)
        a.kill9()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

        def where(n):
            return [h for h in ("host-b", "host-c")
                    if hosts[h].get(f"/v1/vms/{n}").status == 200 and
                    hosts[h].get(f"/v1/vms/{n}").json.get("state") == "running" and
                    hosts[h].get(f"/v1/vms/{n}").json.get("host", h) == h]
        wait_for("every VM runs on a survivor", lambda: all(where(n) for n in names),
                 timeout=20)
        lost = sum(hosts[h].log().count("was taken over by another host first")
                   for h in ("host-b", "host-c"))
        placed = {n: where(n) for n in names}
        check(all(len(v) == 1 for v in placed.values()),
              f"two hosts racing: each VM runs on exactly one ({placed}; {lost} lost races)")
        for n in names:
            owner = c.etcdctl("get", f"/cella/race/owner/{hosts[placed[n][0]].vm(n)['uuid']}",
                              "--print-value-only").stdout.strip()
            check(owner == placed[n][0], f"{n}: etcd names {owner}, the host that runs it")
    finally:
        for d in hosts.values():
            d.stop()
            shutil.rmtree(d.dir, ignore_errors=True)


def failover(args, c, storage, shared, local):
    hosts = {n: Daemon(args, name=n, config=host_conf(c, n, storage))
             for n in ("host-a", "host-b", "host-c")}
    try:
        for d in hosts.values():
            d.start()
        a = hosts["host-a"]
        a_web_uuid = a.define("web", "memwriter", "rounds=0 mib=1 pause_ms=50", ha=True,
                              anti_affinity="front", anti_affinity_hard=True,
                              disks=[{"path": os.path.join(shared, "d.img")}])["uuid"]
        # A member of web's hard anti-affinity group runs on host-b: the
        # failover must take web to host-c (by headroom and name, host-b
        # would win otherwise).
        b = hosts["host-b"]
        b.define("guard", "memwriter", "rounds=0 mib=1 pause_ms=50", anti_affinity="front")
        b.action("guard", "start", {"host": "host-b"})
        a.define("batch", "memwriter", "rounds=0 mib=1 pause_ms=50")
        idle = a.define("idle", "memwriter", "rounds=0 mib=1 pause_ms=50", ha=True)
        a.action("web", "start")
        a.action("batch", "start")
        a.wait_console("web", "round 2")
        pids = [a.vm("web")["pid"], a.vm("batch")["pid"]]
        # An HA VM's owner key is put on the lease within a quarter second
        # of its definition (ha.c); both must be before the host dies.
        wait_for("the HA VMs' ownership is on host-a's lease", lambda: a.log().count(
            "ownership is on host host-a's lease") >= 2, timeout=10)
        log("kill -9 host-a's cellad and its workers")
        t0 = time.monotonic()
        a.kill9()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # As host-a leaves it when it fenced web itself with etcd still
        # reachable (renewals too late: a loaded host) and then died: its
        # runtime record says stopped, fenced. The taker must start it.
        c.etcdctl("put", f"/cella/ha2/hosts/host-a/runtime/{a_web_uuid}", json.dumps(
            {"state": "stopped", "pid": 0, "pid_start": 0, "started_at": 0, "exit_status": 137,
             "exit_reason": "fenced: the lease could not be renewed in time", "restarts": 0}))

        def runs_on():
            on = []
            for n in ("host-b", "host-c"):
                r = hosts[n].get("/v1/vms/web")
                if r.status == 200 and r.json.get("state") == "running" and \
                        r.json.get("host", n) == n and r.json.get("pid"):
                    on.append(n)
            return on
        wait_for("host-a's HA VM runs on another host", lambda: runs_on(), timeout=20)
        took = time.monotonic() - t0
        on = runs_on()
        check(len(on) == 1, f"on exactly one: {on}")
        check(on == ["host-c"], f"... host-c, not beside its group's member on host-b: {on}")
        new = hosts[on[0]]
        new.wait_console("web", "round 2")
        check(True, f"guest output on {on[0]}, {took:.2f} s after host-a died")
        ev = new.wait_event("web", "vm-failed-over", timeout=5)
        check("from host-a to " + on[0] in ev.get("detail", ""), f"event: {ev.get('detail')}")
        owner = c.etcdctl("get", f"/cella/ha2/owner/{new.vm('web')['uuid']}",
                          "--print-value-only").stdout.strip()
        check(owner == on[0], f"etcd names {on[0]} its owner")
        key = f"/cella/ha2/owner/{idle['uuid']}"
        try:
            wait_for("the stopped HA VM is taken over too", lambda: c.etcdctl(
                "get", key, "--print-value-only").stdout.strip() in ("host-b", "host-c"),
                timeout=20)
        except TestFailure:
            for n in ("host-b", "host-c"):
                log(f"---- {n} ----\n{hosts[n].log()[-3000:]}")
            raise
        idle_on = hosts[c.etcdctl("get", key, "--print-value-only").stdout.strip()]
        wait_for("... registered there", lambda: idle_on.get("/v1/vms/idle").status == 200)
        check(idle_on.vm("idle")["state"] in ("defined", "stopped"),
              f"... and not started (it was not running): {idle_on.vm('idle')['state']}")
        for n in ("host-b", "host-c"):
            r = hosts[n].get("/v1/vms/batch")
            check(r.status != 200 or r.json.get("host", n) != n or
                  r.json.get("state") != "running",
                  f"the non-HA VM is not started on {n}")
        log("host-a comes back")
        a.start()
        r = a.get("/v1/vms/web")
        check(r.status != 200 or r.json.get("host") == on[0],
              f"host-a does not load the VM another host owns: {r.status} {r.body[:200]}")
        check(len(runs_on()) == 1, "one copy runs pool-wide")
        new.action("web", "kill")
        b.action("guard", "kill")
        cellad_only(args, c, hosts, shared)
    finally:
        for d in hosts.values():
            d.stop()
            shutil.rmtree(d.dir, ignore_errors=True)


if __name__ == "__main__":
    main(test)
