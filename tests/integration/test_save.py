#!/usr/bin/env python3
"""it-save: save a running VM to a state file (control command "save", file
passed as an SCM_RIGHTS descriptor; the worker exits 14) and restore it with
cella-vm --restore: memwriter carries on with the next round, every checksum
right, none repeated or skipped (1 and 2 vCPUs); the echo guest's UART works
after restore; virtio-blk requests in flight at the save complete after it.
Corrupt, truncated or mismatching state files are refused with the section
named and exit status 2."""
import os
import re
import shutil
import subprocess
import tempfile

import harness

EXIT_SAVED = 14
MW_RE = re.compile(r"^memwriter: round (\d+) checksum 0x([0-9a-f]{16})$")


def check(cond, msg):
    if not cond:
        raise harness.TestFailure(msg)
    harness.log(f"ok: {msg}")


def wait_path(proc, path, timeout=30):
    """The control socket exists once the worker listens (poll on the
    process too: a worker that died will never create it)."""
    import time
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise harness.TestFailure(f"worker exited ({proc.returncode}) before listening")
        if time.monotonic() > deadline:
            raise harness.TestFailure(f"{path} did not appear")
        os.sched_yield()


control = harness.control


def save(guest, ctl, path):
    """Save through an attached descriptor; the worker must exit 14."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        rep = control(ctl, {"cmd": "save", "fd": 0}, fds=[fd])
    finally:
        os.close(fd)
    check(rep.get("ok") is True and rep.get("bytes", 0) > 0, f"save reply {rep}")
    status = guest.wait_exit(60)
    check(status == EXIT_SAVED, f"worker exit status {status} after save (want {EXIT_SAVED})")
    return rep


def cella(vm, kernel, cmdline, cpus=1, mem=128, extra=()):
    return [vm, "--kernel", kernel, "--cmdline", cmdline, "--cpus", str(cpus),
            "--mem", str(mem)] + list(extra)


def mw_checksum(mib, r):
    words = (mib << 20) // 8
    m = (1 << 64) - 1
    s = 0
    base = (r << 40)
    for i in range(words):
        v = ((base | i) * 0x9E3779B97F4A7C15) & m
        s = (((s << 1) | (s >> 63)) & m) ^ v
    return s


def rounds_of(lines):
    out = []
    for l in lines:
        mt = MW_RE.match(l)
        if mt:
            out.append((int(mt.group(1)), int(mt.group(2), 16)))
    return out


def memwriter_case(vm, kernel, d, cpus):
    mib = 2
    cmdline = f"mib={mib} rounds=0 pause_ms=20"
    ctl = os.path.join(d, f"ctl{cpus}.sock")
    state = os.path.join(d, f"mw{cpus}.state")
    g = harness.Guest(cella(vm, kernel, cmdline, cpus, extra=["--control", ctl]),
                      name=f"mw{cpus}")
    with g:
        g.wait_for(r"^memwriter: round 3 checksum", 120)
        save(g, ctl, state)
    before = list(g.lines)
    # The line cut by the save (if any) goes on in the restored VM.
    # (A cut line may end in a hex digit too, "me": only a whole round line
    # or the ready line is complete.)
    tail = before.pop() if before and not MW_RE.match(before[-1]) \
        and not before[-1].startswith("memwriter: ready") else ""
    last = rounds_of(before)[-1][0]
    harness.log(f"saved after round {last} (partial line {tail!r})")
    g2 = harness.Guest(cella(vm, kernel, cmdline, cpus, extra=["--restore", state]),
                       name=f"mw{cpus}-restored")
    with g2:
        g2.wait_for(rf"round {last + 3} checksum", 120)
        g2.kill()
    after = list(g2.lines)
    if after and tail:
        after[0] = tail + after[0]
    got = rounds_of(after)
    check(bool(got) and got[0][0] == last + 1,
          f"{cpus} vCPU(s): first round after restore is {got[0][0] if got else None}, "
          f"want {last + 1}")
    check([r for r, _ in got] == list(range(last + 1, last + 1 + len(got))),
          f"{cpus} vCPU(s): rounds {[r for r, _ in got]} follow on, none repeated or skipped")
    allr = rounds_of(before) + got
    for r, c in allr[-4:]:
        check(c == mw_checksum(mib, r), f"round {r} checksum 0x{c:016x} is right")
    check(not any(l.startswith("FAIL") for l in g2.lines), "no memory verification failure")
    return state


def echo_case(vm, kernel, d):
    ctl = os.path.join(d, "echo.sock")
    state = os.path.join(d, "echo.state")
    g = harness.Guest(cella(vm, kernel, "", extra=["--control", ctl]), name="echo")
    with g:
        g.wait_for(r"^echo: ready", 60)
        g.send("before\n")
        g.wait_for(r"^echo: before$", 60)
        save(g, ctl, state)
    # Restore from an inherited descriptor, as cellad does for sandboxed workers.
    fd = os.open(state, os.O_RDONLY)
    g2 = harness.Guest(cella(vm, kernel, "", extra=["--restore", f"fd:{fd}"]),
                       name="echo-restored")
    g2.proc = None
    g2.t0 = __import__("time").monotonic()
    g2.proc = subprocess.Popen(g2.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, bufsize=0, pass_fds=(fd,))
    os.close(fd)
    import threading
    threading.Thread(target=g2._read_stdout, daemon=True).start()
    threading.Thread(target=g2._read_stderr, daemon=True).start()
    try:
        g2.send("after restore\n")
        g2.wait_for(r"^echo: after restore$", 60)
        g2.send("quit\n")
        g2.expect_pass("echo", 60)
    finally:
        g2.kill()
    check(True, "echo: the UART works after restore (typed line echoed, PASS)")


def blk_case(vm, kernel, d):
    disk = os.path.join(d, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    ctl = os.path.join(d, "blk.sock")
    state = os.path.join(d, "blk.state")
    cmdline = "tests=randread-qd32 ops=20000 span=32"
    g = harness.Guest(cella(vm, kernel, cmdline, extra=["--control", ctl, "--disk", disk]),
                      name="blk")
    with g:
        g.wait_for(r"^blkbench: begin randread-qd32", 120)
        save(g, ctl, state)
    g2 = harness.Guest(cella(vm, kernel, cmdline, extra=["--restore", state, "--disk", disk]),
                       name="blk-restored")
    with g2:
        g2.wait_for(r"^blkbench: end randread-qd32", 300)
        g2.expect_pass("blkbench", 120)
    check(True, "virtio-blk: requests in flight at the save completed after restore")
    return disk, state


def refused(cmd, words, what):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    check(p.returncode == 2 and words in p.stderr,
          f"{what}: exit {p.returncode} (want 2), stderr has '{words}'")
    check("AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr,
          f"{what}: no sanitizer report")


def bad_files(vm, kernel, state, d, disk, blk_kernel, blk_state):
    data = open(state, "rb").read(1 << 20)
    i = data.index(b"vcpu0\0")
    bad = os.path.join(d, "bad.state")
    shutil.copyfile(state, bad)
    with open(bad, "r+b") as f:
        f.seek(i + 200)
        b = f.read(1)
        f.seek(i + 200)
        f.write(bytes([b[0] ^ 0xFF]))
    cmdline = "mib=2 rounds=0 pause_ms=20"
    refused(cella(vm, kernel, cmdline, extra=["--restore", bad]),
            "state: section 'vcpu0' checksum mismatch", "corrupted vcpu0")
    j = data.index(b"ioapic\0")
    shutil.copyfile(state, bad)
    with open(bad, "r+b") as f:
        f.truncate(j + 100)
    refused(cella(vm, kernel, cmdline, extra=["--restore", bad]), "state: truncated",
            "truncated file")
    refused(cella(vm, kernel, cmdline, mem=256, extra=["--restore", state]),
            "the saved VM has 1 vCPUs and 128 MiB", "other memory size")
    refused(cella(vm, kernel, cmdline, extra=["--restore", state, "--disk", disk]),
            "device 'blk0'", "a disk the saved VM lacked")
    refused(cella(vm, blk_kernel, "", extra=["--restore", blk_state]),
            "device 'blk0'", "a disk missing from the configuration")
    with open(bad, "wb") as f:
        f.write(b"not a state file at all")
    refused(cella(vm, kernel, cmdline, extra=["--restore", bad]), "bad magic", "not a state file")


def test(args):
    vm = args["cella_vm"]
    mw, echo, blk = (args["guests"][k] for k in ("memwriter", "echo", "blkbench"))
    with tempfile.TemporaryDirectory() as d:
        state = memwriter_case(vm, mw, d, 1)
        memwriter_case(vm, mw, d, 2)
        echo_case(vm, echo, d)
        disk, blk_state = blk_case(vm, blk, d)
        bad_files(vm, mw, state, d, disk, blk, blk_state)


if __name__ == "__main__":
    harness.main(test)
