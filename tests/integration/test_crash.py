#!/usr/bin/env python3
"""it-crash: crash consistency of virtio-blk on qcow2 (alone, and over a
backing file): guest/tests/blkverify.c (mode=seq) writes numbered 4 KiB
blocks, several in flight, and prints "flushed R" after each completed
FLUSH; the test kills the worker with SIGKILL right after a "flushed" line
chosen at random (deterministic seed), many times in a row on the same image.
After each kill: `qemu-img check` must find no corruption (leaks allowed),
and every block written before the last "flushed" line seen must be there
(or a newer write of the same slot); slots the round did not touch keep
their content. CELLA_CRASH_ROUNDS overrides the number of kills (30).
Also: a run that crosses the library's bound on unflushed qcow2 metadata
(-EAGAIN from disk_map) must still write everything."""
import os
import random
import struct
import subprocess
import tempfile
import zlib

import harness

SLOTS = 2048
SLOT = 4096
MAGIC = 0x5145534C4C4543
ROUNDS = int(os.environ.get("CELLA_CRASH_ROUNDS", "30"))


def slot_of(r):
    return (r * 2654435761) % SLOTS


def read_slots(img, tmp):
    out = os.path.join(tmp, "flat.raw")
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", img, out], check=True)
    with open(out, "rb") as f:
        data = f.read(SLOTS * SLOT)
    os.unlink(out)
    slots = []
    for s in range(SLOTS):
        b = data[s * SLOT:(s + 1) * SLOT]
        if not any(b):
            slots.append(None)
            continue
        magic, r, slot, seed = struct.unpack_from("<QQQQ", b)
        (crc,) = struct.unpack_from("<I", b, SLOT - 4)
        if magic != MAGIC or slot != s or crc != zlib.crc32(b[:SLOT - 4]):
            raise harness.TestFailure(f"slot {s} is torn or foreign "
                                      f"(magic 0x{magic:x} slot {slot} r {r})")
        slots.append((seed, r))
    return slots


def check_image(img):
    r = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
    # 0: clean, 3: leaked clusters only; 2: corruption, 1: check failed
    if r.returncode not in (0, 3):
        raise harness.TestFailure(f"qemu-img check {img}: status {r.returncode}\n"
                                  f"{r.stdout}{r.stderr}")
    return r.returncode


def crash_rounds(args, img, tmp, rng, label):
    before = read_slots(img, tmp)
    leaks = 0
    for i in range(ROUNDS):
        seed = 1000 + i
        target = rng.randint(1, 25)
        g = harness.run_guest(args["guests"]["blkverify"],
                              f"mode=seq seed={seed} slots={SLOTS} batch=16 qd=8",
                              name=f"{label}{i}", cella_vm=args["cella_vm"], disks=[img])
        with g:
            last = 0
            for _ in range(target):
                last = int(g.wait_for(r"^flushed (\d+)$", 60).group(1))
            g.proc.kill()  # SIGKILL, right after the line
            g.proc.wait()
        leaks += check_image(img) == 3
        after = read_slots(img, tmp)
        # The last write of each slot up to `last` must be there, or newer.
        flushed = {}
        for r in range(1, last + 1):
            flushed[slot_of(r)] = r
        for s in range(SLOTS):
            got = after[s]
            if s in flushed:
                if not got or got[0] != seed or got[1] < flushed[s]:
                    raise harness.TestFailure(
                        f"{label} round {i}: slot {s} holds {got}, want seed {seed} "
                        f"seq >= {flushed[s]} (flushed up to {last})")
            elif got != before[s] and (not got or got[0] != seed or got[1] <= last):
                raise harness.TestFailure(
                    f"{label} round {i}: untouched slot {s} changed from {before[s]} to {got}")
        before = after
        harness.log(f"{label} round {i}: killed after 'flushed {last}' "
                    f"(line {target}); image consistent, flushed data present")
    harness.log(f"{label}: {ROUNDS} kills, {leaks} left leaked clusters (allowed)")


def metadata_bound(args, tmp):
    """Writes to 1200 clusters 512 MiB apart with no flush in between: the
    dirty L2 tables exceed the library's bound, disk_map answers -EAGAIN and
    the device drains, flushes metadata and carries on."""
    img = os.path.join(tmp, "wide.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "700G"], check=True)
    p = "seed=3 slots=1200 stride=512M"
    g = harness.run_guest(args["guests"]["blkverify"],
                          f"mode=seq {p} batch=1200 qd=32 rounds=1200", name="wide",
                          cella_vm=args["cella_vm"], disks=[img],
                          wrapper=("env", "CELLA_DEBUG=1", "sh", "-c", 'exec "$0" "$@" 2>&1'))
    with g:
        g.wait_for(r"unflushed metadata at its bound", 120)
        g.expect_pass("blkverify", timeout=120)
    check_image(img)
    with harness.run_guest(args["guests"]["blkverify"], f"mode=seqcheck {p} expect=1200",
                           name="wide-check", cella_vm=args["cella_vm"], disks=[img]) as g:
        g.expect_pass("blkverify")
    os.unlink(img)


def test(args):
    rng = random.Random(20240607)
    with tempfile.TemporaryDirectory(prefix="cella-it-crash-") as tmp:
        img = os.path.join(tmp, "disk.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "32M"], check=True)
        metadata_bound(args, tmp)
        crash_rounds(args, img, tmp, rng, "qcow2-")

        # A backing file holding a finished run, an overlay that takes the kills.
        base = os.path.join(tmp, "base.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "32M"], check=True)
        with harness.run_guest(args["guests"]["blkverify"],
                               f"mode=seq seed=7 slots={SLOTS} batch=16 qd=8 rounds=3072",
                               name="base", cella_vm=args["cella_vm"], disks=[base]) as g:
            g.expect_pass("blkverify", timeout=120)
        over = os.path.join(tmp, "overlay.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2",
                        over], check=True)
        crash_rounds(args, over, tmp, rng, "overlay-")
        check_image(base)


harness.main(test)
