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
- live migration of the restored VM to a worker with another socket: the
  same, on the destination's socket;
- the worker's status counts no malformed packet."""
import os
import socket
import subprocess
import tempfile

import harness

EXIT_SAVED = 14
EXIT_MIGRATED = 16
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
            migrate(args, tmp, g, ctl, uds, cmdline)
        listener.close()


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_pki(d):
    """A CA and certificates for hosts src and dst (as it-migrate makes them)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=cella test CA",
            cwd=d)
    for host in ("src", "dst"):
        name = f"{host}.cella.test"
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{host}.key", "-out", f"{host}.csr", "-subj", f"/CN={name}", cwd=d)
        with open(os.path.join(d, f"{host}.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{name}\n")
        openssl("x509", "-req", "-in", f"{host}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{host}.crt", "-days", "2", "-extfile",
                f"{host}.ext", cwd=d)


def migrate(args, tmp, src, ctl, uds, cmdline):
    """Live-migrate the running guest to a destination worker whose socket is
    dst.sock: the client connected on the source sees its socket closed, the
    destination's guest gets a TRANSPORT_RESET and connects out again (to
    dst.sock_5000), and a new CONNECT there is echoed."""
    pki = os.path.join(tmp, "pki")
    os.mkdir(pki)
    make_pki(pki)
    duds = os.path.join(tmp, "dst.sock")
    dlisten = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dlisten.bind(duds + "_5000")
    dlisten.listen(4)
    held = connect(uds, 1234)
    check(read_line(held).startswith("OK "), "a client is connected at the migration")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    cmd = [args["cella_vm"], "--kernel", args["guests"]["vsock"], "--cmdline", cmdline,
           "--device", f"virtio-vsock,cid={CID},uds={duds}", "--incoming",
           f"fd:{sock.fileno()}", "--tls-cert", f"{pki}/dst.crt", "--tls-key",
           f"{pki}/dst.key", "--tls-ca", f"{pki}/ca.crt", "--tls-peer", "src.cella.test"] + \
        (["--seccomp"] if SECCOMP else [])
    dst = harness.Guest(cmd, "dst").start(pass_fds=(sock.fileno(),))
    try:
        sock.close()
        with open(os.path.join(pki, "src.crt")) as c, open(os.path.join(pki, "src.key")) as k, \
                open(os.path.join(pki, "ca.crt")) as a:
            req = {"cmd": "migrate", "fd": 0,
                   "tls": {"cert": c.read(), "key": k.read(), "ca": a.read(),
                           "name": "dst.cella.test"}}
        # A connected socket, as cellad passes it (the worker under
        # --seccomp may not make one).
        with socket.create_connection(("127.0.0.1", port)) as conn:
            rep = harness.control(ctl, req, fds=[conn.fileno()], timeout=180)
        check(rep.get("ok") is True, f"migrate: {rep}")
        check(src.wait_exit(60) == EXIT_MIGRATED, "the source exits 16 after the migration")
        check(closed(held), "the client connected on the source sees its socket closed")
        held.close()
        dst.wait_for(rf"^vsock: transport reset \(cid {CID}\)$", 60)
        accept_hello(dlisten, f"hello again from cid {CID}\n", dst)
        echo(duds, b"ping after the migration\n")
        with connect(duds, 1234) as s:
            check(read_line(s).startswith("OK "), "a last connection")
            s.sendall(b"quit\n")
            dst.expect_pass("vsock")
    finally:
        dst.kill()
    dlisten.close()


harness.main(test)
