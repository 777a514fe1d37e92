#!/usr/bin/env python3
"""test_cellad_etcd.py: cellad on the etcd store, end to end, with a
one-member etcd cluster this script starts (mutual TLS).

- A store section with plain HTTP, without a client certificate or with an
  unknown key is refused (exit 2); an etcd nobody answers for too (exit 1).
- Definitions and runtime records go to etcd (no SQLite file is made), and
  a restarted cellad reads them back and re-adopts its running worker.
- etcd stopped: cellad keeps answering for its VMs (list, state, console;
  the guest keeps running), a write is refused with 503 naming etcd, and a
  kill still works locally; etcd back: the runtime record that could not be
  written is caught up, writes work again, and a change another writer
  makes is seen by cellad's watch and in its answers.

Usage: test_cellad_etcd.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from cellad import Daemon, TestFailure, check, log, main  # noqa: E402

import etcdutil  # noqa: E402

PREFIX = "/cella/e2e"


def etcd_json(cluster, key):
    r = cluster.etcdctl("get", key, "--print-value-only")
    return json.loads(r.stdout) if r.stdout.strip() else None


def wait_for(what, pred, timeout=20):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out: {what}")
        time.sleep(0.05)  # polling etcd or cellad's log, with a deadline
    check(True, what)


def refused(args, store, code, text):
    """cellad with this store section exits with code, saying text."""
    d = Daemon(args, config={"store": store})
    try:
        d.start()
    except TestFailure as e:
        if not (f"exited with {code}" in str(e) and text in d.log()):
            log(f"cellad: {e}")
        check(f"exited with {code}" in str(e) and text in d.log(),
              f"store {json.dumps(store)[:60]}...: exit {code}, '{text}'")
        return
    finally:
        d.stop()
        import shutil
        shutil.rmtree(d.dir, ignore_errors=True)
    raise TestFailure(f"cellad started with {store}")


def test(args):
    etcdutil.need_etcd()
    with etcdutil.Cluster(1) as c:
        conf = {"store": {"etcd": c.store_config(prefix=PREFIX, host="host-a")}}
        # Configuration mistakes and an etcd nobody answers for: no start.
        plain = dict(conf["store"]["etcd"], endpoints=["http://127.0.0.1:2379"])
        refused(args, {"etcd": plain}, 2, "etcd is reached with mutual TLS only")
        nocert = {k: v for k, v in conf["store"]["etcd"].items() if k != "cert"}
        refused(args, {"etcd": nocert}, 2, "ca, cert and key are required")
        refused(args, {"etcd": dict(conf["store"]["etcd"], color="blue")}, 2,
                "unknown key 'color'")
        nobody = dict(conf["store"]["etcd"], endpoints=["https://127.0.0.1:1"])
        refused(args, {"etcd": nobody}, 1, "Connection refused")
        with Daemon(args, config=conf) as d:
            keep = d.define("keep", "memwriter", "rounds=0 mib=4 pause_ms=20")
            idle = d.define("idle", "hello")
            d.action("keep", "start")
            d.wait_console("keep", "round 2")
            check(not os.path.exists(os.path.join(d.state, "cellad.db")),
                  "no SQLite database with a store section")
            rec = etcd_json(c, f"{PREFIX}/vms/{keep['uuid']}")
            check(rec and rec["name"] == "keep" and rec["cmdline"].startswith("rounds=0"),
                  "the definition is in etcd")
            owner = c.etcdctl("get", f"{PREFIX}/owner/{idle['uuid']}", "--print-value-only")
            check(owner.stdout.strip() == "host-a", "this host owns the VMs it defined")
            rt = etcd_json(c, f"{PREFIX}/hosts/host-a/runtime/{keep['uuid']}")
            pid = d.vm("keep")["pid"]
            check(rt and rt["state"] == "running" and rt["pid"] == pid,
                  "the runtime record is this host's, in etcd")

            # A restarted cellad reads everything back from etcd.
            d.stop()
            d.start()
            vms = {v["name"]: v for v in d.get("/v1/vms").json["vms"]}
            check(set(vms) == {"keep", "idle"} and vms["keep"]["uuid"] == keep["uuid"],
                  "the definitions survive a restart (read from etcd)")
            check(vms["keep"]["state"] == "running" and vms["keep"]["pid"] == pid,
                  "the running worker is re-adopted from etcd's runtime record")

            # etcd goes away.
            log("stopping etcd")
            c.members[0].stop()
            r = d.get("/v1/vms")
            check(r.status == 200 and len(r.json["vms"]) == 2, "the VM list is still served")
            check(d.vm("keep")["state"] == "running", "the VM's state is still served")
            tail = d.console("keep")
            n = tail.count("round")
            d.wait_console("keep", f"round {n + 2} ")
            check(True, "the guest keeps running while etcd is down")
            r = d.post("/v1/vms", {"name": "new", "kernel": args["guests"]["hello"],
                                   "memory_mib": 64})
            check(r.status == 503 and "etcd" in r.json["error"]["reason"],
                  f"a definition is refused with 503 naming etcd: {r.json}")
            r = d.request("PATCH", "/v1/vms/idle", {"cpus": 2})
            check(r.status == 503 and "etcd" in r.json["error"]["reason"],
                  f"a change is refused with 503 naming etcd: {r.json}")
            r = d.request("DELETE", "/v1/vms/idle")
            check(r.status == 503, f"a deletion is refused with 503: {r.json}")
            vm = d.action("keep", "kill")
            check(vm["state"] == "stopped", "a local action that needs no record still works")

            # etcd comes back.
            log("starting etcd again")
            c.members[0].start()
            c.wait_healthy()
            wait_for("the runtime record written while etcd was down is caught up",
                     lambda: (etcd_json(c, f"{PREFIX}/hosts/host-a/runtime/{keep['uuid']}")
                              or {}).get("state") == "stopped")
            deadline = time.monotonic() + 20
            while True:
                r = d.post("/v1/vms", {"name": "new", "kernel": args["guests"]["hello"],
                                       "memory_mib": 64})
                if r.status == 201 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)  # the client's next request reconnects
            check(r.status == 201, f"writes work again: {r.status}")
            new_uuid = r.json["uuid"]
            check(etcd_json(c, f"{PREFIX}/vms/{new_uuid}")["name"] == "new",
                  "and reach etcd")

            # Another writer: a peer host added straight into etcd.
            c.etcdctl("put", f"{PREFIX}/peers/other", json.dumps(
                {"name": "other", "url": "https://192.0.2.1:8419", "token": "t" * 20,
                 "tls_name": None}))
            wait_for("cellad's watch sees another writer's change",
                     lambda: "store: hosts/other changed by another writer" in d.log())
            hosts = d.get("/v1/hosts").json
            names = [h["name"] for h in (hosts["hosts"] if isinstance(hosts, dict) else hosts)]
            check("other" in names, f"and serves it: {names}")
            own = [u for u in (new_uuid, keep["uuid"], idle["uuid"])
                   if f"/{u} changed by another writer" in d.log()]
            check(not own, f"its own writes are not reported as others': {own}")


if __name__ == "__main__":
    main(test)
