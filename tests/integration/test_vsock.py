#!/usr/bin/env python3
"""it-vsock: virtio-vsock's Unix-socket host side against the vsock guest
(guest/tests/vsock.c), from the outside:

- host to guest: a client connects to --device virtio-vsock,uds=PATH,
  writes "CONNECT 1234\\n", gets "OK <port>\\n" and its lines echoed;
  CONNECT to a port nobody listens on closes the client's socket;
- guest to host: the guest connects to host port 5000, which reaches the
  listener at PATH_5000, and sends its line;
- save and --restore: the client connected at the save sees its socket
  closed, the restored guest gets a TRANSPORT_RESET event (it connects out
  again: "hello again"), and a new CONNECT works;
- the worker's status counts no malformed packet."""
import os
import socket
import tempfile

import harness

EXIT_SAVED = 14
CID = 7
SECCOMP = os.environ.get("CELLA_IT_SECCOMP") == "1"


def check(cond, msg):
    if not cond:
        raise harness.TestFailure(msg)
    harness.log(f"ok: {msg}")


def read_line(s, timeout=60):
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            break
        buf += c
    return buf.decode()


def read_exact(s, n, timeout=60):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            break
        buf += c
    return buf


def closed(s, timeout=60):
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def connect(uds, port):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(uds)
    s.sendall(f"CONNECT {port}\n".encode())
    return s


def echo(uds, text):
    """A new connection to guest port 1234; text must come back."""
    with connect(uds, 1234) as s:
        ok = read_line(s)
        check(ok.startswith("OK ") and int(ok[3:]) >= 1 << 30,
              f"CONNECT 1234 answered {ok!r}")
        s.sendall(text)
        got = read_exact(s, len(text))
        check(got == text, f"{len(text)} bytes echoed by the guest")
        s.shutdown(socket.SHUT_WR)
        check(closed(s), "after the client's EOF the connection ends")


def accept_hello(listener, want, g):
    if SECCOMP:
        # Under the allowlist cella-vm run by hand cannot connect by name
        # (only cellad's relay could): the guest is refused, the VM lives.
        g.wait_for(r"^vsock: closed host port 5000 \(reset, refused\)$", 60)
        harness.log("ok: under --seccomp the guest's connection by name is refused")
        return
    listener.settimeout(60)
    c, _ = listener.accept()
    with c:
        line = read_line(c)
    check(line == want, f"the guest's connection to host port 5000 sent {line!r}")


def status(ctl):
    rep = harness.control(ctl, {"cmd": "status"})
    return rep.get("vsock") or {}


def test(args):
    if harness.vmm_kind() != "cella":
        harness.skip("the --device flag is cella-vm's")
    harness.require_kvm()
    vm, guest = args["cella_vm"], args["guests"]["vsock"]
    with tempfile.TemporaryDirectory() as tmp:
        uds = os.path.join(tmp, "v.sock")
        ctl = os.path.join(tmp, "vm.ctl")
        state = os.path.join(tmp, "vm.state")
        dev = ["--device", f"virtio-vsock,cid={CID},uds={uds}"]
        cmdline = "listen=1234 connect=5000"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(uds + "_5000")
        listener.listen(4)
        with harness.run_guest(guest, cmdline, cella_vm=vm,
                               extra=dev + ["--control", ctl]) as g:
            g.wait_for(rf"^vsock: ready cid {CID}$", 60)
            accept_hello(listener, f"hello from cid {CID}\n", g)
            echo(uds, b"ping 1\n")
            echo(uds, bytes(range(256)) * 64)  # 16 KiB: several packets each way
            with connect(uds, 999) as s:
                check(closed(s), "CONNECT to a port the guest does not listen on is closed")
            st = status(ctl)
            check(st.get("cid") == CID and st.get("malformed") == 0,
                  f"status: cid {st.get('cid')}, malformed {st.get('malformed')}")
            check(st.get("host_connects") == 3 and st.get("guest_connects") == (0 if SECCOMP else 1),
                  f"status counts 3 host and 1 guest connections ({st})")
            # A client connected across the save.
            held = connect(uds, 1234)
            check(read_line(held).startswith("OK "), "a client is connected at the save")
            fd = os.open(state, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                rep = harness.control(ctl, {"cmd": "save", "fd": 0}, fds=[fd])
            finally:
                os.close(fd)
            check(rep.get("ok") is True, f"save: {rep}")
            check(g.wait_exit(60) == EXIT_SAVED, "the worker exits 14 after the save")
            check(closed(held), "the client connected at the save sees its socket closed")
            held.close()
        cmd = [vm, "--kernel", guest, "--cmdline", cmdline, "--restore", state,
               "--control", ctl] + dev + (["--seccomp"] if SECCOMP else [])
        with harness.Guest(cmd, "restored") as g:
            g.wait_for(rf"^vsock: transport reset \(cid {CID}\)$", 60)
            accept_hello(listener, f"hello again from cid {CID}\n", g)
            echo(uds, b"ping after restore\n")
            st = status(ctl)
            check(st.get("transport_resets") == 1 and st.get("malformed") == 0,
                  f"restored: one TRANSPORT_RESET delivered, nothing malformed ({st})")
            with connect(uds, 1234) as s:
                check(read_line(s).startswith("OK "), "a last connection")
                s.sendall(b"quit\n")
                g.expect_pass("vsock")
        listener.close()


harness.main(test)
