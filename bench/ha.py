#!/usr/bin/env python3
"""ha.py: HA failover time on a small pool (issue 13): three cellads on one
etcd member (this script starts it; loopback, mutual TLS), the lease settings
given below. N HA VMs (memwriter, rewriting 1 MiB) run on host-a; host-a's
cellad and all its workers are killed (kill -9, t0 just before); for each VM
the time from t0 to its first guest output on the host that took it over
(cellad's CLOCK_MONOTONIC stamp of the first console byte,
`first_output_monotonic_ns` in the VM's metrics: the same clock as
time.monotonic()). Repeated R rounds (the VMs go back to host-a between
rounds: deleted and defined again there). Prints p50, p99 and max over all
VMs of all rounds, and how the VMs spread over the survivors.

With --hosts N (N > 3) the pool is N cellads in network namespaces with
three etcd members on a bridge, made by `cella pool create` and joins
(tests/pool/poolutil.py, as bench/pool_scale.py): each round defines the
VMs (ticker guests) on another host and kills that host; the lease settings
are then the TTL's derived ones (--renew-ms, --kill-ms, --margin-ms do not
apply: a created pool takes only its TTL). Needs root.

Usage: bench/ha.py [--build DIR] [--vms N] [--rounds R] [--ttl S] [--renew-ms MS]
                   [--kill-ms MS] [--margin-ms MS] [--hosts N]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
sys.path.insert(0, os.path.join(TOP, "tests", "pool"))
from cellad import Daemon  # noqa: E402
import etcdutil  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--vms", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ttl", type=int, default=3)
    ap.add_argument("--renew-ms", type=int, default=500)
    ap.add_argument("--kill-ms", type=int, default=500)
    ap.add_argument("--margin-ms", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=3)
    o = ap.parse_args()
    if o.hosts > 3:
        return many_hosts(o)
    args = {"cellad": os.path.join(o.build, "daemon", "cellad"),
            "cella": os.path.join(o.build, "cli", "cella"),
            "cella_vm": os.path.join(o.build, "cella-vm"),
            "guests": {"memwriter": os.path.join(o.build, "guest", "memwriter.elf")}}
    pool = {"lease_ttl_s": o.ttl, "renew_ms": o.renew_ms, "kill_ms": o.kill_ms,
            "margin_ms": o.margin_ms}
    work = tempfile.mkdtemp(prefix="cella-bench-ha-")
    storage = [{"name": "shared", "path": work, "role": "operator", "pool": True}]
    times, spread = [], {}
    with etcdutil.Cluster(1) as c:
        def conf(n):
            return {"store": {"etcd": dict(c.store_config(prefix="/cella/bench", host=n),
                                           timeout_ms=1000)},
                    "pool": pool, "storage": storage, "memory_capacity_mib": 65536}
        hosts = {n: Daemon(args, name=n, config=conf(n)) for n in ("host-a", "host-b", "host-c")}
        try:
            for d in hosts.values():
                d.start()
            for r in range(o.rounds):
                a = hosts["host-a"]
                if r:
                    a.start()
                names = [f"ha{r}-{i}" for i in range(o.vms)]
                pids = []
                for n in names:
                    a.define(n, "memwriter", "rounds=0 mib=1 pause_ms=50", ha=True)
                    a.action(n, "start", {"host": "host-a"})  # placement would spread them
                for n in names:
                    a.wait_console(n, "round 1")
                    pids.append(a.vm(n)["pid"])
                time.sleep(1.5)  # let the owner keys be bound to the lease (one renewal)
                t0 = time.monotonic()
                a.kill9()
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                left = set(names)
                deadline = time.monotonic() + 60
                while left and time.monotonic() < deadline:
                    for n in list(left):
                        for h in ("host-b", "host-c"):
                            m = hosts[h].get(f"/v1/vms/{n}/metrics")
                            if m.status == 200 and "first_output_monotonic_ns" in m.json:
                                times.append((m.json["first_output_monotonic_ns"] / 1e9 - t0)
                                             * 1000)
                                spread[h] = spread.get(h, 0) + 1
                                left.discard(n)
                    time.sleep(0.05)  # polling the survivors with a deadline
                if left:
                    sys.exit(f"round {r}: not failed over within 60 s: {sorted(left)}")
                for n in names:
                    for h in ("host-b", "host-c"):
                        if hosts[h].get(f"/v1/vms/{n}").status == 200:
                            hosts[h].action(n, "kill")
                            hosts[h].request("DELETE", f"/v1/vms/{n}")
                print(f"round {r + 1}: {len(names)} VMs, max {max(times[-len(names):]):.0f} ms",
                      flush=True)
        finally:
            for d in hosts.values():
                d.stop()
                shutil.rmtree(d.dir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    print(f"lease TTL {o.ttl} s, renew {o.renew_ms} ms, kill {o.kill_ms} ms, margin "
          f"{o.margin_ms} ms; {o.vms} HA VMs x {o.rounds} rounds")
    print(f"host death -> first guest output elsewhere: p50 {statistics.median(times):.0f} ms, "
          f"p99 {pct(times, 99):.0f} ms, max {max(times):.0f} ms (n={len(times)}); "
          f"taken by {spread}")


def many_hosts(o):
    """The rounds on a pool of o.hosts hosts in network namespaces."""
    import poolutil
    if os.geteuid() != 0:
        sys.exit("--hosts needs root (network namespaces)")
    if o.rounds > o.hosts - 2:
        sys.exit("--rounds: at most hosts - 2 (each round kills another host)")
    args = {"cellad": os.path.join(o.build, "daemon", "cellad"),
            "cella": os.path.join(o.build, "cli", "cella"),
            "cella_vm": os.path.join(o.build, "cella-vm"),
            "guests": {"ticker": os.path.join(o.build, "guest", "ticker.elf")}}
    times, spread = [], {}
    with poolutil.ScalePool(args, o.hosts, etcd_members=3, ttl=o.ttl, tag="hb",
                            etcd_nice=-10, width=4) as pool:
        pool.up()
        pool.form()
        lease = [x for x in pool.first.log().splitlines() if "renewed every" in x]
        for r in range(o.rounds):
            victim = pool.names[1 + r]
            placed = {f"ha{r}-{i}": victim for i in range(o.vms)}
            for n in placed:
                pool.hosts[victim].define(n, "ticker", "period_ms=1000", memory_mib=16, ha=True)
            pool.start_vms(placed)
            pool.wait_output(placed, "ticker: ready")
            pool.wait_owner_leases(list(placed) + times_names(r, o.vms))
            t0 = pool.kill_hosts([victim])
            got = pool.wait_failover(list(placed), t0, timeout=60)
            for h, s in got.values():
                times.append(s * 1000)
                spread[h] = spread.get(h, 0) + 1
            worst = max(s for _, s in got.values()) * 1000
            print(f"round {r + 1}: {len(placed)} VMs, max {worst:.0f} ms", flush=True)
    settings = re.sub(r"^lease [0-9]+, ", "", lease[-1].split("(", 1)[-1].rstrip(")")) \
        if lease else "?"
    print(f"{o.hosts} hosts in namespaces, 3 etcd members; {settings}; "
          f"{o.vms} HA VMs x {o.rounds} rounds")
    print(f"host death -> first guest output elsewhere: p50 {statistics.median(times):.0f} ms, "
          f"p99 {pct(times, 99):.0f} ms, max {max(times):.0f} ms (n={len(times)}); "
          f"taken by {len(spread)} hosts")


def times_names(r, vms):
    """The VMs of the earlier rounds (they run on survivors: their owner
    keys are on leases too)."""
    return [f"ha{q}-{i}" for q in range(r) for i in range(vms)]


if __name__ == "__main__":
    main()
