#!/usr/bin/env python3
"""it-irq: LAPIC timer, UART (IOAPIC pin 4) and virtio-rng interrupts arrive."""
import harness


def test(args):
    with harness.run_guest(args["guests"]["irq"], cella_vm=args["cella_vm"], rng=True) as g:
        g.wait_for(r"^ok: virtio-rng used-buffer interrupt 2 ")
        g.expect_pass("irq")


harness.main(test)
