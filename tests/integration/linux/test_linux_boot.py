#!/usr/bin/env python3
"""it-linux-boot: boot the microVM guest kernel (scripts/build-guest-kernel.sh)
on cella-vm with a virtio-blk ext4 root, a virtio-net NIC on a tap in a private
network namespace with dnsmasq serving DHCP on it, and virtio-rng; check from
the kernel log that it probes every device, mounts the root read-write, gets
an address by DHCP and starts /init.

It boots with 2 vCPUs and cella-vm's defaults, so ACPI on, with a
virtio-balloon and a virtio-mem device, and checks (docs/guests.md, "ACPI"):
- ACPI: the kernel finds cella's tables (RSDP at 0xE0000, signature CELLA),
  takes both vCPUs from the MADT, brings both up; its command line carries no
  virtio_mmio.device= (the worker leaves them out for a Linux guest with ACPI),
  so every virtio device it probes came from the DSDT (LNRO0005); COM1 is the
  DSDT's PNP0501 (ttyS0 on a PNP device "00:0N").
- Power button: once the ACPI button driver bound the DSDT's PNP0C0C, the
  test asks the worker for a graceful shutdown (control `shutdown`): the worker
  raises the GED's interrupt, the GED's _EVT notifies the button, and the
  button driver reports KEY_POWER (code 116), which the evbug input handler
  logs (loglevel=8). Acting on that key is user space's job (systemd-logind,
  acpid), so on this host that is as far as the orderly power-off path gets;
  the shutdown is then cancelled (`shutdown-cancel`). On hosts where /init
  runs, /init's poweroff goes through ACPI S5 (the sleep control register):
  exit status 0.
- virtio-balloon: the host sets a target (control `balloon-set`) as soon as
  the worker runs; the Linux driver (which logs nothing) reaches DRIVER_OK and
  inflates to that target (the worker's status: actual_pages = target_pages)
  before /init starts.
- virtio-mem (256 MiB hot-pluggable above the 256 MiB of RAM): once the
  driver has probed (its log: start address, region size, requested size 0),
  the host asks for VMEM_MIB (control `virtio-mem-set`); the driver logs the
  new requested size, plugs (the worker's status: plugged_mib), and, asked
  again, logs its plugged size: the guest's own account of the hot-plug.

Then a second, shorter boot of the same kernel with `acpi=off` on its command
line (the tables are still there): the kernel takes the vCPUs from the MP
table, finds no ACPI tables, and gets its virtio-mmio devices from the
command line that cella-vm then completes (virtio-blk probed); it is stopped
once that is seen.

On hosts whose KVM runs guest code on hardware (VT-x/AMD-V), /init must also
run: it prints a marker and powers off. On this project's emulating KVM
(kvm_pvm, no hardware virtualization) Linux user space cannot run, so the test
stops the VM once "Run /init as init process" is seen (docs/linux-guests.md).

Usage: test_linux_boot.py --cella-vm PATH [--kernel BZIMAGE] [--init-src init.c]
Environment: CELLA_GUEST_KERNEL (a prebuilt bzImage), CELLA_LINUX_CMDLINE_EXTRA.
Exit status: 0 pass, 1 fail, 77 skip (no KVM, not root, no netns/tap/dnsmasq).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

SRCDIR = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
HOST_IP, NET = "192.168.123.1", "192.168.123"
TAP = "ctap-linux"
MARKER = "CELLA-INIT: user space is running"
# Generous guards against a hung VM: ~110 s to /init here on an idle host,
# four times that when the two cores are shared with parallel builds (424 s
# at a load average of 20 to 76); the acpi=off boot stops at virtio-blk.
BOOT_TIMEOUT = 900
ACPI_OFF_TIMEOUT = 450

# What the kernel log must show, in any order: name -> regular expression.
# ACPI is on (cella-vm's default, docs/guests.md "ACPI"): the vCPUs come from
# the MADT and the virtio-mmio devices from the DSDT.
CHECKS = {
    "first console line": r"Linux version 6\.1\.",
    "virtio-blk probed": r"virtio_blk virtio\d+: \[vda\] \d+ 512-byte logical blocks",
    "2 vCPUs allowed": r"smpboot: Allowing 2 CPUs, 0 hotplug CPUs",
    "2 vCPUs up": r"smp: Brought up 1 node, 2 CPUs",
    "command line": r"Kernel command line: ",
    "ext4 mounted": r"EXT4-fs \(vda\): mounted filesystem",
    # "rw" on the command line, and no "readonly" here: mounted read-write.
    "root mounted read-write": r"VFS: Mounted root \(ext4 filesystem\) on device \d+:\d+\.",
    "DHCP answer": rf"IP-Config: Got DHCP answer from {re.escape(HOST_IP)}, my address is {re.escape(NET)}\.\d+",
    "IP-Config complete": r"IP-Config: Complete:",
    "virtio-net up (eth0 configured)": rf"device=eth0, hwaddr=.*ipaddr={re.escape(NET)}\.\d+",
    "/init started": r"Run /init as init process",
    "ACPI tables found (RSDP)": r"ACPI: RSDP 0x00000000000E0000 000024 \(v02 CELLA \)",
    "vCPUs from the MADT": r"ACPI: Using ACPI \(MADT\) for SMP configuration information",
    "DSDT loaded, S5 offered": r"ACPI: PM: \(supports S0 S5\)",
    # Hardware-reduced ACPI has no legacy PIC: Linux numbers GSI 4 dynamically.
    "COM1 from the DSDT": r"00:0\d: ttyS0 at I/O 0x3f8 \(irq = \d+",
    "power button from the DSDT": r"ACPI: button: Power Button \[PWRB\]",
    # evbug attaches to the button's input device later in the boot: a press
    # before that is handled but not logged.
    "evbug listens to the power button":
        r"evbug: Connected device: input\d+ \(Power Button at PNP0C0C",
    "power button pressed (KEY_POWER)":
        r"evbug: Event\. Dev: input\d+, Type: 1, Code: 116, Value: 1",
    "virtio-mem probed": r"virtio_mem virtio\d+: start address: 0x",
}

VMEM_REGION_MIB = 256   # max_mib - memory: two of Linux's 128 MiB memory blocks
VMEM_MIB = 128
VMEM_CHECKS = {
    "virtio-mem request seen by the guest": rf"virtio_mem virtio\d+: requested size: {VMEM_MIB << 20:#x}$",
    "virtio-mem plugged (guest's account)": rf"virtio_mem virtio\d+: plugged size: {VMEM_MIB << 20:#x}$",
}
CHECKS.update(VMEM_CHECKS)

# The acpi=off boot: MP table, command-line devices, no ACPI tables read.
ACPI_OFF_CHECKS = {
    "acpi=off: command line": r"Kernel command line: .*\bacpi=off\b.*virtio_mmio\.device=",
    "acpi=off: vCPUs from the MP table": r"MPTABLE: OEM ID: CELLA",
    "acpi=off: 2 vCPUs allowed": r"smpboot: Allowing 2 CPUs, 0 hotplug CPUs",
    "acpi=off: 2 vCPUs up": r"smp: Brought up 1 node, 2 CPUs",
    "acpi=off: virtio-mmio devices from the command line":
        r"virtio-mmio: Registering device virtio-mmio\.0 ",
    "acpi=off: virtio-blk probed": r"virtio_blk virtio\d+: \[vda\] \d+ 512-byte logical blocks",
}


def sh(*cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r.stdout


def hardware_virtualization():
    """True when guest code runs on VT-x/AMD-V, so Linux user space works."""
    if os.path.exists("/sys/module/kvm_pvm"):
        return False
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return re.search(r"\b(vmx|svm)\b", flags) is not None


def build_kernel():
    prebuilt = os.environ.get("CELLA_GUEST_KERNEL")
    if prebuilt:
        return prebuilt
    t0 = time.monotonic()
    harness.log("kernel: scripts/build-guest-kernel.sh (cached after the first build)")
    r = subprocess.run([os.path.join(SRCDIR, "scripts", "build-guest-kernel.sh")],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode:
        raise harness.TestFailure("the guest kernel did not build")
    path = r.stdout.strip().splitlines()[-1]
    harness.log(f"kernel: {path} ({time.monotonic() - t0:.1f} s)")
    return path


def make_rootfs(tmp, init_src):
    root = os.path.join(tmp, "root")
    for d in ("dev", "proc", "sys", "tmp"):
        os.makedirs(os.path.join(root, d))
    sh("gcc", "-static", "-Os", "-o", os.path.join(root, "init"), init_src)
    img = os.path.join(tmp, "root.img")
    sh("mkfs.ext4", "-q", "-F", "-L", "cellaroot", "-d", root, img, "32M")
    return img


def start_dnsmasq(ns, tmp):
    """dnsmasq in the namespace, DHCP only, on the tap only. Returns the
    process once it says it is serving the range."""
    cmd = ["ip", "netns", "exec", ns, "dnsmasq", "--no-daemon", "--port=0",
           f"--interface={TAP}", "--bind-interfaces", "--except-interface=lo",
           f"--dhcp-range={NET}.10,{NET}.20,255.255.255.0,1h",
           f"--dhcp-leasefile={tmp}/leases", f"--pid-file={tmp}/dnsmasq.pid",
           "--conf-file=/dev/null", "--log-dhcp", "--log-facility=-"]
    harness.log("dnsmasq: " + " ".join(cmd))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        print(f"  dnsmasq| {line.rstrip()}", flush=True)
        if "DHCP, IP range" in line:
            return p
    raise harness.TestFailure(f"dnsmasq exited before serving DHCP (status {p.wait()})")


def drain(p):
    import threading

    def run():
        for line in p.stdout:
            print(f"  dnsmasq| {line.rstrip()}", flush=True)
    threading.Thread(target=run, daemon=True).start()


class LinuxEnv:
    """Root image, network namespace with a tap and dnsmasq serving DHCP on
    it; removed on exit. Skips the test (exit 77) when the host cannot."""

    def __init__(self, init_src):
        self.init_src = init_src
        self.tmp = self.ns = self.dnsmasq = None

    def __enter__(self):
        if os.geteuid() != 0:
            harness.skip("it-linux-boot needs root (network namespace, tap, dnsmasq)")
        for tool in ("ip", "dnsmasq", "mkfs.ext4", "gcc"):
            if not shutil.which(tool):
                harness.skip(f"it-linux-boot needs {tool} (scripts/setup.sh installs it)")
        if not os.path.exists("/dev/net/tun"):
            harness.skip("it-linux-boot needs /dev/net/tun")
        self.tmp = tempfile.mkdtemp(prefix="cella-linux-")
        try:
            self.img = make_rootfs(self.tmp, self.init_src)
            ns = f"cella-lx-{os.getpid()}"
            try:
                sh("ip", "netns", "add", ns)
            except RuntimeError as e:
                harness.skip(f"cannot create a network namespace: {e}")
            self.ns = ns
            try:
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", ns, "tuntap", "add", "dev", TAP, "mode", "tap")
                sh("ip", "-n", ns, "addr", "add", f"{HOST_IP}/24", "dev", TAP)
                sh("ip", "-n", ns, "link", "set", TAP, "up")
            except RuntimeError as e:
                harness.skip(f"cannot set up a tap in the namespace: {e}")
            self.dnsmasq = start_dnsmasq(ns, self.tmp)
            drain(self.dnsmasq)
        except BaseException:
            self.__exit__()
            raise
        return self

    def wrapper(self):
        return ["ip", "netns", "exec", self.ns]

    def __exit__(self, *exc):
        if self.dnsmasq and self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            self.dnsmasq.wait()
        if self.ns:
            subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


BALLOON_MIB = 8


def linux_cmdline(extra=""):
    # earlyprintk: the first console line comes right after decompression,
    # not when the 8250 driver registers the console. loglevel=8: evbug's
    # KERN_DEBUG lines (the power button's key press).
    return " ".join(w for w in (
        "console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1 loglevel=8 "
        "i8042.noaux i8042.nomux i8042.nopnp "
        "i8042.dumbkbd root=/dev/vda rw rootfstype=ext4 init=/init ip=dhcp",
        extra, os.environ.get("CELLA_LINUX_CMDLINE_EXTRA", "")) if w)


def cella_command(cella_vm, kernel, env, ctl):
    # No --acpi: ACPI is cella-vm's default.
    return [cella_vm, "--kernel", kernel, "--mem", "256", "--cpus", "2", "--disk", env.img,
            "--net", f"tap={TAP}", "--rng",
            "--device", "virtio-balloon,stats=on,free_page_reporting=on,deflate_on_oom=on",
            "--device", f"virtio-mem,max_mib={256 + VMEM_REGION_MIB}",
            "--control", ctl, "--stats", "--cmdline", linux_cmdline()]


class HostSide:
    """What the test does from the host while the kernel boots: set the
    balloon target, press the power button once the driver is there, cancel
    the shutdown once the key press is logged, and ask virtio-mem for memory
    once its driver has probed."""

    def __init__(self, g, ctl):
        self.g, self.ctl = g, ctl
        self.balloon_set = self.balloon_done = self.pressed = self.cancelled = False
        self.vmem_set = self.vmem_plugged = self.vmem_asked_again = False

    def call(self, req):
        rep = harness.control(self.ctl, req, timeout=60)
        if rep.get("ok") is not True:
            raise harness.TestFailure(f"control {req}: {rep}")
        return rep

    def since(self):
        return f"{time.monotonic() - self.g.t0:.1f} s"

    def poll(self, seen):
        status = None
        if not self.balloon_set and os.path.exists(self.ctl):
            self.call({"cmd": "balloon-set", "target_mib": BALLOON_MIB})
            self.balloon_set = True
            harness.log(f"balloon: target {BALLOON_MIB} MiB set from the host")
        if (self.balloon_set and not self.balloon_done) or (self.vmem_set and not self.vmem_plugged):
            status = self.call({"cmd": "status"})
        if self.balloon_set and not self.balloon_done:
            b = status.get("balloon") or {}
            if b.get("actual_pages") == BALLOON_MIB * 256 and b.get("target_pages") == BALLOON_MIB * 256:
                self.balloon_done = True
                harness.log(f"ok: balloon inflated to {BALLOON_MIB} MiB ({self.since()})")
        if "evbug listens to the power button" in seen and not self.pressed:
            # Graceful shutdown, with a deadline far away: the button.
            self.call({"cmd": "shutdown", "timeout_ms": 3600000})
            self.pressed = True
            harness.log("power button: graceful shutdown requested")
        if "power button pressed (KEY_POWER)" in seen and not self.cancelled:
            self.call({"cmd": "shutdown-cancel"})
            self.cancelled = True
        if "virtio-mem probed" in seen and not self.vmem_set:
            self.call({"cmd": "virtio-mem-set", "requested_mib": VMEM_MIB})
            self.vmem_set = True
            harness.log(f"virtio-mem: {VMEM_MIB} MiB requested from the host ({self.since()})")
        if self.vmem_set and not self.vmem_plugged:
            v = status.get("virtio_mem") or {}
            if v.get("plugged_mib") == VMEM_MIB:
                self.vmem_plugged = True
                harness.log(f"ok: virtio-mem: the guest plugged {VMEM_MIB} MiB "
                            f"(worker: {v.get('requests')}) ({self.since()})")
        if self.vmem_plugged and not self.vmem_asked_again:
            # The driver logs its plugged size when the configuration
            # changes: the same request again makes it say what it has.
            self.call({"cmd": "virtio-mem-set", "requested_mib": VMEM_MIB})
            self.vmem_asked_again = True


def wait_checks(g, checks, host=None, timeout=BOOT_TIMEOUT, before_init=True):
    """Waits until every pattern of checks appeared in g's log (any order),
    calling host.poll between lines. Returns {name: seconds since spawn}."""
    seen = {}
    pending = dict(checks)
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if host:
            host.poll(seen)
        try:
            if left <= 0:
                raise harness.TestFailure("timeout")
            m = g.wait_for("|".join(f"(?:{p})" for p in pending.values()), min(left, 1))
        except harness.TestFailure as e:
            if left > 1 and g.proc.poll() is None:
                continue  # no new line within a second: poll the host side
            raise harness.TestFailure(f"{e}; missing from the kernel log: " + ", ".join(pending))
        line = m.string
        for name, pat in list(pending.items()):
            if re.search(pat, line):
                seen[name] = time.monotonic() - g.t0
                harness.log(f"ok: {name} ({seen[name]:.1f} s)")
                del pending[name]
                if name == "command line" and "virtio_mmio.device=" in line:
                    raise harness.TestFailure("the kernel command line announces virtio-mmio "
                                              "devices: with ACPI they come from the DSDT")
        if before_init and "/init started" in seen and pending:
            raise harness.TestFailure("/init started before: " + ", ".join(pending))
    return seen


def stopped_stats(g):
    """SIGTERM (Linux user space cannot run here), status 12; cella-vm's
    --stats lines."""
    g.proc.terminate()
    status = g.wait_exit(timeout=60)
    if status != 12:
        raise harness.TestFailure(f"{g.name}: exit status {status} after SIGTERM, want 12")
    # stderr is read on its own thread: wait for cella-vm's last line.
    guard = time.monotonic() + 10
    while not any("exit:" in ln for ln in g.stderr_lines) and time.monotonic() < guard:
        time.sleep(0.05)
    return "\n".join(g.stderr_lines)


def check_driver_ok(stats, devs):
    for dev in devs:
        if not re.search(rf"stats: {dev}: status 0x[0-9a-f]+ \(driver ready\)", stats):
            raise harness.TestFailure(f"{dev}: the guest driver did not reach DRIVER_OK")
        harness.log(f"ok: {dev} probed by the guest (DRIVER_OK)")


def boot_acpi_off(cella_vm, kernel, env):
    """The same kernel with acpi=off: MP table and command-line devices."""
    cmd = [cella_vm, "--kernel", kernel, "--mem", "256", "--cpus", "2",
           "--disk", f"{env.img},ro", "--rng", "--stats",
           "--cmdline", linux_cmdline("acpi=off").replace(" rw ", " ro ").replace(" ip=dhcp", "")]
    with harness.Guest(cmd, name="linux-acpi-off") as g:
        wait_checks(g, ACPI_OFF_CHECKS, timeout=ACPI_OFF_TIMEOUT)
        # Stopped as soon as virtio-blk logs its disk, which it does before
        # DRIVER_OK: the log is the evidence here, not --stats.
        stopped_stats(g)
        if any("ACPI: RSDP" in ln for ln in g.lines):
            raise harness.TestFailure("acpi=off: the kernel read the ACPI tables")


def test(args):
    init_src = args.get("init_src") or os.path.join(SRCDIR, "guest", "linux", "init", "init.c")
    with LinuxEnv(init_src) as env:
        kernel = args.get("kernel") or build_kernel()
        hw = hardware_virtualization()
        harness.log("host: " + ("hardware virtualization: /init must run" if hw else
                                "emulating KVM (no VT-x/AMD-V): stop at 'Run /init' "
                                "(Linux user space cannot run here)"))
        ctl = os.path.join(env.tmp, "control.sock")
        g = harness.Guest(cella_command(args["cella_vm"], kernel, env, ctl), name="linux",
                          wrapper=env.wrapper())
        with g:
            host = HostSide(g, ctl)
            seen = wait_checks(g, CHECKS, host)
            host.poll(seen)
            if not host.balloon_done:
                raise harness.TestFailure("the balloon did not reach its target before /init")
            if not host.cancelled:
                raise harness.TestFailure("the graceful shutdown was not cancelled")
            if hw:
                g.wait_for(re.escape(MARKER), timeout=120)
                harness.log(f"ok: /init ran ({time.monotonic() - g.t0:.1f} s)")
                status = g.wait_exit(timeout=60)
                if status not in (0, 8):
                    raise harness.TestFailure(f"exit status {status} after /init, want 0 or 8")
                stats = "\n".join(g.stderr_lines)
            else:
                stats = stopped_stats(g)
            # The host's side: every virtio device reached DRIVER_OK (the
            # guest's driver probed it: virtio-rng logs nothing in the guest),
            # and the emulation-failure totals.
            check_driver_ok(stats, ("virtio-blk0", "virtio-net0", "virtio-rng", "virtio-balloon",
                                    "virtio-mem"))
            m = re.search(r"stats: emulation failures handled=(\d+)(.*)", stats)
            if not m:
                raise harness.TestFailure("no emulation-failure statistics from --stats")
            harness.log(f"emulation failures handled: {m.group(1)}{m.group(2)}")
            if "instruction not emulated" in stats:
                raise harness.TestFailure("an instruction was not emulated")
        boot_acpi_off(args["cella_vm"], kernel, env)


def main():
    argv = sys.argv[1:]
    extra = {}
    rest = []
    it = iter(argv)
    for a in it:
        if a == "--kernel":
            extra["kernel"] = next(it)
        elif a == "--init-src":
            extra["init_src"] = next(it)
        else:
            rest.append(a)

    def run(args):
        args.update(extra)
        test(args)
    harness.main(run, rest)


if __name__ == "__main__":
    main()
