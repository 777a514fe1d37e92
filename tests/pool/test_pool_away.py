#!/usr/bin/env python3
"""test_pool_away.py: a pool whose etcd is away for 20 s (docs/pool.md,
"When etcd is away"). Three etcd members and three cellads (pool sections,
lease TTL 3 s) on loopback, a non-HA guest counting rounds on host-a and
one on host-b; then every etcd member is stopped (SIGTERM) and started
again on its data directory 20 s later.

While etcd is away, on each host:
- the local guests keep running (their console counts on);
- `cella vm list` answers (200) with the local VMs as they are and the
  other hosts' marked stale; `cella vm info` of a local VM answers;
- `vm stop` (a job: recorded before it acts) is refused with 503 naming
  etcd, `vm kill` (no record needed) works: host-b's VM killed;
- `cella pool status --json` answers from the cache (not a 503): this host
  isolated, "stale": true;
- the host's events say pool-etcd-away and pool-host-isolated; /metrics
  says cella_etcd_reachable 0 and cella_pool_isolated 1.
etcd back: host-b's runtime record written while away reaches etcd, and
host-a's pool-wide list shows host-b's VM stopped (not stale); every host's
pool status shows all three up (not stale); pool-etcd-back on the events;
the watch resumed (a VM defined on host-c afterwards is in host-a's list);
the metrics count lease renewal failures and watch restarts. An HA VM on
host-c (pool storage) is fenced while etcd is away, by design, and runs
on at most one host afterwards (its owner in etcd).

Then a cellad started while etcd is away (its local cache): host-a's
cellad killed (its worker runs on), etcd stopped, cellad started again:
it starts from state_dir/pool-cache.json, re-adopts the running guest
(output goes on), and once etcd is back the pool is consistent.

Usage: test_pool_away.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from cellad import Daemon, TestFailure, check, log, main  # noqa: E402

import etcdutil  # noqa: E402

PREFIX = f"/cella/away{os.getpid()}"
TTL = 3
OUTAGE = 20


def wait_for(what, pred, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            check(True, what)
            return v
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out: {what}")
        time.sleep(0.2)  # polling cellad or etcd with a deadline


def status(d):
    p = d.cli("--json", "pool", "status")
    return json.loads(p.stdout)


def vm_list(d):
    r = d.get("/v1/vms")
    if r.status != 200:
        raise TestFailure(f"GET /v1/vms: {r.status} {r.body[:300]}")
    return {v["name"]: v for v in r.json["vms"]}


def rounds(d, name):
    found = re.findall(r"round (\d+)", d.console(name))
    return int(found[-1]) if found else -1


def metric(d, name):
    body = d.get("/metrics").body
    m = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    return float(m.group(1)) if m else None


def events(d):
    return [e["event"] for e in d.events()]


def etcd_json(c, key):
    r = c.etcdctl("get", key, "--print-value-only")
    return json.loads(r.stdout) if r.stdout.strip() else None


def host_conf(c, name, port, shared):
    etcd = dict(c.store_config(prefix=PREFIX, host=name), timeout_ms=1000)
    if name == "host-c":  # one member only: freezing it isolates host-c alone
        etcd["endpoints"] = [c.members[2].endpoint]
    return {"store": {"etcd": etcd},
            "pool": {"address": f"https://127.0.0.1:{port}", "lease_ttl_s": TTL},
            "storage": [{"name": "shared", "path": shared, "role": "operator", "pool": True}]}


def dump_stacks(hosts):
    """A request that timed out: every cellad's threads, for the log."""
    for name, d in hosts.items():
        if d.proc and d.proc.poll() is None and shutil.which("gdb"):
            r = subprocess.run(["gdb", "-p", str(d.proc.pid), "-batch", "-ex",
                                "thread apply all bt"], capture_output=True, text=True,
                               timeout=60)
            log(f"{name}'s threads:\n{r.stdout[-20000:]}")


