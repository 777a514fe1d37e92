#!/usr/bin/env python3
"""it-standby: restore through a standby worker (cella-vm --standby,
docs/state-format.md "Restoring through a standby worker").

- memwriter saved while it runs, restored by a worker started with
  --standby before the request: it logs "standby: ready", takes one JSON
  request line on stdin (the --restore arguments, here with --seccomp), logs
  "restore: vCPUs running", and the guest carries on with the next round,
  every checksum right, none repeated or skipped;
- the same state restored by standby workers started with --mem (docs/
  state-format.md): one told the saved VM's RAM (128 MiB) takes the VM it
  prepared (the restore's trace shows the prepared_vm step, not the memory
  slots and irqchip), with the userfaultfd fill and with the state file
  mapped copy-on-write over the prepared range (CELLA_RESTORE_FILL=
  populate); one told 256 MiB, and one whose request asks for memory.merge,
  throw their VM away, say why, and restore as cold; the guest goes on
  right every time;
- the echo guest saved and restored so, with console input written in the
  same write as the request: the worker takes the request line only, and
  the guest echoes the line that followed it (stdin is the console after);
- over a SOCK_SEQPACKET socket (cellad's way): "ready" said on it, then the
  request as one message with its descriptors placed at the numbers it
  names (the state file, /dev/null, a log for stdout and stderr), the VM's
  output and log in that log; a count of descriptors that differs from the
  request's is refused;
- refused, status 2, nothing run: a request that is not JSON, not an array
  of strings (or an object with unknown members, descriptors over a pipe,
  a number twice, a kvm_fd the args do not use), end of input before a
  request, a request without --restore, an option beside --standby, a --mem
  that is not a size, out of range or given twice, and a state file that
  does not fit the request's configuration (the cold restore's checks).
"""
import json
import os
import socket
import subprocess
import tempfile
import time

import harness
import test_save as ts

check = ts.check


def standby(vm, name, extra=(), wrapper=()):
    """A standby worker, started and ready for its request (the caller
    kills it: not a context manager, whose entry would start another)."""
    g = harness.Guest([vm, "--standby"] + list(extra), name=name, wrapper=wrapper).start()
    deadline = time.monotonic() + 60
    while not any("standby: ready" in l for l in g.stderr_lines):
        if g.proc.poll() is not None:
            raise harness.TestFailure(f"{name}: exited ({g.proc.returncode}) before ready")
        if time.monotonic() > deadline:
            raise harness.TestFailure(f"{name}: no 'standby: ready' within 60 s")
        time.sleep(0.01)  # polling a reader thread's list, with a deadline
    return g


def request(g, words, extra=""):
    g.send(json.dumps(words) + "\n" + extra)


def wait_stderr(g, text, timeout=60):
    deadline = time.monotonic() + timeout
    while not any(text in l for l in g.stderr_lines):
        if time.monotonic() > deadline:
            raise harness.TestFailure(f"{g.name}: no {text!r} on stderr within {timeout} s")
        time.sleep(0.01)


def memwriter_case(vm, kernel, d):
    mib = 2
    cmdline = f"mib={mib} rounds=0 pause_ms=20"
    ctl = os.path.join(d, "mw.sock")
    state = os.path.join(d, "mw.state")
    g = harness.Guest(ts.cella(vm, kernel, cmdline, extra=["--control", ctl]), name="mw")
    with g:
        g.wait_for(r"^memwriter: round 3 checksum", 120)
        ts.save(g, ctl, state)
    before = list(g.lines)
    tail = before.pop() if before and not ts.MW_RE.match(before[-1]) \
        and not before[-1].startswith("memwriter: ready") else ""
    last = ts.rounds_of(before)[-1][0]
    harness.log(f"saved after round {last} (partial line {tail!r})")
    merge = os.path.join(d, "merge.json")
    with open(merge, "w") as f:
        json.dump({"memory": {"merge": True}}, f)
    # (name, standby options, environment, request options, why the prepared
    # VM is not used: None when it is, "" when nothing was prepared)
    for name, extra, env, req, why in (
            ("mw-standby", [], [], [], ""),
            ("mw-prepared", ["--mem", "128"], [], [], None),
            # The state file mapped copy-on-write over the prepared range.
            ("mw-prepared-cow", ["--mem", "128"], ["CELLA_RESTORE_FILL=populate"], [], None),
            ("mw-other-size", ["--mem=256"], [], [],
             "prepared for 256 MiB of RAM, the VM has 128 MiB"),
            ("mw-merge", ["--mem", "128"], [], ["--config", merge],
             "memory.merge asks for another backing than the prepared one")):
        g2 = standby_restore(vm, kernel, cmdline, state, last, name, extra, env, req, why)
        check_rounds(g2, before, tail, last, mib)
    return state, cmdline


