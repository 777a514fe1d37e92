#!/usr/bin/env python3
"""it-blkbench: smoke test of the block benchmark on a small scratch disk."""
import os
import tempfile

import harness


def test(args):
    with tempfile.TemporaryDirectory(prefix="cella-it-") as tmp:
        disk = os.path.join(tmp, "bench.img")
        with open(disk, "wb") as f:
            f.truncate(16 << 20)
        with harness.run_guest(args["guests"]["blkbench"], "ops=64 mib=4",
                               cella_vm=args["cella_vm"], disks=[disk]) as g:
            for t in ("seqwrite", "seqread", "randread-qd1", "randread-qd32"):
                g.wait_for(rf"^blkbench: begin {t}$")
                g.wait_for(rf"^blkbench: end {t}$")
                g.wait_for(rf"^blkbench: {t} ops=\d+ bytes=\d+ tsc=\d+")
            g.expect_pass("blkbench")


harness.main(test)
