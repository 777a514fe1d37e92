#!/usr/bin/env python3
"""test_pool_replica_broker.py: a pool as a replication target (docs/replica.md,
"A pool as target"): Hyper-V's Replica Broker. Three pool hosts (host-a,
host-b, host-c) and a standalone source (src), each a cellad in its own
network namespace on one bridge, one etcd member on the bridge's address,
pool storage shared by path. The source's certificate comes from the
pool's CA; it knows the pool as one peer entry listing the three members'
addresses.

- `cella replica enable rv --to pool2`: the member the source reaches
  first (host-a) keeps the replica: its records and points on pool storage,
  its VM definition (marked a replica) owned by host-a in etcd; rounds land;
  host-c asked for the replica: forwarded to host-a (the same points).
- host-a's cellad (and any worker) killed (kill -9): the source's next
  rounds go to host-b, which takes the replica over (etcd names host-b,
  `replica-taken-over`), from the last point: no full copy sent again (the
  source's `full_sets` stays 1), the points go on one per round.
- A test failover asked of host-c runs on the owner, host-b; its test-stop
  too.
- The source and then host-b killed: an unplanned failover asked of host-c
  (host-b down) takes the replica over there and fails over to the last
  point the source confirmed (or a later one); the VM is an ordinary pool
  VM (no mark), started with blkverify mode=seqcheck on host-c: the guest
  finds every slot whole (PASS).

Needs root (namespaces), etcd, ip, openssl and qemu-img; skips loudly without them.
Usage: test_pool_replica_broker.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
sys.path.insert(0, os.path.join(HERE, "..", "security"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from cellad import TestFailure, check, log, main, skip  # noqa: E402

import etcdutil  # noqa: E402
import netutil  # noqa: E402
import test_export  # noqa: E402
import tlsutil  # noqa: E402
from poolutil import PoolHost  # noqa: E402
from test_replica import SEQ, flushed  # noqa: E402
from replutil import until  # noqa: E402

NET = netutil.subnet(41)
ADDR = {"a": f"{NET}.2", "b": f"{NET}.3", "c": f"{NET}.4", "s": f"{NET}.5"}
POOL = "pr2"


def sign(ca_dir, out_dir, name, ip):
    """out_dir/NAME.pem and .key signed by the pool's CA (ca_dir/ca.pem, ca.key)."""
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)
    with open(f"{out_dir}/{name}.ext", "w") as f:
        f.write(f"subjectAltName=IP:{ip},DNS:{name}\n")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
         f"{out_dir}/{name}.key", "-out", f"{out_dir}/{name}.csr")
    ossl("x509", "-req", "-in", f"{out_dir}/{name}.csr", "-CA", f"{ca_dir}/ca.pem", "-CAkey",
         f"{ca_dir}/ca.key", "-CAcreateserial", "-days", "2", "-extfile",
         f"{out_dir}/{name}.ext", "-out", f"{out_dir}/{name}.pem")


