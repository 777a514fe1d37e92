#!/usr/bin/env python3
"""it-linux-cpuhp: vCPU hot-plug into the microVM Linux kernel through ACPI
(docs/guests.md, "vCPU hot-plug").

It builds (scripts/build-guest-kernel.sh, cached; ACPI_PROCESSOR and
ACPI_HOTPLUG_CPU are in its config) the microVM kernel, or takes
CELLA_GUEST_KERNEL, boots it with ACPI, 1 vCPU
and cpus_max 2, and no root disk ("rootwait": the kernel waits for one, its
workqueues running). It checks that the kernel counts the MADT's online
capable entry as a hot-pluggable CPU, waits until the GED driver has bound
(the power button, registered after it, is there), sends cpus-set 2 and
checks that the kernel adds the CPU ("CPU1 has been hot-added"). Onlining
it is user space's job (udev, or writing 1 to
/sys/devices/system/cpu/cpu1/online), which cannot run on this host.

Usage: test_linux_cpuhp.py --cella-vm PATH
Exit status: 0 pass, 1 fail, 77 skip."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

SRCDIR = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
BOOT_TIMEOUT = 900


def build_kernel():
    prebuilt = os.environ.get("CELLA_GUEST_KERNEL")
    if prebuilt:
        return prebuilt
    harness.log("kernel: scripts/build-guest-kernel.sh (cached after the first build)")
    r = subprocess.run([os.path.join(SRCDIR, "scripts", "build-guest-kernel.sh")],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode:
        raise harness.TestFailure("the guest kernel did not build")
    return r.stdout.strip().splitlines()[-1]


def test(args):
    harness.require_kvm()
    tmp = tempfile.mkdtemp(prefix="cella-linux-cpuhp-")
    try:
        kernel = build_kernel()
        ctl = os.path.join(tmp, "c.sock")
        cmdline = ("console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 root=/dev/vda rootwait "
                   + os.environ.get("CELLA_LINUX_CMDLINE_EXTRA", ""))
        g = harness.Guest([args["cella_vm"], "--kernel", kernel, "--cpus", "1", "--cpus-max",
                           "2", "--acpi", "--mem", "256", "--cmdline", cmdline.strip(),
                           "--control", ctl], name="linux-cpuhp")
        with g:
            g.wait_for(r"smpboot: Allowing 2 CPUs, 1 hotplug CPUs", BOOT_TIMEOUT)
            g.wait_for(r"ACPI: button: Power Button \[PWRB\]", BOOT_TIMEOUT)
            # the GED's _INI ran at namespace initialisation, long before
            rep = harness.control(ctl, {"cmd": "cpus-set", "cpus": 2})
            if not rep.get("ok"):
                raise harness.TestFailure(f"cpus-set 2: {rep}")
            m = g.wait_for(r"CPU1 has been hot-added", 300)
            harness.log(f"ok: {m.group(0)}")
            g.kill()
    finally:
        subprocess.run(["rm", "-rf", tmp])


harness.main(test)
