#!/usr/bin/env python3
"""test_pool_members.py: pool membership with real cellads on one etcd
(this script starts it, mutual TLS): host records kept alive by leases.

- Three cellads with a "pool" section record themselves: `cella pool
  status` on each shows the three hosts up, with their capacity (memory,
  CPUs) and address.
- A VM defined on host-b shows under host-b in every host's status.
- `cella pool leave` on host-b is refused while it owns a VM (the VM is
  named), accepted once the VM is deleted: the others no longer list it.
- host-c's cellad SIGKILLed: the others show it down once its lease TTL
  passed (pool status polled with a deadline); started again, it is up.
- A stopped cellad (SIGTERM) revokes its lease: down at once.
- Without a pool section nothing changes: GET /v1/pool is 404 and `cella
  pool status` says the host is in no pool; a pool section without the
  pool's store is refused (exit 2).

Usage: test_pool_members.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from cellad import Daemon, TestFailure, check, log, main  # noqa: E402

import etcdutil  # noqa: E402

PREFIX = "/cella/members"
TTL = 3


def status(d):
    p = d.cli("--json", "pool", "status")
    return {h["name"]: h for h in json.loads(p.stdout)["hosts"]}


def wait_status(d, what, pred, timeout):
    """Poll d's pool status until pred holds, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(d)
        if pred(st):
            check(True, what)
            return st
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out: {what}: {json.dumps(st)}")
        time.sleep(0.2)  # polling pool status with a deadline: the lease lapses in etcd


def host_conf(c, name, mib):
    return {"store": {"etcd": c.store_config(prefix=PREFIX, host=name)},
            "pool": {"address": f"https://127.0.0.1:{8400 + mib // 1024}", "lease_ttl_s": TTL},
            "memory_capacity_mib": mib}


def test(args):
    etcdutil.need_etcd()
    # No pool: nothing changes.
    with Daemon(args, name="single") as d:
        r = d.get("/v1/pool")
        check(r.status == 404 and "not in a pool" in r.json["error"]["reason"],
              f"without a pool section GET /v1/pool is 404: {r.json}")
        p = d.cli("pool", "status", expect=4)
        check("not in a pool" in p.stderr, f"cella pool status says so: {p.stderr.strip()}")
    d = Daemon(args, name="nostore", config={"pool": {"lease_ttl_s": 5}})
    try:
        d.start()
        raise TestFailure("cellad started with a pool section and no store")
    except TestFailure as e:
        check("exited with 2" in str(e) and "needs the pool's store" in d.log(),
              "a pool section without store.etcd is refused (exit 2)")
    finally:
        d.stop()
    with etcdutil.Cluster(1) as c:
        hosts = {}
        try:
            for i, name in enumerate(("host-a", "host-b", "host-c")):
                hosts[name] = Daemon(args, name=name,
                                     config=host_conf(c, name, 1024 * (i + 1))).start()
            for name, d in hosts.items():
                st = status(d)
                check(set(st) == set(hosts) and all(h["state"] == "up" for h in st.values()),
                      f"{name}: pool status shows the three hosts up")
            st = status(hosts["host-a"])
            check([st[n]["memory_mib"] for n in ("host-a", "host-b", "host-c")] ==
                  [1024, 2048, 3072] and all(h["cpus"] >= 1 for h in st.values()),
                  "with each host's capacity (memory, CPUs)")
            check(st["host-b"]["address"] == "https://127.0.0.1:8402", "and its address")
            st2 = {h["name"]: h for h in json.loads(
                hosts["host-b"].cli("pool", "status", "--json").stdout)["hosts"]}
            check(st2.keys() == st.keys(), "cella pool status --json works too")
            p = hosts["host-c"].cli("pool", "status")
            check("host-b" in p.stdout and "up" in p.stdout and "2048 MiB" in p.stdout,
                  "the table names the hosts, states and memory")
            rec = json.loads(c.etcdctl("get", f"{PREFIX}/alive/host-a", "-w", "json").stdout)
            check(int(rec["kvs"][0].get("lease", 0)) != 0, "the alive record is on a lease")

            # A VM on host-b, seen by every host; leaving is refused while it is there.
            hosts["host-b"].define("vm-b", "hello")
            for name, d in hosts.items():
                check(status(d)["host-b"]["vms"] == ["vm-b"],
                      f"{name}: host-b owns vm-b in the pool status")
            p = hosts["host-b"].cli("pool", "leave", expect=5)  # 409
            check("still owns 1 VMs" in p.stderr and "vm-b" in p.stderr,
                  f"leave with a VM is refused: {p.stderr.strip()}")
            check("host-b" in status(hosts["host-a"]), "and host-b is still a member")
            r = hosts["host-b"].request("DELETE", "/v1/vms/vm-b")
            check(r.status == 204, "vm-b deleted")
            hosts["host-b"].cli("pool", "leave")
            st = status(hosts["host-a"])
            check(set(st) == {"host-a", "host-c"}, f"after leave, host-b is gone: {sorted(st)}")
            check(c.etcdctl("get", f"{PREFIX}/alive/host-b").stdout == "",
                  "its lease is revoked")
            p = hosts["host-b"].cli("pool", "join", "https://127.0.0.1:1", "--token",
                                    "0" * 6 + "." + "0" * 32 + "." + "0" * 64, expect=5)
            check("set by its configuration" in p.stderr,
                  f"a pool from the configuration is not joined by hand: {p.stderr.strip()}")

            # host-c dies: down once its lease lapses; back up when it restarts.
            killed = time.monotonic()
            hosts["host-c"].kill9()
            wait_status(hosts["host-a"], "host-c shows down after its lease TTL",
                        lambda st: st["host-c"]["state"] == "down", TTL + 10)
            took = time.monotonic() - killed
            log(f"host-c down after {took:.1f} s (TTL {TTL} s)")
            check(took >= TTL - 1, f"not before its lease could lapse ({took:.1f} s)")
            hosts["host-c"].start()
            check(status(hosts["host-a"])["host-c"]["state"] == "up",
                  "host-c restarted: up again")
            check(status(hosts["host-a"])["host-c"]["memory_mib"] == 3072,
                  "its record kept")

            # A stopped cellad revokes its lease: down at once.
            hosts["host-c"].stop()
            check(status(hosts["host-a"])["host-c"]["state"] == "down",
                  "a stopped cellad shows down at once (lease revoked)")
        finally:
            for d in hosts.values():
                d.cleanup()


if __name__ == "__main__":
    main(test)