def kill_leftover_workers(args, names):
    """Workers of this test's VMs still alive (a cellad that no longer
    answered could not kill them): ended by pid."""
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if argv and argv[0] == args["cella_vm"] and "--name" in argv and \
                argv[argv.index("--name") + 1:][:1] and argv[argv.index("--name") + 1] in names:
            log(f"killing a leftover worker {pid} ({argv[argv.index('--name') + 1]})")
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def etcd_stop(c, freeze=False):
    """Every member gone (SIGTERM); freeze: the first gone, the others frozen
    (SIGSTOP: connections hang until the client's timeout), no quorum."""
    for i, m in enumerate(c.members):
        if freeze and i > 0:
            os.kill(m.proc.pid, signal.SIGSTOP)
        else:
            m.stop()


def etcd_start(c):
    for m in c.members:
        if m.proc:
            os.kill(m.proc.pid, signal.SIGCONT)
        else:
            m.start(state="existing")
    c.wait_healthy(timeout=60)


def test(args):
    etcdutil.need_etcd()
    shared = tempfile.mkdtemp(prefix="cella-away-")
    with open(os.path.join(shared, "d.img"), "wb") as f:
        f.truncate(1 << 20)
    with etcdutil.Cluster(3) as c:
        hosts = {}
        try:
            for i, name in enumerate(("host-a", "host-b", "host-c")):
                hosts[name] = Daemon(args, name=name,
                                     config=host_conf(c, name, 18400 + i, shared)).start()
            a, b, cc = hosts["host-a"], hosts["host-b"], hosts["host-c"]
            a.define("tick-a", "memwriter", "rounds=0 mib=4 pause_ms=50")
            tb = b.define("tick-b", "memwriter", "rounds=0 mib=4 pause_ms=50")
            # An HA VM (pool storage) on host-c: fenced by design while
            # etcd is away; never running on two hosts.
            hc = cc.define("ha-c", "memwriter", "rounds=0 mib=1 pause_ms=50", ha=True,
                           disks=[{"path": os.path.join(shared, "d.img")}])
            cc.action("ha-c", "start", {"host": "host-c"})  # where the test means
            a.action("tick-a", "start", {"host": "host-a"})
            b.action("tick-b", "start", {"host": "host-b"})
            a.wait_console("tick-a", "round 2")
            b.wait_console("tick-b", "round 2")
            wait_for("host-a's pool-wide list shows tick-b running on host-b",
                     lambda: vm_list(a).get("tick-b", {}).get("state") == "running")
            check(not status(a)["stale"], "pool status is fresh while etcd is there")
            check(metric(a, "cella_etcd_reachable") == 1, "metrics: etcd reachable")

            # etcd away.
            log(f"etcd away for {OUTAGE} s: m0 stopped, m1 and m2 frozen")
            away = time.monotonic()
            etcd_stop(c, freeze=True)
            ra, rb = rounds(a, "tick-a"), rounds(b, "tick-b")
            for name in ("host-a", "host-b"):
                d = hosts[name]
                wait_for(f"{name}: its remote VMs are marked stale in vm list",
                         lambda d=d: all(v.get("stale") for v in vm_list(d).values()
                                         if v["host"] != d.name))
            lst = vm_list(a)
            check(lst["tick-a"]["state"] == "running" and lst["tick-a"]["host"] == "host-a" and
                  not lst["tick-a"].get("stale"), "host-a's list: its own VM as it is")
            check(lst["tick-b"]["host"] == "host-b" and lst["tick-b"]["stale"],
                  "host-a's list: host-b's VM from the cache, stale")
            p = a.cli("--json", "vm", "list")
            check(any(v["name"] == "tick-b" for v in json.loads(p.stdout)["vms"]),
                  "cella vm list answers")
            p = a.cli("vm", "list")
            check(re.search(r"tick-b\s+running\?", p.stdout) and "as last seen" in p.stdout,
                  "its table marks host-b's VM as last seen")
            check(b.vm("tick-b")["state"] == "running", "vm info of a local VM answers")
            p = a.cli("vm", "info", "tick-a")
            check("running" in p.stdout, "cella vm info answers")
            p = a.cli("pool", "status")
            check("etcd cannot be reached" in p.stdout, "cella pool status says etcd is away")
            r = a.post("/v1/vms/tick-a/stop", {})
            check(r.status == 503 and "etcd" in r.json["error"]["reason"],
                  f"vm stop (a job) is refused with 503 naming etcd: {r.json}")
            st = wait_for("host-a: pool status answers from its cache, isolated and stale",
                          lambda: (lambda s: s if s["stale"] and {h["name"]: h for h in
                                   s["hosts"]}["host-a"]["state"] == "isolated" else None)(
                              status(a)), timeout=15)
            check(all(h["stale"] for h in st["hosts"]) and
                  {h["name"] for h in st["hosts"]} == set(hosts),
                  "every host listed, marked stale")
            check(status(b)["stale"], "host-b's pool status too")
            vm = b.action("tick-b", "kill")
            check(vm["state"] == "stopped", "vm kill of host-b's VM works while etcd is away")
            wait_for("host-a: pool-etcd-away and pool-host-isolated on its events",
                     lambda: {"pool-etcd-away", "pool-host-isolated"} <= set(events(a)))
            check(metric(a, "cella_etcd_reachable") == 0, "metrics: etcd unreachable")
            check(metric(a, "cella_etcd_unreachable_seconds") > 0, "metrics: for some time")
            check(metric(a, "cella_pool_isolated") == 1, "metrics: this host isolated")
            # The whole outage, checking the guest keeps running.
            wait_for(f"tick-a keeps running through {OUTAGE} s of etcd away",
                     lambda: time.monotonic() - away >= OUTAGE and rounds(a, "tick-a") > ra + 2,
                     timeout=OUTAGE + 30)
            check(a.vm("tick-a")["state"] == "running", "tick-a still running")
            check(rb >= 0, "tick-b ran until it was killed")
            check("vm-fenced" in [e["event"] for e in cc.events(vm="ha-c")],
                  "host-c fenced its HA VM (by design: its lease could not be renewed)")

            # etcd back.
            log("starting etcd again on its data directories")
            back = time.monotonic()
            etcd_start(c)
            wait_for("host-b's runtime record written while away reaches etcd",
                     lambda: (etcd_json(c, f"{PREFIX}/hosts/host-b/runtime/{tb['uuid']}")
                              or {}).get("state") == "stopped")
            wait_for("host-a's pool-wide list shows tick-b stopped, not stale",
                     lambda: (lambda v: v.get("state") == "stopped" and not v.get("stale"))(
                         vm_list(a).get("tick-b", {})))
            for name, d in hosts.items():
                wait_for(f"{name}: pool status all up again, not stale",
                         lambda d=d: (lambda s: not s["stale"] and all(
                             h["state"] == "up" for h in s["hosts"]))(status(d)))
            log(f"pool caught up {time.monotonic() - back:.1f} s after etcd was started")
            wait_for("host-a: pool-etcd-back on its events",
                     lambda: "pool-etcd-back" in events(a))
            cc.define("late", "hello")
            wait_for("the watch resumed: a VM defined on host-c is in host-a's list",
                     lambda: vm_list(a).get("late", {}).get("host") == "host-c")
            check(metric(a, "cella_etcd_reachable") == 1 and
                  metric(a, "cella_etcd_unreachable_seconds") == 0, "metrics: etcd reachable again")
            check(metric(a, "cella_pool_lease_renewal_failures_total") > 0,
                  "metrics: lease renewal failures counted")
            check(metric(a, "cella_etcd_watch_restarts_total") >= 1,
                  "metrics: watch restarts counted")
            check(metric(a, "cella_pool_lease_renewals_total") > 0, "metrics: renewals counted")
            check(rounds(a, "tick-a") > ra, "tick-a ran through it all")
            owner = c.etcdctl("get", f"{PREFIX}/owner/{hc['uuid']}",
                              "--print-value-only").stdout.strip()
            copies = [n for n, d in hosts.items()
                      if any(v["name"] == "ha-c" and v.get("host", n) == n and
                             v["state"] == "running" for v in vm_list(d).values())]
            check(len(copies) <= 1 and (not copies or copies == [owner]),
                  f"the HA VM runs on at most one host, its owner ({owner}): {copies}")
            check(a.vm("tick-a")["state"] == "running", "and still runs")

            one_isolated(c, a, cc)
            start_from_cache(args, c, a)
        except TimeoutError:
            dump_stacks(hosts)
            raise
        finally:
            for d in hosts.values():
                d.cleanup()
            kill_leftover_workers(args, {"tick-a", "tick-b", "ha-c", "late"})
            shutil.rmtree(shared, ignore_errors=True)


