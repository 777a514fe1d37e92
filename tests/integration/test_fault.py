#!/usr/bin/env python3
"""it-fault: a guest exception is reported on the console with its vector
and the VM ends with the failure status (3), never hanging."""
import harness

CASES = {"pf": (14, "#PF"), "gp": (13, "#GP"), "ud": (6, "#UD"), "de": (0, "#DE")}


def test(args):
    for kind, (vector, name) in CASES.items():
        with harness.run_guest(args["guests"]["fault"], f"kind={kind}", name=f"fault-{kind}",
                               cella_vm=args["cella_vm"]) as g:
            m = g.wait_for(rf"^trap: vector (\d+) \((\S+)\) error 0x[0-9a-f]+ rip (0x[0-9a-f]+) cs 0x(\w+)")
            if int(m.group(1)) != vector or m.group(2) != name:
                raise harness.TestFailure(f"kind={kind}: got vector {m.group(1)} {m.group(2)}, "
                                          f"want {vector} {name}")
            if int(m.group(4), 16) & 3 != 3:
                raise harness.TestFailure(f"kind={kind}: fault not taken from ring 3")
            g.wait_for(rf"^FAIL fault: unexpected exception {name} at rip {m.group(3)}$")
            status = g.wait_exit()
            if status != harness.debug_exit_status(1):
                raise harness.TestFailure(f"kind={kind}: exit status {status}, want 3")


harness.main(test)
