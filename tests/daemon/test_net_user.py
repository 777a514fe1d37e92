#!/usr/bin/env python3
"""test_net_user.py: user-mode NICs through passt (docs/networking-user.md).

- `cella vm create --net user,forward=tcp:HOSTPORT:7` stores the NIC; at
  start cellad runs one passt for it (its pid file in the run dir); the
  tcpecho guest gets an address from passt's DHCP, ARPs the gateway, and a
  host connection to 127.0.0.1:HOSTPORT gets the guest's echo;
- passt is gone once the VM stopped, and once its worker was killed with
  SIGKILL;
- refusals: port 0 and > 65535, a host port twice (in one NIC and across
  two), a forward without "user", a user NIC with a tap, a host port in use
  (409), and passt missing (503 naming the Debian package)."""
import json
import os
import signal
import socket
import time

from cellad import Daemon, check, log, main, poll


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(d, body, status, field, text=""):
    r = d.post("/v1/vms", body)
    err = r.json.get("error", {}) if r.body else {}
    check(r.status == status and err.get("field") == field and text in err.get("message", ""),
          f"create {json.dumps(body.get('nics'))} -> {status} on {field} "
          f"(got {r.status}: {err.get('field')}: {err.get('message')})")


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def passt_pid(d, name):
    path = os.path.join(d.run, d.vm(name)["uuid"] + ".passt.0")

    def read():
        try:
            with open(path) as f:
                return int(f.read().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
    return poll(f"{path}", read), path


def echo_through(port, line):
    deadline = time.monotonic() + 60
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # passt binds its forwards as it starts
    with c:
        c.sendall(line)
        got = b""
        while not got.endswith(b"\n"):
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
    return got


def test_refusals(d, kernel):
    def body(nics):
        return {"name": "bad", "kernel": kernel, "nics": nics}
    refused(d, body([{"user": True, "forward": ["tcp:0:7"]}]), 400, "nics[0].forward",
            "1 to 65535")
    refused(d, body([{"user": True, "forward": ["tcp:65536:7"]}]), 400, "nics[0].forward",
            "1 to 65535")
    refused(d, body([{"user": True, "forward": ["tcp:8080:70000"]}]), 400, "nics[0].forward")
    refused(d, body([{"user": True, "forward": ["sctp:8080:80"]}]), 400, "nics[0].forward")
    refused(d, body([{"user": True, "forward": ["tcp:8080:80", "tcp:8080:81"]}]), 400,
            "nics[0].forward", "twice")
    refused(d, body([{"user": True, "forward": ["tcp:8080:80"]},
                     {"user": True, "forward": ["udp:8080:80", "tcp:8080:81"]}]), 400,
            "nics[1].forward", "nics[0]")
    refused(d, body([{"tap": "t0", "forward": ["tcp:8080:80"]}]), 400, "nics[0].forward")
    refused(d, body([{"user": True, "tap": "t0"}]), 400, "nics[0].user")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        refused(d, body([{"user": True, "forward": [f"tcp:{port}:80"]}]), 409,
                "nics[0].forward", "in use")
    p = d.cli("vm", "create", "bad", "--kernel", kernel, "--net", "user,forward=tcp:0:7",
              expect=None)
    check(p.returncode != 0 and "nics[0].forward" in p.stderr, f"CLI refusal: {p.stderr.strip()}")


def test(args):
    kernel = args["guests"]["tcpecho"]
    with Daemon(args) as d:
        test_refusals(d, kernel)
        port = free_port()
        d.cli("vm", "create", "u1", "--kernel", kernel, "--memory", "64", "--cmdline",
              "port=7 lines=1", "--net", f"user,forward=tcp:{port}:7")
        check(d.vm("u1")["nics"] == [{"user": True, "forward": [f"tcp:{port}:7"]}],
              f"the NIC is stored: {d.vm('u1')['nics']}")
        d.action("u1", "start")
        out = d.wait_console("u1", "tcpecho: listening on port 7", timeout=120)
        check("ok: DHCP ack: address" in out and "ok: ARP reply from the gateway" in out,
              "the guest got its address from passt's DHCP and ARPed the gateway")
        pid, pidfile = passt_pid(d, "u1")
        check(pid_alive(pid), f"passt {pid} runs for the VM")
        got = echo_through(port, b"hello cellad\n")
        check(got == b"echo: hello cellad\n", f"127.0.0.1:{port} -> guest echo ({got!r})")
        d.wait_console("u1", "PASS tcpecho", timeout=60)
        d.wait_state("u1", ("stopped", "crashed"), timeout=60)
        poll("passt to end with the VM", lambda: not pid_alive(pid))
        check(not os.path.exists(pidfile), "passt gone after the VM stopped, pid file removed")

        # SIGKILL of the worker: passt goes too.
        d.action("u1", "start")
        d.wait_console("u1", "tcpecho: listening on port 7", timeout=120)
        pid, pidfile = passt_pid(d, "u1")
        os.kill(d.vm("u1")["pid"], signal.SIGKILL)
        d.wait_state("u1", ("stopped", "crashed"), timeout=60)
        poll("passt to end after the worker's SIGKILL", lambda: not pid_alive(pid))
        poll("the pid file to go", lambda: not os.path.exists(pidfile))
        check(True, "passt gone after kill -9 of the worker")

        # Two user NICs: a passt each; a host port taken since the create
        # refuses the start (409) and leaves no passt behind.
        p1, p2 = free_port(), free_port()
        d.define("u2", "tcpecho", "port=7 wait=60000",
                 nics=[{"user": True, "forward": [f"tcp:{p1}:7"]},
                       {"user": True, "forward": [f"tcp:{p2}:7"]}])
        d.action("u2", "start")
        d.wait_console("u2", "tcpecho: listening on port 7", timeout=120)
        uuid = d.vm("u2")["uuid"]
        pids = [passt_pid(d, "u2")[0]]
        pidfile1 = os.path.join(d.run, uuid + ".passt.1")
        poll("the second NIC's passt", lambda: os.path.exists(pidfile1))
        with open(pidfile1) as f:
            pids.append(int(f.read().split()[0]))
        check(len(set(pids)) == 2 and all(pid_alive(p) for p in pids),
              f"one passt per user NIC: {pids}")
        d.action("u2", "kill")
        d.wait_state("u2", ("stopped", "crashed"), timeout=60)
        poll("both passts to end", lambda: not any(pid_alive(p) for p in pids))
        check(True, "both passts ended with the VM")
        with socket.socket() as busy:
            busy.bind(("0.0.0.0", p2))
            busy.listen(1)
            r = d.post("/v1/vms/u2/start")
            err = r.json.get("error", {}) if r.body else {}
            check(r.status == 409 and err.get("field") == "nics[1].forward",
                  f"start with a host port taken -> 409 on nics[1].forward "
                  f"(got {r.status}: {err.get('message')})")
        check(not any(f.startswith(uuid + ".passt") for f in os.listdir(d.run)),
              "the refused start left no passt pid file")
        check(d.vm("u2")["state"] in ("stopped", "crashed"), "the VM stays stopped")

        # cellad restarts: passt runs on with the VM, the new cellad adopts
        # it from its pid file and stops it with the VM.
        d.action("u1", "start")
        d.wait_console("u1", "tcpecho: listening on port 7", timeout=120)
        pid, pidfile = passt_pid(d, "u1")
        d.kill9()
        check(pid_alive(pid), "passt survives cellad's death")
        d.start()
        poll("the adoption line", lambda: f"nics[0]: passt {pid} adopted" in d.log())
        check(d.vm("u1")["state"] == "running" and pid_alive(pid),
              "the new cellad adopted the VM and its passt")
        got = echo_through(port, b"after the restart\n")
        check(got == b"echo: after the restart\n", f"the forward still works ({got!r})")
        d.wait_state("u1", ("stopped", "crashed"), timeout=60)
        poll("the adopted passt to end with the VM", lambda: not pid_alive(pid))
        poll("its pid file to go", lambda: not os.path.exists(pidfile))
        check(True, "the adopted passt ended with the VM")
    # passt missing: a clear refusal naming the package.
    with Daemon(args, config={"passt": "/nonexistent/passt"}) as d:
        refused(d, {"name": "np", "kernel": kernel, "nics": [{"user": True}]}, 503,
                "nics[0].user", "Debian package passt")
    log("done")


main(test)
