#!/usr/bin/env python3
"""it-blkwriter: guest/tests/blkwriter.c, the paced random writer of the
replication bench (bench/replica.py). For 4 KiB and 64 KiB writes, paced
and unpaced: the guest's own read-back finds every slot holding exactly its
last write (verify=1); the host reads the image and finds only whole stamps
of the right seed and size, the newest being the last write the guest
reported; a second boot (mode=check) agrees. A paced run's progress lines
("t=T done=D") never go backwards. Not a timing test: the achieved rate is
logged, never asserted (the bench measures it)."""
import os
import re
import subprocess
import tempfile

import harness
from wrtstamp import scan_image

SPAN_MIB = 8


def one(args, tmp, bs, kbs, seed):
    img = os.path.join(tmp, f"w{bs}-{kbs}.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "16M"], check=True)
    p = f"bs={bs} span_mib={SPAN_MIB} seed={seed}"
    g = harness.run_guest(args["guests"]["blkwriter"],
                          f"mode=write {p} kbs={kbs} qd=16 seconds=2 report_ms=200 verify=1",
                          name=f"w{bs}", cella_vm=args["cella_vm"], disks=[img])
    with g:
        m = g.wait_for(r"^blkwriter: wrote n=(\d+) bytes=(\d+) us=(\d+) kbs=(\d+)", 60)
        n = int(m.group(1))
        g.expect_pass("blkwriter", timeout=60)
        out = "\n".join(g.lines)
    harness.log(f"bs={bs} kbs={kbs}: {n} writes, {m.group(4)} kB/s achieved")
    dones = [int(d) for d in re.findall(r"blkwriter: t=\d+ done=(\d+)", out)]
    if dones != sorted(dones) or not dones or dones[-1] != n:
        raise harness.TestFailure(f"progress lines go backwards or stop short: {dones}")
    stamped, bad, newest, _ = scan_image(img, os.path.join(tmp, "flat.raw"), seed, bs,
                                         SPAN_MIB << 20)
    if bad or newest != n or not stamped:
        raise harness.TestFailure(f"bs={bs}: host scan found {stamped} stamped, {bad} bad, "
                                  f"newest {newest} (the guest wrote {n})")
    harness.log(f"ok: bs={bs} kbs={kbs}: host scan: {stamped} units stamped, none bad, "
                f"newest write {newest}")
    with harness.run_guest(args["guests"]["blkwriter"], f"mode=check {p}", name=f"c{bs}",
                           cella_vm=args["cella_vm"], disks=[img]) as g:
        c = g.wait_for(r"^blkwriter: check units=\d+ stamped=(\d+) newest=(\d+)", 60)
        g.expect_pass("blkwriter", timeout=60)
    if (int(c.group(1)), int(c.group(2))) != (stamped, n):
        raise harness.TestFailure(f"mode=check saw {c.group(0)}, the host {stamped} / {n}")
    harness.log(f"ok: bs={bs}: mode=check agrees ({stamped} units, newest {n})")


def test(args):
    with tempfile.TemporaryDirectory(prefix="cella-it-blkwriter-") as tmp:
        one(args, tmp, 4096, 2000, 11)
        one(args, tmp, 65536, 4000, 12)
        one(args, tmp, 4096, 0, 13)


if __name__ == "__main__":
    harness.main(test)
