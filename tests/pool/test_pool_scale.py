#!/usr/bin/env python3
"""test_pool_scale.py: the scale test's small version (bench/pool_scale.py
runs it at 64 hosts): six cellads, each in its own network namespace on a
bridge, three etcd members on the bridge's address (mutual TLS), the pool
made with `cella pool create`, a token per host and joins three at a time
(tests/pool/poolutil.py, shared with the bench).

- All six join: every host's `pool status` shows the six up.
- Three HA ticker guests on each host (defined and started on each host
  through its own socket) print; every host's pool-wide `cella vm list`
  shows every VM exactly once, on the host that runs it; each runs on
  exactly one host, and etcd names that host its owner.
- Two hosts killed at once (kill -9 of their cellads and workers; each
  also runs a non-HA VM): their HA VMs print on surviving hosts (first
  guest output there), each VM runs on exactly one live host and etcd
  names it the owner, every survivor's pool-wide list agrees, the killed
  hosts show down, and their non-HA VMs run nowhere. TTL 5 s: at 3 s a
  loaded machine renews late (docs/benchmarks.md, "Pool scale").

Needs root (namespaces) and etcd; skips loudly without them.
Usage: test_pool_scale.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import base64
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
from cellad import check, log, main, skip  # noqa: E402

import etcdutil  # noqa: E402
import poolutil  # noqa: E402

HOSTS = 6
PER_HOST = 3
KILL = ("h02", "h04")
TTL = 5


def owners(pool):
    """{vm name: the host etcd names its owner}."""
    def kvs(prefix):
        r = pool.cluster.etcdctl("get", "--prefix", f"{poolutil.PREFIX}/{prefix}", "-w", "json")
        return {base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]:
                base64.b64decode(kv["value"]).decode()
                for kv in json.loads(r.stdout).get("kvs", [])}
    owner = kvs("owner/")
    return {json.loads(v)["name"]: owner.get(u) for u, v in kvs("vms/").items()}


def check_views(pool, want, what):
    """Every live host's pool-wide list shows each VM of want ({vm: host})
    once, on its host (the watch may lag: polled with a deadline)."""
    deadline = time.monotonic() + 20
    while True:
        views = pool.pool_views(pool.live())
        bad = {h: v for h, (v, _) in views.items()
               if {n: hs for n, hs in v.items() if n in want} != {n: [x] for n, x in want.items()}}
        if not bad or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the watches bring the other hosts' changes
    if bad:
        h, v = next(iter(bad.items()))
        log(f"{h} lists {v}")
    check(not bad, f"{what}: every host's pool-wide vm list shows each of the {len(want)} VMs "
          f"once, on its host ({len(views)} hosts)")


def test(args):
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the hosts")
    for tool in ("ip", "openssl"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    etcdutil.need_etcd()
    if "ticker" not in args["guests"]:
        skip("the ticker guest is not built")
    with poolutil.ScalePool(args, HOSTS, etcd_members=3, ttl=TTL, tag="ct", salt=3,
                            width=3) as pool:
        pool.up()
        t = pool.form(join_width=3)
        check(True, f"pool formed in {t['total_s']:.1f} s (joins {t['joins_s']:.1f} s)")
        for h in pool.live():
            st = pool.status(h)
            check(sorted(st) == pool.names and all(x["state"] == "up" for x in st.values()),
                  f"{h.name}: pool status shows the {HOSTS} hosts up")

        placed, _ = pool.define_vms(PER_HOST, period_ms=200)
        # One non-HA VM on each host to be killed: never started elsewhere.
        for n in KILL:
            pool.hosts[n].define(f"plain{n}", "ticker", "period_ms=200", memory_mib=16)
            placed[f"plain{n}"] = n
        pool.start_vms(placed)
        pool.wait_output(placed, "ticker: 2", timeout=60)
        check(True, f"{len(placed)} guests print on their hosts")
        check_views(pool, placed, "before")
        where = pool.where_running()
        bad = {n: where.get(n) for n, h in placed.items() if where.get(n) != [h]}
        check(not bad, f"each VM runs on exactly one host, the one it was started on" +
              (f": {bad}" if bad else ""))
        check(owners(pool) == placed, "etcd names each VM's host its owner")

        ha = [n for n in placed if not n.startswith("plain")]
        pool.wait_owner_leases(ha, timeout=20)
        theirs = sorted(n for n in ha if placed[n] in KILL)
        t0 = pool.kill_hosts(list(KILL))
        log(f"killed {KILL} (kill -9, cellads and workers): {len(theirs)} HA VMs")
        got = pool.wait_failover(theirs, t0, timeout=60)
        took = sorted(s for _, s in got.values())
        check(all(h not in KILL for h, _ in got.values()),
              f"their HA VMs print on surviving hosts ({took[0]:.1f}-{took[-1]:.1f} s after "
              f"the kill, on {len({h for h, _ in got.values()})} hosts)")
        for vm, (h, _) in got.items():
            pool.hosts[h].wait_console(vm, "ticker: 1", timeout=30)
        now = dict(placed)
        for vm, (h, _) in got.items():
            now[vm] = h
        for n in KILL:
            del now[f"plain{n}"]
        where = pool.where_running()
        twice = {n: hs for n, hs in where.items() if len(hs) > 1}
        check(not twice and all(where.get(n) == [h] for n, h in now.items()),
              f"each HA VM runs on exactly one live host, none twice ({len(now)} VMs)")
        check(all(f"plain{n}" not in where for n in KILL),
              "the killed hosts' non-HA VMs run nowhere")
        own = owners(pool)
        check(all(own.get(n) == h for n, h in now.items()),
              "etcd names each running VM's host its owner")
        check_views(pool, now, "after the kill")
        pool.wait_all_up(timeout=20)
        st = pool.status(pool.first)
        check(all(st[n]["state"] == "down" for n in KILL) and
              sum(x["state"] == "up" for x in st.values()) == HOSTS - len(KILL),
              f"pool status: {', '.join(KILL)} down, the other {HOSTS - len(KILL)} up")


if __name__ == "__main__":
    main(test)