def standby_restore(vm, kernel, cmdline, state, last, name, extra, env, req, why):
    """memwriter's state restored through a standby started with extra,
    traced: the prepared VM taken (why None) or not, and why."""
    g2 = standby(vm, name, extra, ["env", "CELLA_TRACE_RESTORE=1"] + env)
    try:
        request(g2, ts.cella(vm, kernel, cmdline,
                             extra=req + ["--restore", state, "--seccomp"])[1:])
        g2.wait_for(rf"round {last + 3} checksum", 120)
        wait_stderr(g2, "restore trace:")
    finally:
        g2.kill()
    err = "\n".join(g2.stderr_lines)
    trace = next(l for l in g2.stderr_lines if "restore trace:" in l)
    if why == "":
        check(" memslots=" in trace and "prepared" not in err, f"{name}: nothing prepared")
        return g2
    mib = extra[-1].split("=")[-1]
    check(f"standby: prepared for {mib} MiB" in err, f"{name}: prepared for {mib} MiB")
    if why is None:
        check(" prepared_vm=" in trace and " memslots=" not in trace
              and " irqchip_pit=" not in trace,
              f"{name}: the restore took the prepared VM (no slots or irqchip made)")
        check("prepared VM is not used" not in err, f"{name}: no fallback")
    else:
        check(f"standby: the prepared VM is not used ({why}): a new one is made" in err,
              f"{name}: says why it is not used")
        check(" prepared_vm=" not in trace and " memslots=" in trace,
              f"{name}: the restore made its own VM, slots and irqchip")
    return g2


def check_rounds(g2, before, tail, last, mib):
    after = list(g2.lines)
    if after and tail:
        after[0] = tail + after[0]
    got = ts.rounds_of(after)
    check(bool(got) and got[0][0] == last + 1,
          f"first round after the standby restore is {got[0][0] if got else None}, "
          f"want {last + 1}")
    check([r for r, _ in got] == list(range(last + 1, last + 1 + len(got))),
          f"rounds {[r for r, _ in got]} follow on, none repeated or skipped")
    for r, c in (ts.rounds_of(before) + got)[-4:]:
        check(c == ts.mw_checksum(mib, r), f"round {r} checksum 0x{c:016x} is right")
    check(not any(l.startswith("FAIL") for l in g2.lines), "no memory verification failure")


def echo_case(vm, kernel, d):
    ctl = os.path.join(d, "echo.sock")
    state = os.path.join(d, "echo.state")
    g = harness.Guest(ts.cella(vm, kernel, "", extra=["--control", ctl]), name="echo")
    with g:
        g.wait_for(r"^echo: ready", 60)
        g.send("before\n")
        g.wait_for(r"^echo: before$", 60)
        ts.save(g, ctl, state)
    g2 = standby(vm, "echo-standby")
    try:
        # The console's input in the same write as the request.
        request(g2, ts.cella(vm, kernel, "", extra=["--restore", state])[1:],
                "after restore\n")
        g2.wait_for(r"^echo: after restore$", 60)
        g2.send("quit\n")
        g2.expect_pass("echo", 60)
    finally:
        g2.kill()
    check(True, "echo: the line written after the request reached the restored guest")