def one_isolated(c, a, cc):
    """host-c alone cut off (its only member frozen; the others keep a
    quorum): host-a sees it down once its lease is gone, host-c sees
    itself isolated; back, it is up again."""
    m2 = c.members[2]
    log("freezing host-c's only etcd member")
    os.kill(m2.proc.pid, signal.SIGSTOP)
    try:
        wait_for("host-a sees host-c down once its lease is gone",
                 lambda: {h["name"]: h for h in status(a)["hosts"]}["host-c"]["state"] == "down",
                 timeout=TTL + 20)
        check(not status(a)["stale"], "host-a's view is fresh (it reaches etcd)")
        st = wait_for("host-c sees itself isolated, its view stale",
                      lambda: (lambda s: s if s["stale"] else None)(status(cc)), timeout=20)
        check({h["name"]: h for h in st["hosts"]}["host-c"]["state"] == "isolated",
              "host-c: isolated")
        check(metric(a, "cella_pool_hosts{state=\"down\"}") == 1 and
              metric(a, "cella_pool_hosts{state=\"up\"}") == 2, "host-a's metrics: 2 up, 1 down")
    finally:
        os.kill(m2.proc.pid, signal.SIGCONT)
    wait_for("host-c back: up for host-a",
             lambda: {h["name"]: h for h in status(a)["hosts"]}["host-c"]["state"] == "up")
    wait_for("and for itself, fresh",
             lambda: (lambda s: not s["stale"] and all(h["state"] == "up" for h in s["hosts"]))(
                 status(cc)))


