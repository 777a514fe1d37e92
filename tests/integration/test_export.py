#!/usr/bin/env python3
"""it-export: live exports (disk-export, docs/storage.md "Live exports") from
a VM whose guest writes all the time (blkverify mode=seq rounds=0) on a
disk with cbt=on, qcow2 then raw. A full export and incrementals, taken while it
runs, are applied one by one with `cella disk restore` onto a zeroed raw
image; after each, a second VM checks that image with blkverify
mode=seqcheck (every slot holds a whole, valid block: crash-consistent),
and the test reads the slots itself to check that they are one instant of
the guest's history (no slot older than the newest round present allows).
On the way: `save` is refused while an export runs, and an export whose
reader goes away is cancelled without losing anything for the next one.
Last, the VM is paused, its disks flushed, a final export applied: the
restored image must equal the disk byte for byte.

Along the way the same change sets go into a replica store (`cella disk
replica`, disk/replica.h): each point equals the image restored to its
instant (qemu-img compare), a change set that does not follow the latest
point is refused, a later export since that point catches the replica up to
the disk itself, and retention merges keep the remaining points' content
(qemu-img check on every layer)."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
import zlib

import blkutil
import harness

SIZE = 64 << 20
SEQ = "seed=7 slots=2048 stride=32768"
SLOTS, STRIDE, SEED, BATCH = 2048, 32768, 7, 16
SEQ_MAGIC = 0x5145534c4c4543


def point_in_time(img):
    """The slots of a restored image hold one instant of the guest's
    history: with M the newest round present, every round of the batches
    before M's had completed before M was issued (the guest flushes between
    batches), so every slot holds at least the last of those rounds that
    wrote it. An export mixing instants (a block sent as it was after the
    cut, another from before it) breaks this."""
    held, newest = [0] * SLOTS, 0
    with open(img, "rb") as f:
        data = f.read()
    for s in range(SLOTS):
        b = data[s * STRIDE:s * STRIDE + 4096]
        magic, rnd, slot, seed = struct.unpack_from("<4Q", b)
        if not magic and not rnd:
            continue
        crc, = struct.unpack_from("<I", b, 4092)
        if (magic, slot, seed) != (SEQ_MAGIC, s, SEED) or crc != zlib.crc32(b[:4092]):
            raise harness.TestFailure(f"{img}: slot {s} is torn or foreign")
        held[s], newest = rnd, max(newest, rnd)
    base = (newest - 1) // BATCH * BATCH if newest else 0
    last = [0] * SLOTS
    for r in range(1, base + 1):
        last[(r * 2654435761) % SLOTS] = r
    stale = [s for s in range(SLOTS) if held[s] < last[s]]
    if stale:
        s = stale[0]
        raise harness.TestFailure(f"{img}: not one instant: newest round {newest}, but slot "
                                  f"{s} holds round {held[s]} (round {last[s]} was done "
                                  f"before it); {len(stale)} such slots")
    harness.log(f"point in time: newest round {newest}, every slot at least as new as "
                f"round {base} requires")


def cella_disk(args, *argv, ok=True):
    cli = os.path.join(os.path.dirname(args["cella_vm"]), "cli", "cella")
    r = subprocess.run([cli, "disk", *argv], capture_output=True, text=True)
    harness.log(f"cella disk {' '.join(argv)}: {r.stdout.strip()} {r.stderr.strip()}")
    if ok and r.returncode:
        raise harness.TestFailure(f"cella disk {argv[0]} failed with status {r.returncode}")
    return r


def replica_points(args, rep):
    return json.loads(cella_disk(args, "replica", "points", "--json", rep).stdout)


def same_as(args, store, point, raw):
    """Point `point` of replica store `store` holds what raw image `raw` holds."""
    path = [p["path"] for p in replica_points(args, store) if p["name"] == point]
    if not path:
        raise harness.TestFailure(f"replica: no point {point}")
    r = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", path[0], raw],
                       capture_output=True, text=True)
    if r.returncode:
        raise harness.TestFailure(f"replica point {point} differs from {raw}: {r.stdout}")
    harness.log(f"replica point {point} equals {os.path.basename(raw)} (qemu-img compare)")


def export_status(ctl):
    return blkutil.control(ctl, {"cmd": "status"})["disks"][0].get("export")


def start_export(ctl, **req):
    """disk-export to a pipe: returns (reply, read end)."""
    r, w = os.pipe()
    try:
        rep = harness.control(ctl, {"cmd": "disk-export", "disk": "data", "fd": 0, **req},
                              fds=[w])
    finally:
        os.close(w)
    if not rep.get("ok"):
        os.close(r)
        raise harness.TestFailure(f"disk-export {req}: {rep}")
    return rep["export"], r


def export(ctl, out, **req):
    """A whole export into file `out`; returns the status when it ended."""
    t0 = time.monotonic()
    cut, r = start_export(ctl, **req)
    with open(out, "wb") as f:
        while True:
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            f.write(chunk)
    os.close(r)
    st = export_status(ctl)
    harness.log(f"export {req}: {cut['blocks']} blocks at the cut, {st['sent']} bytes in "
                f"{time.monotonic() - t0:.2f} s, {st['copies']} copied before a guest write, "
                f"{st['waits']} guest requests waited")
    if st["state"] != "done" or st["point"] != req["point"]:
        raise harness.TestFailure(f"export ended as {st}")
    if os.path.getsize(out) != st["stream_bytes"]:
        raise harness.TestFailure(f"stream of {os.path.getsize(out)} bytes, status says {st}")
    return st


def seqcheck(args, img, name):
    with harness.run_guest(args["guests"]["blkverify"], "mode=seqcheck " + SEQ, name=name,
                           cella_vm=args["cella_vm"], disks=[(img, True)]) as c:
        c.expect_pass("blkverify")


def flushed(g, n):
    for _ in range(n):
        g.wait_for(r"^flushed \d+$", 60)


def test(args):
    for fmt in ("qcow2", "raw"):
        harness.log(f"--- on a {fmt} disk")
        scenario(args, fmt)


def scenario(args, fmt):
    with tempfile.TemporaryDirectory(prefix="cella-it-export-") as tmp:
        img = os.path.join(tmp, "disk." + fmt)
        copy = os.path.join(tmp, "replica.raw")
        store = os.path.join(tmp, "replica-store")
        ctl = os.path.join(tmp, "ctl.sock")
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, img, str(SIZE)], check=True)
        with open(copy, "wb") as f:
            f.truncate(SIZE)
        g = harness.run_guest(args["guests"]["blkverify"], "mode=seq batch=16 qd=8 " + SEQ,
                              name="seq", cella_vm=args["cella_vm"],
                              disks=[img + ",cbt=on,id=data"], extra=["--control", ctl],
                              wrapper=blkutil.MERGE_STDERR)
        with g:
            flushed(g, 20)
            # A full export, then incrementals, all while the guest writes.
            points = ["r0", "r1", "r2"]
            for i, p in enumerate(points):
                out = os.path.join(tmp, f"{p}.inc")
                req = {"point": p} if i == 0 else {"since": points[i - 1], "point": p}
                if i == 1:  # cleared from r1 once stored (the replica's way)
                    req["deferred_commit"] = True
                st = export(ctl, out, **req)
                cella_disk(args, "restore", "-o", copy, out)
                if i == 1:
                    if not st["commit_pending"]:
                        raise harness.TestFailure(f"deferred commit: {st}")
                    rep = blkutil.control(ctl, {"cmd": "disk-export-commit", "disk": "data",
                                                "point": p})
                    if not rep.get("ok"):
                        raise harness.TestFailure(f"disk-export-commit: {rep}")
                point_in_time(copy)
                seqcheck(args, copy, f"check-{p}")
                cella_disk(args, "replica", "add", store, out)
                same_as(args, store, p, copy)
                flushed(g, 5)
            copy_r2 = os.path.join(tmp, "r2.raw")
            shutil.copyfile(copy, copy_r2)

            # An export runs: save is refused; its reader goes away: it is
            # cancelled, and the next export (since the cancelled one's
            # point) still brings everything since r2.
            cut, r = start_export(ctl, since="r2", point="r3", max_copies=4)
            rep = blkutil.control(ctl, {"cmd": "save", "path": os.path.join(tmp, "st"),
                                        "stop": False})
            if rep.get("ok") or "export" not in rep.get("error", ""):
                raise harness.TestFailure(f"save during an export: {rep}")
            os.read(r, 4096)
            os.close(r)
            flushed(g, 2)
            for _ in range(100):
                st = export_status(ctl)
                if st["state"] != "running":
                    break
                time.sleep(0.05)
            if st["state"] != "cancelled" or st["point"] != "r3":
                raise harness.TestFailure(f"export whose reader left: {st}")
            harness.log(f"reader gone: {st['state']} ({st['error']})")
            out = os.path.join(tmp, "r4.inc")
            export(ctl, out, since="r3", point="r4")
            cella_disk(args, "restore", "-o", copy, out)
            # Since the cancelled r3: not a point after r2, the replica's latest.
            r = cella_disk(args, "replica", "add", store, out, ok=False)
            if r.returncode != 1 or "latest point here is r2" not in r.stderr:
                raise harness.TestFailure(f"a change set since r3 into the replica: {r.stderr}")
            point_in_time(copy)
            seqcheck(args, copy, "check-r4")

            # Cancelled by request: nothing lost either.
            cut, r = start_export(ctl, since="r4", point="r5")
            rep = blkutil.control(ctl, {"cmd": "disk-export-cancel", "disk": "data"})
            os.close(r)
            if not rep.get("ok") or rep["export"]["state"] != "cancelled":
                raise harness.TestFailure(f"disk-export-cancel: {rep}")
            flushed(g, 3)

            # The guest stops (paused, disks flushed): the last point is
            # the disk itself.
            blkutil.control(ctl, {"cmd": "pause"})
            time.sleep(0.5)
            rep = blkutil.control(ctl, {"cmd": "flush-disks"})
            if not rep.get("ok"):
                raise harness.TestFailure(f"flush-disks: {rep}")
            out = os.path.join(tmp, "r6.inc")
            export(ctl, out, since="r5", point="r6")
            cella_disk(args, "restore", "-o", copy, out)
            # The replica catches up since its latest point, r2.
            out = os.path.join(tmp, "r7.inc")
            export(ctl, out, since="r2", point="r7")
            cella_disk(args, "replica", "add", store, out)
            blkutil.control(ctl, {"cmd": "stop"})
            g.proc.wait(30)
        point_in_time(copy)
        seqcheck(args, copy, "check-r6")
        flat = img
        if fmt != "raw":
            flat = os.path.join(tmp, "disk.raw")
            subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", img, flat],
                           check=True)
        r = subprocess.run(["cmp", flat, copy], capture_output=True, text=True)
        if r.returncode:
            raise harness.TestFailure(f"the last point differs from the disk: {r.stdout}")
        harness.log("the restored image equals the disk (cmp)")
        same_as(args, store, "r7", flat)
        same_as(args, store, "r2", copy_r2)
        cella_disk(args, "replica", "merge", "--keep", "2", store)
        names = [p["name"] for p in replica_points(args, store)]
        if names != ["r2", "r7"]:
            raise harness.TestFailure(f"replica after merge --keep 2: {names}")
        same_as(args, store, "r2", copy_r2)
        same_as(args, store, "r7", flat)
        for p in replica_points(args, store):
            subprocess.run(["qemu-img", "check", "-q", p["path"]], check=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.main(test)
