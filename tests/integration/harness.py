"""harness.py: boot a test-guest program under cella-vm (or QEMU) and talk
to it through its serial console.

A Guest streams the VMM's stdout line by line on a reader thread; tests wait
for regular expressions on it. Every timeout here is only a guard against a
hung VMM: nothing sleeps to synchronise.

Scripts exit 0 (pass), 1 (fail) or 77 (skip), as meson expects.
Set CELLA_IT_VMM=qemu to run a test under QEMU instead of cella-vm.
"""

import array
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

EXIT_PASS, EXIT_FAIL, EXIT_SKIP = 0, 1, 77

QEMU = "qemu-system-x86_64"
QEMU_MACHINE = "microvm,x-option-roms=off,rtc=off,isa-serial=on,acpi=off"


class TestFailure(Exception):
    pass


def log(msg):
    print(f"[it] {msg}", flush=True)


def skip(reason):
    print("#" * 72, flush=True)
    print(f"# SKIP: {reason}", flush=True)
    print("#" * 72, flush=True)
    sys.exit(EXIT_SKIP)


def require_kvm():
    if not os.path.exists("/dev/kvm"):
        skip("/dev/kvm is missing: integration tests need KVM")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        skip("/dev/kvm is not accessible to this user")


def debug_exit_status(code):
    """Exit status of cella-vm / QEMU after the guest wrote code to 0xF4."""
    return (code << 1) | 1


def vmm_kind():
    return os.environ.get("CELLA_IT_VMM", "cella")


def build_command(vmm, cella_vm, kernel, cmdline="", cpus=1, mem=128, disks=(), net_tap=None,
                  rng=False, extra=()):
    """The argv that boots kernel under vmm ("cella" or "qemu").

    disks: paths, or (path, readonly) pairs.
    """
    disks = [(d, False) if isinstance(d, str) else d for d in disks]
    if vmm == "cella":
        # Always pass --cmdline: cella-vm's default is one for Linux.
        cmd = [cella_vm, "--kernel", kernel, "--cpus", str(cpus), "--mem", str(mem),
               "--cmdline", cmdline]
        for path, ro in disks:
            cmd += ["--disk", path + (",ro" if ro else "")]
        if net_tap:
            cmd += ["--net", f"tap={net_tap}"]
        if rng:
            cmd += ["--rng"]
        # CELLA_IT_SECCOMP=1: under the worker's seccomp filters (the
        # process's and the vCPU threads' allowlists), without the sandbox.
        if os.environ.get("CELLA_IT_SECCOMP") == "1":
            cmd += ["--seccomp"]
        return cmd + list(extra)
    if vmm == "qemu":
        cmd = [QEMU, "-M", QEMU_MACHINE, "-enable-kvm", "-cpu", "kvm64",
               "-m", str(mem), "-smp", str(cpus), "-nodefaults", "-no-reboot",
               "-display", "none", "-serial", "stdio",
               "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
               "-global", "virtio-mmio.force-legacy=false",
               "-kernel", kernel, "-append", cmdline]
        for i, (path, ro) in enumerate(disks):
            cmd += ["-drive", f"file={path},if=none,id=d{i},format=raw"
                    + (",readonly=on" if ro else ""),
                    "-device", f"virtio-blk-device,drive=d{i}"]
        if net_tap:
            cmd += ["-netdev", f"tap,id=n0,ifname={net_tap},script=no,downscript=no",
                    "-device", "virtio-net-device,netdev=n0"]
        if rng:
            cmd += ["-device", "virtio-rng-device"]
        return cmd + list(extra)
    raise ValueError(f"unknown VMM {vmm!r}")


