#!/usr/bin/env python3
"""it-vconsole: text the guest writes through virtio-console's transmitq
arrives in the file given with --device virtio-console,path=FILE (checked
from the outside, byte for byte); the device survives save and --restore
(the restored VM appends, and nothing the guest sent before the save is
written twice); and a configuration with more devices than interrupt lines
exits 2 naming the resource before any VM is created."""
import os
import subprocess
import tempfile

import harness

EXIT_SAVED = 14


def check(cond, msg):
    if not cond:
        raise harness.TestFailure(msg)
    harness.log(f"ok: {msg}")


def save_restore(vm, guest, tmp):
    """Save while the guest waits between its writes, restore, let it go on."""
    out = os.path.join(tmp, "saved.out")
    ctl = os.path.join(tmp, "vm.ctl")
    state = os.path.join(tmp, "vm.state")
    dev = ["--device", f"virtio-console,path={out}"]
    with harness.run_guest(guest, "lines=2 wait=1", cella_vm=vm,
                           extra=dev + ["--control", ctl]) as g:
        g.wait_for(r"^vconsole: waiting$", 60)
        fd = os.open(state, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            rep = harness.control(ctl, {"cmd": "save", "fd": 0}, fds=[fd])
        finally:
            os.close(fd)
        check(rep.get("ok") is True, f"save: {rep}")
        check(g.wait_exit(60) == EXIT_SAVED, "the worker exits 14 after the save")
    cmd = [vm, "--kernel", guest, "--cmdline", "lines=2 wait=1", "--restore", state] + dev
    with harness.Guest(cmd, "restored") as g:
        g.send("go\n")
        g.expect_pass("vconsole")
    with open(out) as f:
        text = f.read()
    want = "cella virtio-console: hello from the guest\nline 1 of 2\nline 2 of 2\n"
    check(text == want, f"after restore the device went on where it was ({text!r})")


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

        save_restore(vm, guest, tmp)

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
