#!/usr/bin/env python3
"""it-memwriter: a few rounds of write-then-verify over guest RAM."""
import harness

ROUNDS = 4


def test(args):
    with harness.run_guest(args["guests"]["memwriter"], f"mib=32 rounds={ROUNDS}",
                           cella_vm=args["cella_vm"], mem=128) as g:
        g.wait_for(r"^memwriter: ready mib=32")
        sums = set()
        for r in range(1, ROUNDS + 1):
            sums.add(g.wait_for(rf"^memwriter: round {r} checksum (0x[0-9a-f]+)$").group(1))
        if len(sums) != ROUNDS:
            raise harness.TestFailure("rounds printed repeated checksums")
        g.expect_pass("memwriter")


harness.main(test)
