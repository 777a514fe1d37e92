#!/usr/bin/env python3
"""test_pool_replica.py: a host of the VM's own pool as a replication target
is refused (docs/replica.md, "The replica as a VM definition": the replica is
a VM of the same name on its target, and names are unique in a pool). Two
cellads in network namespaces on a bridge, an etcd member on the bridge's
address, a pool made with `cella pool create` and `cella pool join`.

- `cella replica enable rv --to host-b` on host-a: refused (409) saying to
  replicate outside the pool; nothing on host-b (no replica, no VM).
- host-b asked directly for the replica (POST /v1/replicas, as a peer of
  another pool would be): refused, the name being taken in the pool; no
  record left.
- `--to host-a` (the VM's own host) and a name that is neither a pool host
  nor a peer are refused.

Needs root (namespaces) and etcd; skips loudly without them.
Usage: test_pool_replica.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
from cellad import TestFailure, check, log, main, skip  # noqa: E402

import etcdutil  # noqa: E402
import netutil  # noqa: E402
import test_pool_hosts as ph  # noqa: E402
import tlsutil  # noqa: E402
from test_replica import SEQ, flushed  # noqa: E402
from replutil import until as wait_for  # noqa: E402

NET = netutil.subnet(23)
ADDR = {"a": f"{NET}.2", "b": f"{NET}.3"}


class Host(ph.Host):
    def __init__(self, args, h, ns, boot):
        super().__init__(args, h, ns, boot)
        self.config["tcp"]["address"] = ADDR[h]
        self.url = f"https://{ADDR[h]}:{ph.PORT}"
        self.real_cellad = args["cellad"]

    def start(self):
        self.args = dict(self.args, cellad=self.real_cellad)  # started again: no wrapper twice
        return super().start()


def test(args):
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the hosts")
    for tool in ("ip", "openssl", "qemu-img"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    etcdutil.need_etcd()
    boot = tempfile.mkdtemp(prefix="cella-prep-boot-")
    tlsutil.make_pki(boot, names=("a", "b"))
    with open(f"{boot}/token", "w") as f:
        f.write("pool-test-bootstrap-token-0123456789\n")
    net = netutil.Net(ADDR, f"{NET}.1", tag="cr")
    hosts = {}
    try:
        net.up()
        with etcdutil.Cluster(1, host=f"{NET}.1") as c:
            for h in ADDR:
                hosts[h] = Host(args, h, net.ns[h], boot).start()
            scenario(c, hosts, boot)
    finally:
        for d in hosts.values():
            d.cleanup()
        net.down()
        shutil.rmtree(boot, ignore_errors=True)


def scenario(c, hosts, boot):
    a, b = hosts["a"], hosts["b"]
    eps = ",".join(c.endpoints)
    p = a.cli("pool", "create", "pr", "--etcd", eps, "--ca-cert", c.ca, "--ca-key",
              f"{c.dir}/ca.key", "--address", a.url, "--host", "host-a", "--lease-ttl", "3")
    token = next(w for w in p.stdout.split() if w.count(".") == 2 and len(w) > 100)
    a.wait_pool()
    b.cli("pool", "join", a.url, "--token", token, "--host", "host-b", "--address", b.url)
    b.wait_pool()
    wait_for("two hosts up", lambda: len(a.status()) == 2 and all(
        x["state"] == "up" for x in a.status().values()))
    check(not json.loads(a.cli("--json", "host", "list").stdout).get("hosts"),
          "no peer added (cella host add)")

    img = os.path.join(boot, "rv.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(64 << 20)], check=True)
    a.define("rv", "blkverify", SEQ, memory_mib=128,
             disks=[{"path": img, "id": "data", "cbt": True}])
    a.action("rv", "start", {"host": "host-a"})
    wait_for("the guest flushes", lambda: flushed(a) >= 2)
    a.cli("replica", "enable", "rv", "--to", "host-a", expect=None)
    check(a.get("/v1/vms/rv/replica").status == 404, "--to the VM's own host: refused")
    a.cli("replica", "enable", "rv", "--to", "nowhere", expect=4)
    p = a.cli("replica", "enable", "rv", "--to", "host-b", "--interval", "1s", expect=None)
    check(p.returncode != 0 and "host of this pool" in p.stderr and
          "outside the pool" in p.stderr, f"a host of the same pool refused: {p.stderr!r}")
    check(a.get("/v1/vms/rv/replica").status == 404, "not replicated")
    check(b.get("/v1/replicas/rv").status == 404, "host-b: no replica")
    # The target itself refuses it: the name is the pool's already.
    vm = a.vm("rv")
    disks = [{k: d[k] for k in ("path", "id", "format", "cbt")} for d in vm["disks"]]
    body = {"vm": dict({k: vm[k] for k in ("name", "uuid", "kernel", "cmdline", "memory_mib")},
                       disks=disks), "disk_sizes": {"data": 64 << 20},
            "from": "elsewhere"}
    r = b.post("/v1/replicas", body)
    check(r.status == 409 and "unique in a pool" in r.body, f"host-b refuses it: {r}")
    check(b.get("/v1/replicas/rv").status == 404, "host-b: no record left")
    check(a.vm("rv")["state"] == "running" and "replica" not in a.vm("rv"), "rv runs on")

if __name__ == "__main__":
    main(test)
