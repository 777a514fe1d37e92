"""test_replica.py: replication between two cellads (docs/replica.md), each
in its own network namespace with its TCP API and certificates (the moves
test's setup: test_move.py). The VM on host a runs blkverify mode=seq (it
writes numbered rounds into checksummed slots of its disk all the time and
prints "flushed N" after each batch is flushed).

- `cella replica enable rv --to b --interval 1s --keep 4`: b shows the replica
  with recovery points, one per round; a's status is normal; events
  replica-point (b) and replica-point-sent (a); retention keeps at most 4;
  the sets travel compressed (zstd): fewer bytes sent than changed.
- The link cut for a while: rounds fail (a's status says error), the
  replica keeps its points; the link back: replication goes on from the
  last confirmed point (no resynchronisation: b's base is the same file,
  and the next set is small).
- Test failover: a copy (rv-test, its own UUID, no network) runs on b while
  rounds go on; one at a time; the replica cannot be deleted under it;
  test-stop removes the copy and its layers.
- Unplanned failover: a round flushed by the guest, then a point taken after
  it; a's cellad and worker killed (kill -9). On b, `cella replica failover
  rv --no-start`: the VM defined on the latest point; its command line set to
  blkverify mode=seqcheck and started: the guest itself finds every slot
  whole (PASS), and the point is one instant of the guest's history that
  holds that round (test_export.point_in_time). `qemu-img check` passes on
  every layer.

Needs root (network namespaces), ip, openssl and qemu-img; skips loudly
otherwise."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from cellad import TestFailure, check, log, main
import replutil
from replutil import store_points, until  # noqa: F401  (other replication tests import them here)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import test_export  # noqa: E402  (point_in_time: one instant of blkverify's history)

SIZE = 64 << 20
SEQ = "mode=seq batch=16 qd=8 " + test_export.SEQ


def replica(b, name="rv"):
    r = b.get(f"/v1/replicas/{name}")
    return r.json if r.status == 200 else None


def status(a, name="rv"):
    r = a.get(f"/v1/vms/{name}/replica")
    if r.status != 200:
        raise TestFailure(f"replica status: {r}")
    return r.json


def flushed(a, name="rv"):
    rounds = re.findall(r"^flushed (\d+)", a.console(name, history=1 << 22), re.M)
    return int(rounds[-1]) if rounds else 0


def test(args):
    replutil.two_hosts(args, "rep", lambda a, b, net, work: scenario(args, a, b, net, work))


def scenario(args, a, b, net, work):
    img = os.path.join(work, "rv.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(SIZE)], check=True)
    a.define("rv", "blkverify", SEQ, memory_mib=128,
             disks=[{"path": img, "id": "data", "cbt": True}])
    # Refused while it does not run, and without a target.
    r = a.post("/v1/vms/rv/replica", {"to": "b"})
    check(r.status == 409 and "start the VM" in r.body, f"enable on a stopped VM: {r}")
    a.action("rv", "start")
    until("the guest flushes", lambda: flushed(a) >= 3)
    a.cli("replica", "enable", "rv", "--to", "nope", expect=4)
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "4")
    a.cli("replica", "enable", "rv", "--to", "b", expect=None)  # twice: refused below
    r = a.post("/v1/vms/rv/replica", {"to": "b"})
    check(r.status == 409, f"enabled twice: {r.status}")

    rep = until("three points on b", lambda: (lambda x: x if x and
                                                len(x["points"]) >= 3 else None)(replica(b)))
    log(f"b: points {rep['points']}")
    st = status(a)
    check(st["state"] == "normal" and st["health"] in ("normal", "warning") and
          st["last_point"] in rep["points"] + [rep["points"][-1]], f"a's status: {st}")
    check(any(e["event"] == "replica-point" for e in b.events(vm="rv")), "b: replica-point events")
    check(any(e["event"] == "replica-point-sent" for e in a.events(vm="rv")),
          "a: replica-point-sent events")
    b_list = json.loads(b.cli("--json", "replica", "list").stdout)["replicas"]
    check([x["name"] for x in b_list] == ["rv"] and b_list[0]["state"] == "replicating",
          f"cella replica list on b: {b_list}")
    until("six rounds", lambda: status(a)["rounds"] >= 6)
    st = status(a)
    # 4 KiB sets carry the guest's own slots, not the zeroes around them
    # in a 64 KiB block: they shrink less, but they shrink.
    check(st["compression"] == "zstd" and 0 < st["bytes_sent"] < st["bytes_changed"] * 0.9,
          f"change sets compressed on the wire: {st['bytes_sent']} bytes sent for "
          f"{st['bytes_changed']} changed")
    pts = replica(b)["points"]
    check(1 <= len(pts) <= 4, f"retention keeps at most 4 points: {pts}")

    # The link cut: rounds fail, nothing is lost; back: incrementals go on.
    base = store_points(b)[0]
    before = status(a)
    net_cut(net, True)
    try:
        until("a round failing", lambda: status(a)["failures"] > before["failures"], 90)
        check(status(a)["state"] == "error", f"a's status with the link cut: {status(a)}")
    finally:
        net_cut(net, False)
    failed = status(a)
    good = until("a point after the link came back", lambda: (lambda s: s if s["state"] ==
                 "normal" and s["rounds"] > failed["rounds"] else None)(status(a)), 90)
    now = store_points(b)
    check(now[0]["name"] != "" and os.path.exists(now[0]["path"]) and
          (now[0]["name"] == base["name"] or now[0]["seq"] == 0),
          f"no resynchronisation: the base is {now[0]}, was {base}")
    log(f"after the cut: {good['bytes_sent']} bytes sent in {good['rounds']} rounds; "
        f"points {[p['name'] for p in now]}")

    # Test failover: a copy beside, while replication goes on.
    out = b.cli("replica", "failover", "rv", "--test").stdout
    log(out.strip())
    t = b.vm("rv-test")
    check(t["uuid"] != a.vm("rv")["uuid"] and t["state"] in ("starting", "running"),
          f"the test copy: its own identity, started ({t['state']})")
    b.wait_console("rv-test", "flushed", timeout=60)
    r1 = status(a)["rounds"]
    until("rounds while the test copy runs", lambda: status(a)["rounds"] >= r1 + 2)
    check(replica(b)["state"] == "replicating", "the replica goes on replicating")
    b.cli("replica", "failover", "rv", "--test", expect=5)  # one at a time
    b.cli("replica", "delete", "rv", expect=5)              # its points are in use
    b.cli("replica", "test-stop", "rv")
    check(b.get("/v1/vms/rv-test").status == 404, "the test copy is gone")
    left = [f for f in os.listdir(os.path.join(b.state, "replicas", "rv"))
            if f.startswith("test-")]
    check(not left, f"its layers are gone: {left}")
    b.cli("replica", "test-stop", "rv", expect=4)

    # Unplanned failover: a round flushed, then a point cut after it.
    f1 = flushed(a)
    r0 = status(a)["rounds"]
    until("a point cut after round %d" % f1, lambda: status(a)["rounds"] >= r0 + 2)
    last = status(a)["last_point"]
    pid = a.vm("rv")["pid"]
    a.kill9()
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    rep = replica(b)
    check(last in rep["points"], f"b has the last point a confirmed ({last}): {rep['points']}")
    for p in store_points(b):
        subprocess.run(["qemu-img", "check", "-q", p["path"]], check=True)
    latest = store_points(b)[-1]["path"]
    flat = os.path.join(work, "latest.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", latest, flat], check=True)
    test_export.point_in_time(flat)
    newest = newest_round(flat)
    check(newest >= f1, f"the latest point holds round {newest}, at least round {f1} (flushed "
          "before a point was cut)")
    out = b.cli("replica", "failover", "rv", "--no-start").stdout
    log(out.strip())
    vm = b.vm("rv")
    check(vm["state"] in ("defined", "stopped"), f"failed over, not started: {vm['state']}")
    r = b.request("PATCH", "/v1/vms/rv", {"cmdline": "mode=seqcheck " + test_export.SEQ})
    check(r.status == 200, f"cmdline to seqcheck: {r}")
    b.action("rv", "start")
    b.wait_console("rv", "PASS blkverify", timeout=120)
    check(replica(b)["state"] == "failed-over", "b: the replica is failed over")
    r = b.request("PUT", "/v1/replicas/rv/disks/data", raw=b"x",
                  headers={"Content-Type": "application/octet-stream"})
    check(r.status == 409, f"a change set after the failover: {r.status}")
    b.cli("replica", "delete", "rv", expect=5)  # the VM runs on its points (409)


def newest_round(img):
    import struct
    newest = 0
    with open(img, "rb") as f:
        data = f.read()
    for s in range(test_export.SLOTS):
        magic, rnd = struct.unpack_from("<2Q", data, s * test_export.STRIDE)
        if magic == test_export.SEQ_MAGIC:
            newest = max(newest, rnd)
    return newest


def net_cut(net, down):
    """Take the link between the two hosts down (or up again)."""
    for h, ns in net.ns.items():
        dev = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "type", "veth"],
                             capture_output=True, text=True).stdout.split(":")[1].strip()
        dev = dev.split("@")[0]
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "down" if down else "up"],
                       check=True)


if __name__ == "__main__":
    main(test)
