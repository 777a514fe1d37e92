#!/usr/bin/env python3
"""it-smp: all vCPUs of the MP table start (INIT-SIPI-SIPI) and check in."""
import harness

CPUS = 4


def test(args):
    with harness.run_guest(args["guests"]["smp"], f"cpus={CPUS}", cella_vm=args["cella_vm"],
                           cpus=CPUS) as g:
        g.wait_for(rf"^smp: {CPUS}/{CPUS} cpus checked in")
        g.expect_pass("smp")


harness.main(test)
