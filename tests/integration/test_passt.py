#!/usr/bin/env python3
"""it-passt: cella-vm's NIC on passt's stream socket (--net passt=fd:N). The
guest gets its address from passt's DHCP, ARPs the gateway, and a host
connection to 127.0.0.1:HOSTPORT, forwarded by passt to the guest's port 7,
gets the guest's echo. Then passt is killed: the worker logs the cut stream
and the link goes down, and the worker keeps running (no crash)."""
import os
import shutil
import socket
import subprocess
import time

import harness

GUEST_PORT = 7


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_retry(port, deadline):
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test(args):
    passt = shutil.which("passt")
    if not passt:
        raise harness.TestFailure("passt is not installed (Debian package passt; "
                                  "scripts/setup.sh installs it)")
    host_port = free_port()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    p = subprocess.Popen([passt, "--foreground", "--stderr", "--quiet", "--fd",
                          str(theirs.fileno()), "-t", f"127.0.0.1/{host_port}:{GUEST_PORT}", "-u", "none",
                          "--no-map-gw"],
                         pass_fds=[theirs.fileno()], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    theirs.close()
    try:
        g = harness.run_guest(args["guests"]["tcpecho"], f"port={GUEST_PORT} lines=2",
                              cella_vm=args["cella_vm"],
                              extra=["--net", f"passt=fd:{ours.fileno()},mac=52:54:00:12:34:56"])
        g.start(pass_fds=[ours.fileno()])
        ours.close()  # the worker holds it: passt ends when the worker does
        try:
            g.wait_for(r"^ok: DHCP ack: address \d+\.\d+\.\d+\.\d+ gateway", timeout=60)
            g.wait_for(r"^ok: ARP reply from the gateway", timeout=30)
            g.wait_for(rf"^tcpecho: listening on port {GUEST_PORT}$", timeout=30)
            c = connect_retry(host_port, time.monotonic() + 30)
            with c:
                got = b""
                for line in (b"hello through passt\n", b"second line\n"):
                    c.sendall(line)
                    want = b"echo: " + line
                    deadline = time.monotonic() + 30
                    while not got.endswith(want):
                        if time.monotonic() > deadline:
                            raise harness.TestFailure(f"no echo of {line!r}: got {got!r}")
                        c.settimeout(max(0.1, deadline - time.monotonic()))
                        chunk = c.recv(4096)
                        if not chunk:
                            raise harness.TestFailure(f"connection closed; got {got!r}")
                        got += chunk
                print(f"[it] host got {got!r} through 127.0.0.1:{host_port}", flush=True)
            g.wait_for(r"^ok: echoed 2 line\(s\) over TCP port 7$", timeout=30)
            g.expect_pass("tcpecho")
        finally:
            g.kill()
        # The worker is gone: passt (--fd implies --one-off) must end too.
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise harness.TestFailure("passt outlived the worker")
        print(f"[it] passt ended with the worker (status {p.returncode})", flush=True)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    passt_dies(args, passt)


def passt_dies(args, passt):
    """kill -9 of passt under a running guest: the worker says the stream was
    cut, takes the link down and runs on."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    p = subprocess.Popen([passt, "--foreground", "--quiet", "--fd", str(theirs.fileno()),
                          "-t", "none", "-u", "none"],
                         pass_fds=[theirs.fileno()], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    theirs.close()
    try:
        g = harness.run_guest(args["guests"]["tcpecho"], f"port={GUEST_PORT} wait=60000",
                              cella_vm=args["cella_vm"],
                              extra=["--net", f"passt=fd:{ours.fileno()}"])
        g.start(pass_fds=[ours.fileno()])
        ours.close()
        try:
            g.wait_for(rf"^tcpecho: listening on port {GUEST_PORT}$", timeout=60)
            p.kill()
            p.wait()
            deadline = time.monotonic() + 30
            while not any("passt stream closed by passt; link down" in l
                          for l in g.stderr_lines):
                if time.monotonic() > deadline:
                    raise harness.TestFailure(f"no link-down line: {g.stderr_lines}")
                time.sleep(0.05)
            if g.proc.poll() is not None:
                raise harness.TestFailure(f"the worker exited ({g.proc.returncode}) "
                                          "when passt died")
            print("[it] passt killed: link down, worker still running", flush=True)
        finally:
            g.kill()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


harness.main(test)
