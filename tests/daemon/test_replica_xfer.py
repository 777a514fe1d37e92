"""test_replica_xfer.py: resumable change-set transfers (docs/replica.md,
"Resuming a cut transfer"), between two cellads in network namespaces (the
harness of test_replica.py). The VM runs blkverify mode=seq on the first
64 MiB of its disk; the 12 MiB after hold random bytes written before it
starts (incompressible: the first, full set is about 12 MiB on the wire,
3 s at the 4 MiB/s cap).

- Bandwidth cap and resume: `cella replica enable --max-bandwidth 4M`; the
  target's partial upload grows at no more than the cap; the link cut
  mid-transfer (ip link down: the source gives up after
  CELLA_TEST_REPLICA_STALL_S, a test knob), a round fails, the target keeps
  its partial; the link back: the next round resumes the same set (same
  point name) from the bytes the target holds: the bytes sent after the cut
  are the remainder, not the whole set (status bytes_sent, bytes_skipped,
  resumes; the event replica-transfer-resumed). The point holds the random
  bytes as written and one instant of the guest's history.
- A partial nobody will continue goes: enabling again drops it (then
  uncompressed sets: the spool is the export's file itself).
- A corrupted and truncated partial: a second full set (replica deleted and
  enabled again) cut mid-way, the target's partial truncated and a byte in
  it flipped; the resumed set is refused whole, the source sends it again
  from byte 0 (sets_refused), and the point is right.
- A corrupted spool: an incremental set that could not be delivered (link
  down), a byte of the source's spool flipped; the target refuses it, the
  source makes the set again (a new point) and replication goes on.
- Bad offsets, ids and sizes from a peer are refused, naming the field.

Needs root (network namespaces), ip, openssl and qemu-img; skips loudly
otherwise."""

import json
import os
import subprocess
import sys
import time

from cellad import TestFailure, check, log, main
import replutil
from test_replica import SEQ, flushed, net_cut, replica, status, store_points, until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import test_export  # noqa: E402

MIB = 1 << 20
SIZE = 128 * MIB
RAND_OFF, RAND_LEN = 64 * MIB, 12 * MIB
CAP = 4 * MIB
STALL_S = 3


def test(args):
    os.environ["CELLA_TEST_REPLICA_STALL_S"] = str(STALL_S)
    replutil.two_hosts(args, "rx", scenario)


def part(b, name="rv", disk="data"):
    """The target's partial upload: (bytes, total), or None."""
    d = os.path.join(b.state, "replicas", name)
    try:
        with open(os.path.join(d, f"disk-{disk}.part.json")) as f:
            total = json.load(f)["total"]
        return os.path.getsize(os.path.join(d, f"disk-{disk}.part")), total
    except (OSError, ValueError, KeyError):
        return None


def point_ok(b, work, rand):
    """The latest point: qemu-img check on every layer, the random bytes as
    written, the guest's slots one instant of its history."""
    pts = store_points(b)
    for p in pts:
        subprocess.run(["qemu-img", "check", "-q", p["path"]], check=True)
    flat = os.path.join(work, "point.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", pts[-1]["path"], flat], check=True)
    with open(flat, "rb") as f:
        f.seek(RAND_OFF)
        check(f.read(RAND_LEN) == rand, f"point {pts[-1]['name']}: the random region as written")
    test_export.point_in_time(flat)
    os.unlink(flat)
    return pts


def cut_mid_transfer(a, b, net, frac):
    """Wait for the target's partial to pass frac of the set, cut the link,
    wait for the round to fail: (partial bytes, total, a's status)."""
    before = status(a)
    got = until(f"the upload past {frac:.0%}", lambda: (lambda p: p if p and
                p[0] >= frac * p[1] else None)(part(b)), 120)
    net_cut(net, True)
    st = until("the round failing", lambda: (lambda s: s if s["failures"] > before["failures"]
               else None)(status(a)), 60)
    have, total = part(b)
    log(f"cut at {got[0]} of {got[1]} bytes; the target holds {have}; a: {st['error']}")
    check(have >= got[0] and have < total, f"the target keeps its partial ({have} of {total})")
    return have, total, st


