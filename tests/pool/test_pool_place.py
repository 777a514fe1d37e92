#!/usr/bin/env python3
"""test_pool_place.py: placement of VMs when they start (docs/pool.md,
"Placement on start"), with real processes: three cellads in network
namespaces on a bridge (host-a 1024 MiB, host-b 2048 MiB, host-c 3072 MiB),
a three-member etcd cluster on the bridge's address, a pool made with
`cella pool create` and `cella pool join`, pool storage shared by path.

- Placement by free memory: a VM defined on host-a and started there with
  `cella vm start` runs on host-c (the most room): its guest output is seen
  there, etcd names host-c its owner, host-a emitted vm-placed with the
  reason, and the reply says the host and the reason.
- Anti-affinity: two VMs of one group land on different hosts.
- `--host`: a VM started with --host host-a runs there; an unknown host is
  a 404; a host in maintenance (its record's state) and a host short of
  memory are refused with placement's reason; a hard anti-affinity group is
  refused on the host that runs a member.
- A forwarded action: a stop sent to host-b stops the VM on host-c.
- Pool-wide `vm list` on host-b shows every VM with its host.
- Concurrent starts of one stopped VM sent at once to host-b and host-c
  (three rounds): exactly one succeeds, the other gets 409, and exactly one
  worker runs.
- A hand-over whose message is lost (the owner key alone names host-b):
  host-b loads the VM stopped (vm-received), host-a forgets it.
- Names are unique pool-wide: the same name defined on another host is
  refused (409 naming the host that has it); a deleted VM frees its name.
- A stale host record (written by hand, no lease behind it, claiming the
  most room): down in every host's status, never chosen by placement, and
  --host naming it refused ("ghost: down").
- A VM with memory_max_mib (virtio-mem) is placed by its maximum: refused
  on host-b (2048 MiB) with the reason naming memory_max_mib, placed on
  host-c.
- A VM with a disk outside pool storage starts only on its owner (placement
  says which storage the others lack).

Needs root (namespaces) and etcd; skips loudly without them.
Usage: test_pool_place.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
from cellad import Daemon, TestFailure, check, log, main, skip  # noqa: E402

import etcdutil  # noqa: E402
import netutil  # noqa: E402
import tlsutil  # noqa: E402

NET = netutil.subnet(11)
BRIDGE_IP = f"{NET}.1"
ADDR = {"a": f"{NET}.2", "b": f"{NET}.3", "c": f"{NET}.4"}
PORT = 8419
PREFIX = "/cella/pl"
GUEST = "rounds=0 mib=1 pause_ms=50"


class Host(Daemon):
    """A cellad in its host's namespace with a TCP API; memory capacity
    1, 2 and 3 GiB for a, b and c."""

    def __init__(self, args, h, ns, boot, storage):
        cg = f"cella-test-{os.getpid()}-pl{h}"
        super().__init__(args, name=f"host-{h}", config={
            "cgroup_parent": cg, "console_history_kib": 256, "storage": storage,
            "memory_capacity_mib": 1024 * (ord(h) - ord("a") + 1),
            "tcp": {"address": ADDR[h], "port": PORT, "token_file": f"{boot}/token"},
            "tls": {"cert": f"{boot}/{h}.pem", "key": f"{boot}/{h}.key", "ca": f"{boot}/ca.pem"}})
        self.cgroup_parent = cg
        self.ns = ns
        self.h = h
        self.url = f"https://{ADDR[h]}:{PORT}"

    def start(self):
        self.args = dict(self.args, cellad=netutil.ns_wrapper(
            os.path.join(self.dir, "cellad-in-ns"), self.ns, self.args["cellad"]))
        return super().start()

    def wait_pool(self, timeout=30):
        """cellad starts itself again after create and join."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.proc.poll() is not None:
                    raise TestFailure(f"{self.name} exited:\n{self.log()}")
                if self.get("/v1/pool").status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TestFailure(f"{self.name}: no pool:\n{self.log()[-3000:]}")
            time.sleep(0.1)  # guard loop: cellad re-executes itself


