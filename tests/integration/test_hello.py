#!/usr/bin/env python3
"""it-hello: the minimal guest boots, prints its line and exits 0 (status 1)."""
import harness


def test(args):
    with harness.run_guest(args["guests"]["hello"], "it=hello", cella_vm=args["cella_vm"]) as g:
        g.wait_for(r"^Hello from cella test guest$", timeout=60)
        g.expect_pass("hello")


harness.main(test)