def start_from_cache(args, c, a):
    """host-a's cellad restarted while etcd is away."""
    cache = os.path.join(a.state, "pool-cache.json")
    check(os.path.exists(cache), "host-a keeps its local cache in its state dir")
    pid = a.vm("tick-a")["pid"]
    a.kill9()
    etcd_stop(c)
    a.start()
    check("from its local cache" in a.log(), "cellad started from its local cache")
    v = a.vm("tick-a")
    check(v["state"] == "running" and v["pid"] == pid, "the running worker is re-adopted")
    n = wait_for("the re-adopted guest's output reaches the new cellad",
                 lambda: rounds(a, "tick-a") + 1) - 1
    wait_for("and its guest keeps running", lambda: rounds(a, "tick-a") >= n + 2)
    r = a.post("/v1/vms/tick-a/stop", {})
    check(r.status == 503, f"durable actions wait for etcd: {r.status}")
    st = status(a)
    check(st["stale"] and {h["name"]: h for h in st["hosts"]}["host-a"]["state"] == "isolated",
          "pool status: isolated, stale")
    check(metric(a, "cella_pool_isolated") == 1 and
          metric(a, 'cella_pool_hosts{state="isolated"}') == 1, "metrics: isolated")
    etcd_start(c)
    wait_for("etcd back: host-a up in the pool again",
             lambda: (lambda s: not s["stale"] and {h["name"]: h for h in s["hosts"]}
                      ["host-a"]["state"] == "up")(status(a)))
    rt = wait_for("host-a's runtime record in etcd names its worker",
                  lambda: (lambda r: r if r and r.get("pid") == pid else None)(
                      etcd_json(c, f"{PREFIX}/hosts/host-a/runtime/{v['uuid']}")))
    check(rt["state"] == "running", "running")
    r = a.post("/v1/vms/tick-a/stop", {})
    deadline = time.monotonic() + 20
    while r.status == 503 and time.monotonic() < deadline:
        time.sleep(0.2)  # the client's next request reconnects
        r = a.post("/v1/vms/tick-a/stop", {})
    check(r.status in (200, 202), f"and durable actions work again: {r.status}")
    a.wait_state("tick-a", ["stopped"])


if __name__ == "__main__":
    main(test)
