#!/usr/bin/env python3
"""test_store_etcd.py: the store contract (tests/unit/store/test_store.c) on
etcd clusters this script starts: one member, then three with the first
killed in the middle of the run, then three with the first frozen
(SIGSTOP): the store and its watch go on through the others.

Usage: test_store_etcd.py --test-store PATH"""

import json
import os
import signal as signal_mod
import subprocess
import sys

import etcdutil


def run_contract(test_store, cluster, kill_pid=None, signal="KILL"):
    env = dict(os.environ, CELLA_TEST_ETCD=json.dumps(cluster.store_config()))
    if kill_pid:
        env["CELLA_TEST_ETCD_KILL_PID"] = str(kill_pid)
        env["CELLA_TEST_ETCD_SIGNAL"] = signal
    r = subprocess.run([test_store], env=env, capture_output=True, text=True, timeout=300)
    print(r.stdout, r.stderr, flush=True)
    if r.returncode != 0 or "store-etcd: ran on" not in r.stdout:
        raise SystemExit(f"test-store failed ({r.returncode})")


def main():
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    test_store = args["--test-store"]
    etcdutil.need_etcd()
    etcdutil.log("one member")
    with etcdutil.Cluster(1) as c:
        run_contract(test_store, c)
    etcdutil.log("three members; the first is killed during test_member_killed")
    with etcdutil.Cluster(3) as c:
        first = c.members[0]
        run_contract(test_store, c, kill_pid=first.proc.pid)
        first.proc.wait(timeout=10)
        first.proc = None
        # The two others still serve (quorum 2 of 3).
        r = c.etcdctl("put", "/after-kill", "ok", endpoints=c.endpoints[1:])
        etcdutil.log(f"ok: the cluster serves with two members: {r.stdout.strip()}")
    etcdutil.log("three members; the first is frozen (SIGSTOP) during test_member_killed: "
                 "requests time out on it, the watch's probe gives up on it")
    with etcdutil.Cluster(3) as c:
        first = c.members[0]
        try:
            run_contract(test_store, c, kill_pid=first.proc.pid, signal="STOP")
        finally:
            os.kill(first.proc.pid, signal_mod.SIGCONT)
    etcdutil.log("PASS")


if __name__ == "__main__":
    main()