def scenario(a, b, net, work):
    raw = os.path.join(work, "rv.raw")
    img = os.path.join(work, "rv.qcow2")
    rand = os.urandom(RAND_LEN)
    with open(raw, "wb") as f:
        f.truncate(SIZE)
        f.seek(RAND_OFF)
        f.write(rand)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", raw, img], check=True)
    os.unlink(raw)
    a.define("rv", "blkverify", SEQ, memory_mib=128,
             disks=[{"path": img, "id": "data", "cbt": True}])
    a.action("rv", "start")
    until("the guest flushes", lambda: flushed(a) >= 3)
    uuid = a.vm("rv")["uuid"]
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "4",
          "--max-bandwidth", "4M")
    check(status(a)["max_bandwidth"] == CAP, f"--max-bandwidth 4M: {status(a)['max_bandwidth']}")

    # The cap: the target's partial grows at no more than 4 MiB/s.
    p0 = until("the first set arriving", lambda: (lambda p: p if p and p[0] > 0 else None)
               (part(b)), 120)
    t0 = time.monotonic()
    until("two seconds of upload", lambda: time.monotonic() - t0 >= 2, 10)
    p1 = part(b)
    rate = (p1[0] - p0[0]) / (time.monotonic() - t0)
    log(f"upload rate {rate / MIB:.2f} MiB/s under a {CAP / MIB} MiB/s cap")
    check(rate <= CAP * 1.3, f"the upload keeps to --max-bandwidth: {rate / MIB:.2f} MiB/s")

    # The link cut mid-transfer; back: the rest, not the whole set.
    have, total, cut = cut_mid_transfer(a, b, net, 0.35)
    net_cut(net, False)
    done = until("the first point after the cut", lambda: (lambda s: s if s["state"] ==
                 "normal" and s["last_point"] else None)(status(a)), 120)
    after = done["bytes_sent"] - cut["bytes_sent"]
    log(f"set of {total} bytes: {cut['bytes_sent']} sent before the cut, {after} after "
        f"(resumed from {have}); status {done}")
    check(done["last_point"] == "r000001", f"the cut set kept its point name: {done['last_point']}")
    check(done["resumes"] >= 1 and done["bytes_skipped"] >= have,
          f"resumed from the target's bytes: resumes {done['resumes']}, skipped "
          f"{done['bytes_skipped']}")
    check(after <= total - have + 256 * 1024 and after < 0.8 * total,
          f"after the cut only the remainder was sent: {after} bytes for {total - have} left")
    evs = [e for e in a.events(vm="rv") if e["event"] == "replica-transfer-resumed"]
    check(evs, "a: a replica-transfer-resumed event")
    log(f"event: {evs[0].get('detail')}")
    check(part(b) is None, "the partial is gone once the point is made")
    point_ok(b, work, rand)

    # Refusals: offsets, ids, sizes from a peer.
    rs = "/v1/replicas/rv/disks/data"
    ost = {"Content-Type": "application/octet-stream"}
    r = b.request("PUT", rs + "?id=fake-1&total=100&offset=0", raw=b"x" * 10, headers=ost)
    check(r.status == 400 and r.json["error"]["field"] == "offset",
          f"a request ending short keeps its bytes: {r}")
    up = b.get(rs).json["upload"]
    check(up == {"id": "fake-1", "total": 100, "bytes": 10}, f"GET tells how far: {up}")
    r = b.request("PUT", rs + "?id=fake-1&total=100&offset=20", raw=b"x", headers=ost)
    check(r.status == 400 and r.json["error"]["field"] == "offset" and
          "resume from 10" in r.json["error"]["message"], f"an offset past the partial: {r}")
    r = b.request("PUT", rs + "?id=other&total=100&offset=10", raw=b"x", headers=ost)
    check(r.status == 400 and r.json["error"]["field"] == "offset", f"another set's id: {r}")
    r = b.request("PUT", rs + f"?id=fake-1&total={1 << 40}&offset=0", raw=b"x", headers=ost)
    check(r.status == 400 and r.json["error"]["field"] == "total", f"a size past the disk's: {r}")
    r = b.request("PUT", rs + "?id=bad/id&total=100&offset=0", raw=b"x", headers=ost)
    check(r.status == 400, f"a bad id: {r}")
    r = b.request("PUT", rs + "?id=fake-1&total=100&offset=100", raw=b"x", headers=ost)
    check(r.status == 400 and r.json["error"]["field"] == "offset", f"offset at the end: {r}")
    # Stale: enabling again (the source starts anew) drops the partial.
    a.cli("replica", "disable", "rv")
    r = b.request("PUT", rs + "?id=fake-2&total=100&offset=0", raw=b"x" * 10, headers=ost)
    check((b.get(rs).json["upload"] or {}).get("id") == "fake-2", "a stale partial on b")
    # (uncompressed: the spool is the export's own file, named, not an unnamed one)
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "4",
          "--compression", "none")
    check((b.get(rs).json["upload"] or {}).get("id") != "fake-2",
          "enabling again dropped the stale partial")
    until("a point after enabling again", lambda: status(a)["rounds"] >= 1 and
          status(a)["state"] == "normal", 60)
    check(status(a)["compression"] == "none", "sets sent uncompressed")

    # A corrupted and truncated partial: a second full set.
    a.cli("replica", "disable", "rv")
    b.cli("replica", "delete", "rv")
    check(not [f for f in os.listdir(os.path.join(a.state, "vms", uuid)) if ".xfer" in f],
          "disable removed the source's spools")
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "4",
          "--max-bandwidth", "4M")
    have, total, cut = cut_mid_transfer(a, b, net, 0.4)
    path = os.path.join(b.state, "replicas", "rv", "disk-data.part")
    with open(path, "r+b") as f:
        f.truncate(have * 3 // 4)
        f.seek(have // 4)
        c = f.read(1)
        f.seek(have // 4)
        f.write(bytes([c[0] ^ 0x5a]))
    log(f"the target's partial truncated to {have * 3 // 4} and byte {have // 4} flipped")
    net_cut(net, False)
    done = until("a point after the refusal", lambda: (lambda s: s if s["state"] ==
                 "normal" and s["last_point"] else None)(status(a)), 120)
    log(f"status {done}")
    check(done["resumes"] >= 1 and done["sets_refused"] >= 1,
          f"resumed, refused whole, sent again: resumes {done['resumes']}, refused "
          f"{done['sets_refused']}")
    check(done["last_point"] == "r000001", f"the same set made the point: {done['last_point']}")
    point_ok(b, work, rand)

    # A corrupted spool: the set is refused and made again.
    before = status(a)
    net_cut(net, True)
    spool = os.path.join(a.state, "vms", uuid, "replica-data.xfer")
    until("a set spooled and not delivered", lambda: os.path.exists(spool) and
          status(a)["failures"] > before["failures"], 90)
    with open(os.path.join(a.state, "vms", uuid, "replica-data.xfer.json")) as f:
        bad_point = json.load(f)["point"]
    with open(spool, "r+b") as f:
        n = os.path.getsize(spool)
        f.seek(n // 2)
        c = f.read(1)
        f.seek(n // 2)
        f.write(bytes([c[0] ^ 0xff]))
    log(f"a's spool of point {bad_point} ({n} bytes): byte {n // 2} flipped")
    refused = status(a)["sets_refused"]
    net_cut(net, False)
    good = until("a point after the refused set", lambda: (lambda s: s if s["state"] ==
                 "normal" and s["last_point"] != before["last_point"] else None)(status(a)), 120)
    log(f"status {good}")
    check(good["sets_refused"] > refused, f"the target refused the corrupt set: {good}")
    check(good["last_point"] != bad_point, f"the set was made again under a new point "
          f"({good['last_point']}, the refused one {bad_point})")
    check(bad_point not in replica(b)["points"], "the refused set made no point")
    point_ok(b, work, rand)


if __name__ == "__main__":
    main(test)
