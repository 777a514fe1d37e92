#!/usr/bin/env python3
"""it-blk: virtio-blk data integrity across a VM restart.

Boot 1 writes a seeded pattern (mode=write), boot 2 reads it back
(mode=verify); the host then checks the image file itself: the region's
crc32 equals what both boots printed and every sector has the layout that
guest/tests/blk.c documents. A third boot attaches the image read-only."""
import os
import struct
import tempfile
import zlib

import harness

SEED = 20240613
MIB = 4
SECTOR = 512


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & (2**64 - 1)
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return state, z ^ (z >> 31)


def expected_sector(s, seed):
    st = seed ^ ((s * 0xD1B54A32D192ED03) & (2**64 - 1))
    words = [s, seed]
    for _ in range(61):
        st, v = splitmix64(st)
        words.append(v)
    body = struct.pack("<63Q", *words)
    return body + struct.pack("<II", zlib.crc32(body), 0x6C6C6563)


def check_image(path, crc):
    with open(path, "rb") as f:
        data = f.read((MIB << 20) + 256 * SECTOR)
    region = data[:MIB << 20]
    if zlib.crc32(region) != crc:
        raise harness.TestFailure(f"image crc32 0x{zlib.crc32(region):08x}, guest said 0x{crc:08x}")
    bad = 0
    for s in range(len(region) // SECTOR):
        sec = region[s * SECTOR:(s + 1) * SECTOR]
        w0, w1 = struct.unpack_from("<QQ", sec)
        c, magic = struct.unpack_from("<II", sec, 504)
        if w0 != s or w1 != SEED or magic != 0x6C6C6563 or c != zlib.crc32(sec[:504]):
            bad += 1
    # Full regeneration for a sample (the whole region is slow in Python).
    for s in list(range(0, 64)) + list(range(len(region) // SECTOR - 64, len(region) // SECTOR)):
        if region[s * SECTOR:(s + 1) * SECTOR] != expected_sector(s, SEED):
            bad += 1
    if bad:
        raise harness.TestFailure(f"{bad} sectors of the image do not hold the pattern")
    harness.log(f"image: {MIB} MiB pattern and crc32 0x{crc:08x} check out")
    return data[MIB << 20:]


def test(args):
    blk = args["guests"]["blk"]
    with tempfile.TemporaryDirectory(prefix="cella-it-") as tmp:
        disk = os.path.join(tmp, "blk.img")
        with open(disk, "wb") as f:
            f.truncate(16 << 20)

        with harness.run_guest(blk, f"mode=write seed={SEED} mib={MIB}", name="blk-write",
                               cella_vm=args["cella_vm"], disks=[disk]) as g:
            crc_w = int(g.wait_for(rf"^blk: write mib={MIB} seed={SEED} crc32=(0x[0-9a-f]+)$")
                        .group(1), 16)
            g.expect_pass("blk")
            zeroed = any("WRITE_ZEROES" in l and l.startswith("ok:") for l in g.lines)

        with harness.run_guest(blk, f"mode=verify seed={SEED} mib={MIB}", name="blk-verify",
                               cella_vm=args["cella_vm"], disks=[disk]) as g:
            crc_v = int(g.wait_for(rf"^blk: verify mib={MIB} seed={SEED} crc32=(0x[0-9a-f]+)$")
                        .group(1), 16)
            g.expect_pass("blk")
        if crc_v != crc_w:
            raise harness.TestFailure(f"verify crc32 0x{crc_v:08x} != write crc32 0x{crc_w:08x}")

        tail = check_image(disk, crc_w)
        if zeroed and any(tail[:128 * SECTOR]):
            raise harness.TestFailure("the WRITE_ZEROES area of the image is not zero")

        with harness.run_guest(blk, "mode=readonly", name="blk-ro", cella_vm=args["cella_vm"],
                               disks=[(disk, True)]) as g:
            g.expect_pass("blk")
        if check_image(disk, crc_w) is None:
            raise harness.TestFailure("unreachable")


harness.main(test)
