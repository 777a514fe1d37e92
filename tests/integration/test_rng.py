#!/usr/bin/env python3
"""it-rng: virtio-rng returns non-zero, non-repeating bytes."""
import harness


def test(args):
    with harness.run_guest(args["guests"]["rng"], "bytes=256", cella_vm=args["cella_vm"],
                           rng=True) as g:
        g.expect_pass("rng")


harness.main(test)