class Guest:
    """One running VM. Use as a context manager so it is always reaped."""

    def __init__(self, cmd, name="guest", wrapper=()):
        self.cmd = list(wrapper) + list(cmd)
        self.name = name
        self.lines = []          # every serial line so far
        self.stderr_lines = []
        self._q = queue.Queue()
        self._pos = 0            # lines already consumed by wait_for
        self.proc = None
        self.returncode = None

    def start(self, pass_fds=()):
        """Spawn the VM; pass_fds: descriptors it inherits (e.g. --incoming fd:N)."""
        log(f"{self.name}: {' '.join(self.cmd)}")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0, pass_fds=pass_fds)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()
        return False

    def _read_stdout(self):
        buf = b""
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self._line(raw)
        if buf:
            self._line(buf)
        self._q.put(None)        # EOF

    def _line(self, raw):
        line = raw.decode("utf-8", "replace").rstrip("\r")
        print(f"  {self.name}| {line}", flush=True)
        self._q.put(line)

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stderr_lines.append(line)
            print(f"  {self.name}! {line}", flush=True)

    def _next_line(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise queue.Empty
        line = self._q.get(timeout=remaining)
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, pattern, timeout=60):
        """Returns the re.Match of the first new line matching pattern."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._next_line(deadline)
            except queue.Empty:
                raise TestFailure(f"{self.name}: no line matching {pattern!r} within {timeout} s")
            if line is None:
                self._q.put(None)    # keep EOF visible to later waits
                raise TestFailure(f"{self.name}: console closed before a line matching "
                                  f"{pattern!r} (exit status {self.proc.wait()})")
            m = rx.search(line)
            if m:
                return m

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait_exit(self, timeout=60):
        """Drains the console and returns the VMM's exit status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._next_line(deadline) is None:
                    self._q.put(None)
                    break
            except queue.Empty:
                raise TestFailure(f"{self.name}: did not exit within {timeout} s")
        try:
            self.returncode = self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{self.name}: console closed but the VMM did not exit")
        log(f"{self.name}: exit status {self.returncode} after "
            f"{time.monotonic() - self.t0:.2f} s")
        return self.returncode

    def expect_pass(self, program, timeout=60):
        """Waits for "PASS <program>" and debug-exit status 0."""
        m = self.wait_for(rf"^(PASS {re.escape(program)}$|FAIL {re.escape(program)}\b.*)",
                          timeout)
        if not m.group(0).startswith("PASS"):
            raise TestFailure(f"{self.name}: {m.group(0)}")
        status = self.wait_exit(timeout)
        if status != debug_exit_status(0):
            raise TestFailure(f"{self.name}: exit status {status}, want "
                              f"{debug_exit_status(0)}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            for f in (self.proc.stdin,):
                try:
                    f.close()
                except OSError:
                    pass


def control(path, req, fds=(), timeout=120):
    """One JSON-lines request on a worker's control socket, with fds passed
    as SCM_RIGHTS alongside; returns the reply object."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        s.sendmsg([(json.dumps(req) + "\n").encode()], anc)
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise TestFailure(f"control: connection closed after {buf!r}")
            buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def run_guest(kernel, cmdline="", vmm=None, cella_vm=None, name=None, **kw):
    """Builds the command for vmm (default: CELLA_IT_VMM or cella) and
    returns an unstarted Guest. Keyword arguments go to build_command,
    plus wrapper=[...] (e.g. ip netns exec NS)."""
    vmm = vmm or vmm_kind()
    wrapper = kw.pop("wrapper", ())
    cmd = build_command(vmm, cella_vm, kernel, cmdline, **kw)
    return Guest(cmd, name or os.path.basename(kernel).replace(".elf", ""), wrapper=wrapper)


def main(test, argv=None):
    """Runs test(args) with args parsed from the command line:
    --cella-vm PATH and NAME=PATH pairs for guest programs. Maps
    TestFailure to exit status 1."""
    argv = sys.argv[1:] if argv is None else argv
    args = {"cella_vm": None, "guests": {}}
    it = iter(argv)
    for a in it:
        if a == "--cella-vm":
            args["cella_vm"] = next(it)
        elif "=" in a:
            k, v = a.split("=", 1)
            args["guests"][k] = v
        else:
            print(f"usage: {sys.argv[0]} --cella-vm PATH NAME=GUEST.elf...", file=sys.stderr)
            sys.exit(2)
    require_kvm()
    if vmm_kind() == "qemu" and not shutil.which(QEMU):
        skip(f"{QEMU} not installed")
    try:
        test(args)
    except TestFailure as e:
        print(f"[it] FAIL: {e}", flush=True)
        sys.exit(EXIT_FAIL)
    print("[it] PASS", flush=True)
    sys.exit(EXIT_PASS)
