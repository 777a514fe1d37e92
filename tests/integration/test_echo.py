#!/usr/bin/env python3
"""it-echo: serial input reaches the guest and its answers come back."""
import harness


def test(args):
    with harness.run_guest(args["guests"]["echo"], cella_vm=args["cella_vm"]) as g:
        g.wait_for(r"^echo: ready$")
        for text in ("hello cella", "a second, longer line: 0123456789abcdef" * 2):
            g.send(text + "\n")
            g.wait_for("^echo: " + harness.re.escape(text) + "$", timeout=30)
        g.send("carriage return\r")
        g.wait_for(r"^echo: carriage return$", timeout=30)
        g.send("quit\n")
        g.wait_for(r"^echo: 3 lines$", timeout=30)
        g.expect_pass("echo")


harness.main(test)
