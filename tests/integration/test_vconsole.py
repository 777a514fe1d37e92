#!/usr/bin/env python3
"""it-vconsole: text the guest writes through virtio-console's transmitq
arrives in the file given with --device virtio-console,path=FILE (checked
from the outside, byte for byte); and a configuration with more devices than
interrupt lines exits 2 naming the resource before any VM is created."""
import os
import subprocess
import tempfile

import harness


def check(cond, msg):
    if not cond:
        raise harness.TestFailure(msg)
    harness.log(f"ok: {msg}")


def test(args):
    if harness.vmm_kind() != "cella":
        harness.skip("the --device flag is cella-vm's")
    vm, guest = args["cella_vm"], args["guests"]["vconsole"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "console.out")
        with harness.run_guest(guest, "lines=4", cella_vm=vm,
                               extra=["--device", f"virtio-console,path={out}"]) as g:
            g.expect_pass("vconsole")
        with open(out) as f:
            text = f.read()
        want = "cella virtio-console: hello from the guest\n" + "".join(
            f"line {i} of 4\n" for i in range(1, 5))
        check(text == want, f"the host received the guest's text ({text!r})")

        # 16 disks + 8 NICs + rng + a console: 26 interrupt lines, 19 exist.
        cmd = [vm, "--kernel", guest, "--rng", "--device", f"virtio-console,path={out}"]
        for i in range(16):
            cmd += ["--disk", os.path.join(tmp, f"d{i}.img")]
        for i in range(8):
            cmd += ["--net", f"tap=cella-nx{i}"]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        check(p.returncode == 2, f"too many devices: exit status 2 (got {p.returncode})")
        check("too many devices: 26 need an interrupt line, 19 are available (GSI 5-23)"
              in p.stderr, f"the error names what ran out ({p.stderr.strip()!r})")


harness.main(test)
