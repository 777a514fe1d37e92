"""test_replica_spooltime.py: a set that a round cut but could not deliver
(the link down) and that a later round sends is recorded on the target with
the time it was cut, not the later round's (docs/replica.md, "Operating
replication": a point's time is its cut instant; the RPO and `cella replica
points` rely on it). Two cellads in network namespaces (test_replica.py).

The VM runs blkverify mode=seq; replication every second. The link goes
down; a round's set is spooled on a (replica-DISK.xfer.json, with its cut
time) and not delivered; the link stays down for several seconds and more
rounds fail; the link comes back and a later round delivers the set. On b,
the point has exactly the spool's cut time, which is no later than the
moment the spool was seen, seconds before the link came back.

Needs root (network namespaces), ip, openssl and qemu-img; skips loudly
otherwise."""

import json
import os
import subprocess
import time

from cellad import check, log, main
import replutil
from test_replica import SEQ, net_cut, replica, status, until

STALL_S = 2
DOWN_S = 5


def test(args):
    os.environ["CELLA_TEST_REPLICA_STALL_S"] = str(STALL_S)
    replutil.two_hosts(args, "rst", scenario)


def now_ms():
    return int(time.time() * 1000)


def scenario(a, b, net, work):
    img = os.path.join(work, "rv.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(64 << 20)], check=True)
    a.define("rv", "blkverify", SEQ, disks=[{"path": img, "id": "data", "cbt": True}])
    a.action("rv", "start")
    uuid = a.vm("rv")["uuid"]
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "100")
    until("a point of rv on b", lambda: (lambda x: x if x and x["points"] else None)(
        replica(b)), 60)
    meta = os.path.join(a.state, "vms", uuid, "replica-data.xfer.json")

    def spooled():
        try:
            with open(meta) as f:
                m = json.load(f)
        except (OSError, ValueError):
            return None
        return m if not m.get("done") else None

    before = status(a)
    net_cut(net, True)
    sp = until("a set spooled and not delivered", lambda: (lambda m: m if m and status(a)[
        "failures"] > before["failures"] else None)(spooled()), 90)
    seen_ms = now_ms()
    log(f"spooled: point {sp['point']} cut at {sp.get('cut_at')} (seen at {seen_ms})")
    check(sp.get("cut_at", 0) > 0 and sp["cut_at"] <= seen_ms,
          f"the spool records its cut time: {sp}")
    f1 = status(a)["failures"]
    until(f"{DOWN_S} s down and another round failing", lambda: now_ms() - seen_ms >= DOWN_S *
          1000 and status(a)["failures"] > f1, 60)
    up_ms = now_ms()
    net_cut(net, False)

    # a's round ends once b has answered the upload, after b recorded the
    # point's time (until then b lists a new point with the time it was made).
    until(f"a delivered {sp['point']}", lambda: (lambda st: st["last_point"] and
                                                 st["last_point"] >= sp["point"])(status(a)), 120)

    def delivered():
        x = replica(b)
        pts = x and [p for p in x["disks"][0]["points"] if p["name"] == sp["point"]]
        return pts[0] if pts else None
    pt = until(f"point {sp['point']} on b", delivered, 120)
    log(f"b's point {pt['name']}: cut_at {pt['cut_at']}; spool seen {seen_ms}, link up {up_ms}")
    check(pt["cut_at"] == sp["cut_at"], f"b records the spool's cut time: {pt['cut_at']} vs "
          f"{sp['cut_at']}")
    check(pt["cut_at"] <= seen_ms < up_ms - (DOWN_S - 1) * 1000,
          f"the point's time is the cut, seconds before the link came back: {pt}")
    # `cella replica points` shows that instant.
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sp["cut_at"] // 1000)) + \
        f".{sp['cut_at'] % 1000:03d}"
    line = [x for x in b.cli("replica", "points", "rv").stdout.splitlines()
            if x.startswith(sp["point"] + " ")]
    log(f"cella replica points: {line}")
    check(line and when in line[0], f"cella replica points shows {when} for {sp['point']}: "
          f"{line}")

if __name__ == "__main__":
    main(test)