def test(args):
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the hosts")
    for tool in ("ip", "openssl", "qemu-img"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    etcdutil.need_etcd()
    boot = tempfile.mkdtemp(prefix="cella-rb-boot-")
    shared = tempfile.mkdtemp(prefix="cella-rb-shared-")
    tlsutil.make_pki(boot, names=("boot",))
    with open(f"{boot}/token", "w") as f:
        f.write("pool-broker-bootstrap-token-0123456789\n")
    net = netutil.Net(ADDR, f"{NET}.1", tag="rb")
    hosts = {}
    ok = False
    try:
        net.up()
        with etcdutil.Cluster(1, host=f"{NET}.1") as c:
            storage = {"storage": [{"name": "shared", "path": shared, "role": "operator",
                                    "pool": True}]}
            for h in "abc":
                hosts[h] = PoolHost(args, f"host-{h}", net.ns[h], ADDR[h], boot,
                                    config=storage).start()
            sign(c.dir, boot, "src", ADDR["s"])
            hosts["s"] = PoolHost(args, "src", net.ns["s"], ADDR["s"], boot, config={
                "tls": {"cert": f"{boot}/src.pem", "key": f"{boot}/src.key", "ca": c.ca}}).start()
            scenario(c, hosts, boot, shared)
            ok = True
    finally:
        for d in hosts.values():
            d.show_log = not ok
            d.cleanup()
        net.down()
        shutil.rmtree(boot, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)
    bad = [d.name for d in hosts.values() if getattr(d, "sanitizer", False)]
    check(not bad, f"no sanitizer report in the logs (ASan builds): {bad}")


def owner(c, uuid):
    r = c.etcdctl("get", f"/cella/{POOL}/owner/{uuid}", "--print-value-only")
    return r.stdout.strip()


def points(h):
    r = h.get("/v1/replicas/rv")
    return r.json["points"] if r.status == 200 else []


def status(s):
    r = s.get("/v1/vms/rv/replica")
    if r.status != 200:
        raise TestFailure(f"replica status: {r}")
    return r.json


def scenario(c, hosts, boot, shared):
    a, b, cc, s = hosts["a"], hosts["b"], hosts["c"], hosts["s"]
    p = a.cli("pool", "create", POOL, "--etcd", ",".join(c.endpoints), "--ca-cert", c.ca,
              "--ca-key", f"{c.dir}/ca.key", "--address", a.url, "--host", "host-a",
              "--lease-ttl", "3")
    check("shown once" in p.stdout, f"pool create: {p.stdout}")
    a.wait_pool()
    for h in (b, cc):
        tok = json.loads(a.cli("--json", "pool", "token", "--ttl", "600").stdout)["token"]
        h.cli("pool", "join", a.url, "--token", tok, "--host", h.name, "--address", h.url)
        h.wait_pool()
    until("three hosts up", lambda: all(
        x["state"] == "up" for x in json.loads(a.cli("--json", "pool", "status").stdout)
        ["hosts"]) and len(json.loads(a.cli("--json", "pool", "status").stdout)["hosts"]) == 3)

    # The source: a guest writing checksummed rounds, the pool as one peer.
    img = os.path.join(s.dir, "rv.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(64 << 20)], check=True)
    s.define("rv", "blkverify", SEQ, memory_mib=128,
             disks=[{"path": img, "id": "data", "cbt": True}])
    s.action("rv", "start")
    until("the guest flushes", lambda: flushed(s) >= 2)
    for bad in (f"{a.url},http://{ADDR['b']}:8419", f"{a.url},", f"{a.url},,{b.url}",
                ",".join([a.url] * 9), f"{a.url}/v1,{b.url}"):
        r = s.post("/v1/hosts", {"name": "bad", "url": bad, "token": "x" * 20})
        check(r.status == 400 and "url" in r.body, f"url {bad!r} refused: {r.status}")
    s.cli("host", "add", "pool2", "--url", ",".join(h.url for h in (a, b, cc)),
          "--token-file", f"{boot}/token")
    s.cli("replica", "enable", "rv", "--to", "pool2", "--interval", "1s", "--keep", "4")
    until("two points on the pool", lambda: len(points(a)) >= 2)
    uuid = s.vm("rv")["uuid"]
    check(owner(c, uuid) == "host-a", f"etcd: host-a owns the replica ({owner(c, uuid)!r})")
    check(os.path.isdir(os.path.join(shared, "replicas", "rv", "disk-data")),
          "the replica's points are on pool storage")
    vm = a.vm("rv")
    check(vm.get("replica", {}).get("state") == "replicating", f"the replica's VM: {vm}")
    pc = points(cc)
    check(pc and set(pc) <= set(points(a)) | set(pc), f"host-c answers (forwarded): {pc}")

    # host-a's cellad (and workers) killed: host-b takes over.
    st0 = until("rounds going", lambda: (lambda x: x if x["rounds"] >= 3 and
                                         x["state"] == "normal" else None)(status(s)))
    check(st0["full_sets"] == 1, f"one full copy so far: {st0}")
    last = st0["last_point"]
    pids = [v["pid"] for v in a.local_vms().values() if v.get("pid")]
    t_kill = time.monotonic()
    a.kill9()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    until("host-b owns the replica", lambda: owner(c, uuid) == "host-b", 60)
    until("a round after the kill", lambda: status(s)["rounds"] > st0["rounds"], 60)
    log(f"first point on host-b {time.monotonic() - t_kill:.1f} s after the kill")
    st1 = until("three rounds on host-b", lambda: (lambda x: x if x["rounds"] >= st0["rounds"] + 3
                                                   and x["state"] == "normal" else None)
                (status(s)), 60)
    log(f"after the takeover: rounds {st1['rounds']}, failures {st1['failures']}, "
        f"full sets {st1['full_sets']}, last point {st1['last_point']} (was {last})")
    check(st1["full_sets"] == 1, f"no full resynchronisation after the takeover: {st1}")
    pb = points(b)
    nums = [int(x[1:]) for x in pb]
    check(nums and nums == list(range(nums[0], nums[0] + len(nums))) and
          nums[-1] >= int(st1["last_point"][1:]) and nums[0] <= int(last[1:]) + 1,
          f"host-b's points go on from {last}, one per round: {pb}")
    check(any(e["event"] == "replica-taken-over" for e in b.events(vm="rv")),
          "host-b: replica-taken-over")
    check(b.vm("rv").get("replica", {}).get("state") == "replicating", "the replica on host-b")
    peer = json.loads(s.cli("--json", "host", "list").stdout)["hosts"][0]
    check(peer["url"] == ",".join(h.url for h in (b, a, cc)),
          f"the source tries host-b first now: {peer['url']}")

    # A test failover asked of host-c: it runs on the owner, host-b.
    log(cc.cli("replica", "failover", "rv", "--test").stdout.strip())
    tv = until("rv-test on host-b", lambda: b.local_vms().get("rv-test"))
    check(tv["state"] in ("starting", "running") and "rv-test" not in cc.local_vms(),
          f"the test copy runs on host-b: {tv['state']}")
    cc.cli("replica", "test-stop", "rv")
    check(b.get("/v1/vms/rv-test").status == 404, "the test copy is gone")

    # The source and then the owner (host-b) killed: an unplanned failover
    # asked of host-c takes the replica over (its owner is down) and runs there.
    f1 = flushed(s)
    r0 = status(s)["rounds"]
    until(f"a point cut after round {f1}", lambda: status(s)["rounds"] >= r0 + 2)
    last = status(s)["last_point"]
    for h in (s, b):
        pids = [v["pid"] for v in h.local_vms().values() if v.get("pid")]
        h.kill9()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    until("host-c sees host-b down", lambda: {x["name"]: x["state"] for x in json.loads(
        cc.cli("--json", "pool", "status").stdout)["hosts"]}.get("host-b") == "down", 30)
    out = cc.cli("replica", "failover", "rv", "--no-start").stdout.strip()
    log(out)
    m = re.search(r"point r(\d+)", out)
    check(m and int(m.group(1)) >= int(last[1:]),
          f"failed over to the last point the source confirmed ({last}) or a later one")
    check(owner(c, uuid) == "host-c", f"etcd: host-c owns it ({owner(c, uuid)!r})")
    check(any(e["event"] == "replica-taken-over" for e in cc.events(vm="rv")),
          "host-c: replica-taken-over")
    vm = cc.local_vms().get("rv")
    check(vm and vm["state"] in ("defined", "stopped") and "replica" not in vm,
          f"an ordinary pool VM on host-c, not started: {vm}")
    r = cc.request("PATCH", "/v1/vms/rv", {"cmdline": "mode=seqcheck " + test_export.SEQ})
    check(r.status == 200, f"cmdline to seqcheck: {r}")
    cc.action("rv", "start", {"host": "host-c"})
    cc.wait_console("rv", "PASS blkverify", timeout=120)
    rep = cc.get("/v1/replicas/rv").json
    check(rep["state"] == "failed-over", f"the replica is failed over: {rep}")

if __name__ == "__main__":
    main(test)