def socket_standby(vm, d, name):
    """A standby worker whose stdin is a SOCK_SEQPACKET socket (cellad's
    way): (process, our end, its log before the request), once it said
    ready on the socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pre = os.path.join(d, name + "-pre.log")
    with open(pre, "wb") as f:
        p = subprocess.Popen([vm, "--standby"], stdin=theirs, stdout=f, stderr=f)
    theirs.close()
    ours.settimeout(60)
    check(ours.recv(64) == b"ready\n", f"{name}: the standby said ready on its socket")
    return p, ours, pre


def wait_file(path, text, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        with open(path, errors="replace") as f:
            body = f.read()
        if text in body:
            return body
        if time.monotonic() > deadline:
            raise harness.TestFailure(f"no {text!r} in {path} within {timeout} s:\n{body}")
        time.sleep(0.01)  # polling a file the worker writes, with a deadline


def socket_case(vm, kernel, d, state, cmdline):
    """The request as one message with its descriptors: the state file at
    7, /dev/null at 0, a log at 1 and 2; the guest's output and the
    worker's log go to that log from the request on."""
    p, s, pre = socket_standby(vm, d, "sock")
    log = os.path.join(d, "sock-after.log")
    try:
        with open(log, "wb") as lf, open(state, "rb") as sf, open(os.devnull, "rb") as null:
            words = ts.cella(vm, kernel, cmdline, extra=["--restore", "fd:7"])[1:]
            req = {"args": words, "fds": [0, 1, 2, 7]}
            socket.send_fds(s, [json.dumps(req).encode()],
                            [null.fileno(), lf.fileno(), lf.fileno(), sf.fileno()])
        try:
            body = wait_file(log, "memwriter: round")
        except harness.TestFailure:
            with open(pre, errors="replace") as f:
                harness.log(f"sock: its log before the request:\n{f.read()}")
            raise
        check("standby: restore request taken: 4 descriptors placed" in body and
              "restore: vCPUs running" in body, "socket: the restore logs to the passed log")
        with open(pre) as f:
            check("memwriter" not in f.read(), "socket: nothing of the VM before the request")
    finally:
        p.kill()
        p.wait()
        s.close()
    # One descriptor for two numbers: refused, nothing run.
    p, s, pre = socket_standby(vm, d, "sock-count")
    try:
        with open(state, "rb") as sf:
            req = {"args": ["--restore", "fd:7"], "fds": [6, 7]}
            socket.send_fds(s, [json.dumps(req).encode()], [sf.fileno()])
        status = p.wait(60)
        body = wait_file(pre, "names 2 descriptors (fds), 1 came")
        check(status == 2 and "vCPUs" not in body, "socket: a count that differs is refused")
    finally:
        p.kill()
        p.wait()
        s.close()


def refused(vm, name, line, words, extra=()):
    g = harness.Guest([vm, "--standby"] + list(extra), name=name).start()
    try:
        try:
            if line is not None:
                g.send(line)
            g.proc.stdin.close()
        except BrokenPipeError:  # it stopped reading: what "too long" expects
            pass
        status = g.wait_exit(60)
        wait_stderr(g, words, 10)
    finally:
        g.kill()
    err = "\n".join(g.stderr_lines)
    check(status == 2 and "vCPUs running" not in err and not g.lines,
          f"{name}: refused with status 2 ({words!r}), nothing ran")


def test(args):
    if harness.vmm_kind() == "qemu":
        harness.skip("cella-vm --standby has no QEMU counterpart")
    vm = args["cella_vm"]
    mw, echo = args["guests"]["memwriter"], args["guests"]["echo"]
    with tempfile.TemporaryDirectory() as d:
        state, cmdline = memwriter_case(vm, mw, d)
        echo_case(vm, echo, d)
        socket_case(vm, mw, d, state, cmdline)
        refused(vm, "not-json", "not json\n", "the request is not JSON")
        refused(vm, "not-strings", '["--restore", 3]\n', "is not a string")
        refused(vm, "object", '{"restore": "x"}\n', "unknown member 'restore'")
        refused(vm, "not-array", '{"args": "x"}\n', "must be a JSON array")
        # Descriptors come over a SOCK_SEQPACKET socket only (cellad's).
        refused(vm, "fds-pipe", '{"args": ["--restore", "x"], "fds": [5]}\n',
                "they come only over a SOCK_SEQPACKET socket")
        refused(vm, "fds-twice", '{"args": ["--restore", "x"], "fds": [5, 5]}\n',
                "name 5 twice")
        refused(vm, "kvm-fd", '{"args": ["--restore", "x"], "kvm_fd": 7}\n',
                "kvm_fd 7 needs --kvm fd:7")
        refused(vm, "eof", None, "end of input before a request")
        refused(vm, "cut", '["--restore", ', "end of input inside the request line")
        refused(vm, "too-long", json.dumps(["--cmdline", "x" * 70000]) + "\n",
                "the request is longer than")
        refused(vm, "no-restore", json.dumps(["--kernel", mw]) + "\n", "the request is no restore")
        refused(vm, "option", None, "--standby takes only --kvm", extra=["--cpus", "2"])
        refused(vm, "mem-word", None, "--standby --mem: expected the guest's RAM in MiB, "
                "got '1G'", extra=["--mem", "1G"])
        refused(vm, "mem-range", None, "--standby --mem: 0 is out of range", extra=["--mem=0"])
        refused(vm, "mem-host", None, "MiB is more than the host's", extra=["--mem", "1048576"])
        refused(vm, "mem-twice", None, "--mem is given twice",
                extra=["--mem", "128", "--mem", "128"])
        refused(vm, "mem-none", None, "--standby --mem needs the guest's RAM", extra=["--mem"])
        refused(vm, "mismatch", json.dumps(ts.cella(vm, mw, cmdline, mem=256,
                                                    extra=["--restore", state])[1:]) + "\n",
                "the saved VM has 1 vCPUs and 128 MiB")


if __name__ == "__main__":
    harness.main(test)
