#!/usr/bin/env python3
"""it-stihlt: "sti; hlt" is atomic under this VMM and host (guest/tests/
stihlt.c): 2000 one-shot LAPIC-timer interrupts made pending in ring 3,
each ending the ring-0 wait that follows, none taken between the sti and
the hlt (a host that took one there would leave a one-shot wait halted for
good; the guest library skips such a hlt and counts it)."""
import re

import harness


def test(args):
    with harness.run_guest(args["guests"]["stihlt"], "n=2000", cella_vm=args["cella_vm"],
                           mem=64) as g:
        m = g.wait_for(r"^stihlt: n=(\d+) pending=(\d+) before_hlt=(\d+)", timeout=120)
        harness.log(m.group(0))
        if int(m.group(2)) != 2000 or int(m.group(3)) != 0:
            raise harness.TestFailure(f"stihlt: {m.group(0)}")
        g.expect_pass("stihlt")


harness.main(test)
