#!/usr/bin/env python3
"""it-linux-boot: boot the microVM guest kernel (scripts/build-guest-kernel.sh)
on cella-vm with a virtio-blk ext4 root, a virtio-net NIC on a tap in a private
network namespace with dnsmasq serving DHCP on it, and virtio-rng; check from
the kernel log that it probes every device, mounts the root read-write, gets
an address by DHCP and starts /init.

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
# three times that when the two cores are shared with parallel builds.
BOOT_TIMEOUT = 600

# What the kernel log must show, in any order: name -> regular expression.
CHECKS = {
    "first console line": r"Linux version 6\.1\.",
    "virtio-blk probed": r"virtio_blk virtio\d+: \[vda\] \d+ 512-byte logical blocks",
    "virtio-mmio devices registered": r"virtio-mmio: Registering device virtio-mmio\.2 ",
    "ext4 mounted": r"EXT4-fs \(vda\): mounted filesystem",
    # "rw" on the command line, and no "readonly" here: mounted read-write.
    "root mounted read-write": r"VFS: Mounted root \(ext4 filesystem\) on device \d+:\d+\.",
    "DHCP answer": rf"IP-Config: Got DHCP answer from {re.escape(HOST_IP)}, my address is {re.escape(NET)}\.\d+",
    "IP-Config complete": r"IP-Config: Complete:",
    "virtio-net up (eth0 configured)": rf"device=eth0, hwaddr=.*ipaddr={re.escape(NET)}\.\d+",
    "/init started": r"Run /init as init process",
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


def linux_cmdline():
    # earlyprintk: the first console line comes right after decompression,
    # not when the 8250 driver registers the console.
    return ("console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1 "
            "i8042.noaux i8042.nomux i8042.nopnp "
            "i8042.dumbkbd root=/dev/vda rw rootfstype=ext4 init=/init ip=dhcp "
            + os.environ.get("CELLA_LINUX_CMDLINE_EXTRA", "")).strip()


def cella_command(cella_vm, kernel, env):
    return [cella_vm, "--kernel", kernel, "--mem", "256", "--disk", env.img,
            "--net", f"tap={TAP}", "--rng", "--stats", "--cmdline", linux_cmdline()]


def test(args):
    init_src = args.get("init_src") or os.path.join(SRCDIR, "guest", "linux", "init", "init.c")
    with LinuxEnv(init_src) as env:
        kernel = args.get("kernel") or build_kernel()
        hw = hardware_virtualization()
        harness.log("host: " + ("hardware virtualization: /init must run" if hw else
                                "emulating KVM (no VT-x/AMD-V): stop at 'Run /init' "
                                "(Linux user space cannot run here)"))
        g = harness.Guest(cella_command(args["cella_vm"], kernel, env), name="linux",
                          wrapper=env.wrapper())
        with g:
            seen = {}
            pending = dict(CHECKS)
            deadline = time.monotonic() + BOOT_TIMEOUT
            while pending:
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise harness.TestFailure("timeout")
                    m = g.wait_for("|".join(f"(?:{p})" for p in pending.values()), left)
                except harness.TestFailure as e:
                    raise harness.TestFailure(f"{e}; missing from the kernel log: "
                                              + ", ".join(pending))
                line = m.string
                for name, pat in list(pending.items()):
                    if re.search(pat, line):
                        seen[name] = time.monotonic() - g.t0
                        harness.log(f"ok: {name} ({seen[name]:.1f} s)")
                        del pending[name]
            if hw:
                g.wait_for(re.escape(MARKER), timeout=120)
                harness.log(f"ok: /init ran ({time.monotonic() - g.t0:.1f} s)")
                status = g.wait_exit(timeout=60)
                if status not in (0, 8):
                    raise harness.TestFailure(f"exit status {status} after /init, want 0 or 8")
            else:
                g.proc.terminate()
                status = g.wait_exit(timeout=60)
                if status != 12:
                    raise harness.TestFailure(f"exit status {status} after SIGTERM, want 12")
            # The host's side: every virtio device reached DRIVER_OK (the
            # guest's driver probed it: virtio-rng logs nothing in the guest),
            # and the emulation-failure totals.
            # stderr is read on its own thread: wait for cella-vm's last line.
            guard = time.monotonic() + 10
            while not any("exit:" in ln for ln in g.stderr_lines) and time.monotonic() < guard:
                time.sleep(0.05)
            stats = "\n".join(g.stderr_lines)
            for dev in ("virtio-blk0", "virtio-net0", "virtio-rng"):
                if not re.search(rf"stats: {dev}: status 0x[0-9a-f]+ \(driver ready\)", stats):
                    raise harness.TestFailure(f"{dev}: the guest driver did not reach DRIVER_OK")
                harness.log(f"ok: {dev} probed by the guest (DRIVER_OK)")
            m = re.search(r"stats: emulation failures handled=(\d+)(.*)", stats)
            if not m:
                raise harness.TestFailure("no emulation-failure statistics from --stats")
            harness.log(f"emulation failures handled: {m.group(1)}{m.group(2)}")
            if "instruction not emulated" in stats:
                raise harness.TestFailure("an instruction was not emulated")


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
