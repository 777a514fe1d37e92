#!/usr/bin/env python3
"""it-iobench: smoke test of the exit-cost benchmark with tiny counts."""
import harness


def test(args):
    with harness.run_guest(args["guests"]["iobench"], "ops=200", cella_vm=args["cella_vm"],
                           rng=True) as g:
        for t in ("pio-out", "pio-in", "mmio-read", "ring0-call"):
            g.wait_for(rf"^iobench: begin {t}$")
            g.wait_for(rf"^iobench: end {t}$")
            g.wait_for(rf"^iobench: {t} ops=\d+ tsc=\d+")
        g.expect_pass("iobench")


harness.main(test)