def wait_for(what, pred, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            check(True, what)
            return v
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out: {what}")
        time.sleep(0.05)  # polling a condition with a deadline


def workers_of(exe, name):
    """This build's cella-vm processes for VM name (--name NAME)."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        argv = cmd.split("\0")
        if argv[0] == exe and "--name" in argv and argv[argv.index("--name") + 1] == name:
            n += 1
    return n


def test(args):
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the hosts")
    for tool in ("ip", "openssl"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    etcdutil.need_etcd()
    boot = tempfile.mkdtemp(prefix="cella-place-")
    tlsutil.make_pki(boot, names=("a", "b", "c"))
    with open(f"{boot}/token", "w") as f:
        f.write("pool-place-bootstrap-token-0123456789\n")
    shared, local = os.path.join(boot, "shared"), os.path.join(boot, "local")
    for d in (shared, local):
        os.makedirs(d)
        with open(os.path.join(d, "d.img"), "wb") as f:
            f.truncate(1 << 20)
    storage = [{"name": "shared", "path": shared, "role": "operator", "pool": True},
               {"name": "local", "path": local, "role": "operator"}]
    net = netutil.Net(ADDR, BRIDGE_IP, tag="pl")
    hosts = {}
    try:
        net.up()
        with etcdutil.Cluster(3, host=BRIDGE_IP) as c:
            for h in ADDR:
                hosts[h] = Host(args, h, net.ns[h], boot, storage).start()
            form_pool(c, hosts)
            scenario(c, hosts, shared, local)
    finally:
        for d in hosts.values():
            d.cleanup()
        net.down()
        shutil.rmtree(boot, ignore_errors=True)


def form_pool(c, hosts):
    a = hosts["a"]
    p = a.cli("pool", "create", "pl", "--etcd", ",".join(c.endpoints), "--ca-cert", c.ca,
              "--ca-key", f"{c.dir}/ca.key", "--address", a.url, "--host", "host-a",
              "--lease-ttl", "3")
    token = next(w for w in p.stdout.split() if w.count(".") == 2 and len(w) > 100)
    a.wait_pool()
    for h in ("b", "c"):
        if h == "c":
            token = json.loads(a.cli("--json", "pool", "token").stdout)["token"]
        hosts[h].cli("pool", "join", a.url, "--token", token, "--host", f"host-{h}",
                      "--address", hosts[h].url)
        hosts[h].wait_pool()

    def all_up():
        st = json.loads(a.cli("--json", "pool", "status").stdout)["hosts"]
        return len(st) == 3 and all(x["state"] == "up" for x in st)
    wait_for("a pool of three hosts, all up", all_up)


def owner(c, uuid):
    return c.etcdctl("get", f"{PREFIX}/owner/{uuid}", "--print-value-only").stdout.strip()


def running_on(hosts, name):
    """The hosts whose own VM `name` runs there."""
    on = []
    for h, d in hosts.items():
        for v in d.get("/v1/vms").json["vms"]:
            if v["name"] == name and v.get("host") == f"host-{h}" and v["state"] == "running":
                on.append(f"host-{h}")
    return on


def scenario(c, hosts, shared, local):
    a, b, hc = hosts["a"], hosts["b"], hosts["c"]
    by_name = {f"host-{h}": d for h, d in hosts.items()}

    # Placement by free memory: host-c has the most room.
    v1 = a.define("v1", "memwriter", GUEST, disks=[{"path": os.path.join(shared, "d.img")}])
    p = a.cli("vm", "start", "v1")
    check("host host-c: placed v1" in p.stdout, f"cella vm start says where and why: "
          f"{p.stdout.strip()}")
    hc.wait_console("v1", "round 2")
    check(owner(c, v1["uuid"]) == "host-c", "v1 started on host-a runs on host-c (guest "
          "output there); etcd names host-c its owner")
    ev = a.wait_event("v1", "vm-placed", timeout=5)
    check(ev["detail"].startswith("host-c: placed v1") and "headroom" in ev["detail"],
          f"host-a: event vm-placed: {ev['detail']}")
    check(not [v for v in a.get("/v1/vms").json["vms"]
               if v["name"] == "v1" and v["host"] == "host-a"],
          "host-a forgot v1 (handed over)")

    # Anti-affinity: two VMs of group g on different hosts.
    for n in ("g1", "g2"):
        a.define(n, "memwriter", GUEST, anti_affinity="g")
        r = a.post(f"/v1/vms/{n}/start")
        check(r.status == 200 and r.json["placement"]["host"], f"{n} started: "
              f"{r.json.get('placement')}")
    on1, on2 = running_on(hosts, "g1"), running_on(hosts, "g2")
    check(len(on1) == 1 and len(on2) == 1 and on1 != on2,
          f"anti-affinity: g1 on {on1}, g2 on {on2}")
    r = a.get("/v1/vms/g2")
    check(r.json["anti_affinity"] == "g" and r.json["anti_affinity_hard"] is False,
          "vm info shows the group")
    rec = json.loads(c.etcdctl("get", f"{PREFIX}/vms/{r.json['uuid']}",
                               "--print-value-only").stdout)
    check(rec["anti_affinity"] == "g", "the group is in the etcd record")
    r = a.post("/v1/vms", {"name": "bad", "kernel": a.args["guests"]["memwriter"],
                           "anti_affinity": "no/slash"})
    check(r.status == 400 and r.json["error"]["field"] == "anti_affinity",
          "a malformed group is refused (400)")
    # Hard: refused where a member runs (on1[0] runs g1).
    a.define("g3", "memwriter", GUEST, anti_affinity="g", anti_affinity_hard=True)
    r = a.post("/v1/vms/g3/start", {"host": on1[0]})
    check(r.status == 409 and "anti-affinity" in r.json["error"]["message"] and
          on1[0] in r.json["error"]["message"],
          f"hard anti-affinity: --host {on1[0]} refused: {r.json['error']['message']}")

    # --host: an override, and its refusals.
    a.define("h1", "memwriter", GUEST)
    r = a.post("/v1/vms/h1/start", {"host": "host-z"})
    check(r.status == 404 and "no host named host-z" in r.json["error"]["message"],
          f"--host of an unknown host: 404: {r.json['error']['message']}")
    big = a.define("big", "memwriter", GUEST, memory_mib=1536)
    r = a.post("/v1/vms/big/start", {"host": "host-a"})
    check(r.status == 409 and "host-a: " in r.json["error"]["message"] and
          "MiB needed" in r.json["error"]["message"],
          f"--host of a host short of memory: {r.json['error']['message']}")
    # A VM virtio-mem can grow is placed where its maximum fits (docs/memory.md,
    # "Admission and placement"): host-b (2048 MiB) cannot take 2560, host-c can.
    a.define("grow", "memwriter", GUEST, memory_mib=64, memory_max_mib=2560)
    r = a.post("/v1/vms/grow/start", {"host": "host-b"})
    msg = r.json.get("error", {}).get("message", "") if r.status != 200 else ""
    check(r.status == 409 and "host-b: " in msg and "2560 MiB needed" in msg and
          "memory_max_mib" in msg, f"--host of a host short of the VM's maximum: {msg}")
    r = a.post("/v1/vms/grow/start")
    pl = r.json.get("placement", {}) if r.status == 200 else {}
    check(pl.get("host") == "host-c" and "memory_max_mib" in pl.get("reason", ""),
          f"placed by its maximum on host-c: {r.status} {pl}")
    hc.wait_console("grow", "round 1")
    hc.action("grow", "kill")
    hc.cli("vm", "delete", "grow")
    key = f"{PREFIX}/members/host-b"
    rec = json.loads(c.etcdctl("get", key, "--print-value-only").stdout)
    c.etcdctl("put", key, json.dumps(dict(rec, state="maintenance")))
    wait_for("host-b in maintenance in host-a's view", lambda: [
        x for x in json.loads(a.cli("--json", "pool", "status").stdout)["hosts"]
        if x["name"] == "host-b" and x["state"] == "maintenance"])
    r = a.post("/v1/vms/h1/start", {"host": "host-b"})
    check(r.status == 409 and "host-b: maintenance" in r.json["error"]["message"],
          f"--host of a host in maintenance: {r.json['error']['message']}")
    c.etcdctl("put", key, json.dumps(rec))
    p = a.cli("vm", "start", "h1", "--host", "host-a")
    check("as requested" in p.stdout, f"--host host-a: {p.stdout.strip()}")
    a.wait_console("h1", "round 1")
    check(running_on(hosts, "h1") == ["host-a"], "h1 runs on host-a as requested")
    p = b.cli("vm", "delete", "big")
    check(c.etcdctl("get", f"{PREFIX}/names/big", "--print-value-only").stdout.strip() == "",
          "a deleted VM's name leaves the index")

    # A forwarded action: v1 (on host-c) stopped from host-b (the guest
    # ignores the request: turned off after a second).
    pid = hc.vm("v1")["pid"]
    p = b.cli("vm", "stop", "v1", "--timeout", "1")
    check("v1 stopped" in p.stdout and hc.vm("v1")["state"] == "stopped",
          f"a stop sent to host-b stops v1 on host-c: {p.stdout.strip()}")
    wait_for("... its worker there ends", lambda: not os.path.exists(f"/proc/{pid}"),
             timeout=10)

    # Pool-wide list: every VM with its host, from host-b.
    vms = {v["name"]: v for v in json.loads(b.cli("--json", "vm", "list").stdout)["vms"]}
    want = {"v1": "host-c", "g1": on1[0], "g2": on2[0], "h1": "host-a", "g3": "host-a"}
    check(all(vms.get(n, {}).get("host") == h for n, h in want.items()),
          f"host-b's vm list shows each VM with its host: "
          f"{ {n: vms.get(n, {}).get('host') for n in want} }")

    # Names are unique pool-wide.
    r = b.post("/v1/vms", {"name": "v1", "kernel": b.args["guests"]["memwriter"]})
    check(r.status == 409 and "host-c" in r.json["error"]["message"],
          f"v1 defined again on host-b: 409 naming host-c: {r.json['error']['message']}")
    check(c.etcdctl("get", f"{PREFIX}/names/v1", "--print-value-only").stdout.strip() ==
          v1["uuid"], "etcd's name index names v1's uuid")

    # Concurrent starts of one VM from two hosts: exactly one wins (three
    # rounds, each a new stopped VM owned by host-a).
    for i in range(3):
        rn = f"race{os.getpid()}-{i}"  # unique on this machine: workers are counted by name
        a.define(rn, "memwriter", GUEST)
        wait_for(f"host-b and host-c see {rn}", lambda: all(
            d.get(f"/v1/vms/{rn}").status == 200 for d in (b, hc)))
        results, go = {}, threading.Barrier(2)

        def start(d):
            go.wait()
            results[d.name] = d.post(f"/v1/vms/{rn}/start")
        threads = [threading.Thread(target=start, args=(d,)) for d in (b, hc)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status for r in results.values())
        log(f"concurrent starts: { {n: (r.status, r.body[:160]) for n, r in results.items()} }")
        check(codes == [200, 409], f"{rn}: two concurrent starts, one 200 and one 409 ({codes})")
        won = next(r for r in results.values() if r.status == 200).json["placement"]["host"]
        by_name[won].wait_console(rn, "round 1")
        on, nw = running_on(hosts, rn), workers_of(os.path.realpath(a.args["cella_vm"]), rn)
        check(on == [won] and nw == 1, f"{rn}: exactly one worker runs pool-wide (on {on}; "
              f"{nw} worker)")
        by_name[won].action(rn, "kill")

    # A hand-over whose message is lost: the owner key alone names host-b
    # (as a host that died after its compare-and-swap leaves it). host-b
    # loads the VM, stopped; host-a forgets it.
    lost = a.define("lost", "memwriter", GUEST)
    c.etcdctl("put", f"{PREFIX}/owner/{lost['uuid']}", "host-b")
    wait_for("host-b loads a VM its owner key gives it (not started)", lambda: [
        v for v in b.get("/v1/vms").json["vms"]
        if v["name"] == "lost" and v["host"] == "host-b" and v["state"] == "defined"])
    wait_for("host-a forgets it", lambda: not [
        v for v in a.get("/v1/vms").json["vms"] if v["name"] == "lost" and v["host"] == "host-a"])
    check([e for e in b.events() if e["event"] == "vm-received" and e["vm"] == "lost"],
          "host-b: event vm-received")

    # A stale host record (a host that died and never came back, or one
    # written by hand: no lease behind it): down in every host's status;
    # placement never picks it, though it claims the most room; --host
    # naming it is refused with placement's reason.
    c.etcdctl("put", f"{PREFIX}/members/ghost", json.dumps(
        {"address": "https://192.0.2.1:1", "memory_mib": 1 << 20, "cpus": 256, "state": "up",
         "joined_at": 0}))
    for d in (a, b, hc):
        wait_for(f"ghost down in {d.name}'s status", lambda d=d: [
            x for x in json.loads(d.cli("--json", "pool", "status").stdout)["hosts"]
            if x["name"] == "ghost" and x["state"] == "down"])
    a.define("after", "memwriter", GUEST)
    r = a.post("/v1/vms/after/start")
    check(r.status == 200 and r.json["placement"]["host"] != "ghost",
          f"placement skips the stale record: {r.json.get('placement')}")
    a.define("toghost", "memwriter", GUEST)
    r = a.post("/v1/vms/toghost/start", {"host": "ghost"})
    check(r.status == 409 and "ghost: down" in r.json["error"]["message"],
          f"--host ghost: refused: {r.json['error']['message']}")
    c.etcdctl("del", f"{PREFIX}/members/ghost")

    # Placement's decisions in host-a's metrics.
    m = {l.split()[0]: int(l.split()[1]) for l in a.get("/metrics").body.splitlines()
         if l.startswith("cella_pool_placement")}
    check(m.get("cella_pool_placements_total", 0) >= 3 and
          m.get("cella_pool_placements_elsewhere_total", 0) >= 1 and
          m.get("cella_pool_placement_refusals_total", 0) >= 3,
          f"host-a's metrics count its placements: {m}")

    # A local (non-pool) disk: only its owner runs it.
    a.define("loc", "memwriter", GUEST, disks=[{"path": os.path.join(local, "d.img")}])
    r = a.post("/v1/vms/loc/start", {"host": "host-c"})
    check(r.status == 409 and "local disks of host-a" in r.json["error"]["message"],
          f"a VM with a local disk, --host host-c: refused: {r.json['error']['message']}")
    r = b.post("/v1/vms/loc/start")
    check(r.status == 200 and r.json["placement"]["host"] == "host-a",
          f"started from host-b, it runs on its owner host-a: {r.json['placement']}")
    a.wait_console("loc", "round 1")


if __name__ == "__main__":
    main(test)
