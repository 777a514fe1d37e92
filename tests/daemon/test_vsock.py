"""test_vsock.py: a VM defined with "vsock" (cella vm create --vsock) gets
a virtio-vsock whose host side is a Unix socket cellad makes in its run
directory, shown as vsock.uds_path by the API and `cella vm show`. Under
cellad's sandbox (the worker can neither create nor connect sockets): a
host client's CONNECT reaches the guest's echo listener through that
socket, and the guest's own connection to host port 5000 reaches the
listener at uds_path_5000 through cellad's relay. Bad "vsock" values are
400s naming the field."""

import os
import socket
import time

from cellad import Daemon, TestFailure, check, main


def read_line(s, timeout=60):
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            break
        buf += c
    return buf.decode()


def test(args):
    with Daemon(args) as d:
        kernel = args["guests"]["vsock"]
        d.cli("vm", "create", "v1", "--kernel", kernel, "--memory", "64", "--cmdline",
              "listen=1234 connect=5000", "--vsock")
        vs = d.vm("v1")["vsock"]
        check(vs["cid"] == 3 and vs["uds_path"] == os.path.join(d.run, d.vm("v1")["uuid"] + ".vsock"),
              f"definition has vsock {vs}")
        show = d.cli("vm", "show", "v1").stdout
        check(vs["uds_path"] in show, "cella vm show names the socket")

        for bad, field in (({"cid": 2}, "vsock.cid"), ({"cid": 3, "port": 1}, "vsock"),
                           ("yes", "vsock"), ({"cid": 1 << 32}, "vsock.cid")):
            r = d.request("PATCH", "/v1/vms/v1", {"vsock": bad})
            check(r.status == 400 and r.json["error"]["field"] == field,
                  f"vsock {bad!r} refused naming {field}: {r.status} {r.body}")

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(vs["uds_path"] + "_5000")
        listener.listen(4)
        try:
            d.action("v1", "start")
            d.wait_console("v1", "vsock: ready cid 3", timeout=60)
            # The guest's connection, connected by cellad's relay.
            listener.settimeout(60)
            c, _ = listener.accept()
            with c:
                line = read_line(c)
            check(line == "hello from cid 3\n", f"guest to host port 5000: {line!r}")
            # A host client through the worker's listening socket.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(vs["uds_path"])
                s.sendall(b"CONNECT 1234\n")
                ok = read_line(s)
                check(ok.startswith("OK "), f"CONNECT answered {ok!r}")
                s.sendall(b"ping through cellad\n")
                got = b""
                s.settimeout(60)
                while len(got) < 20:
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    got += chunk
                check(got == b"ping through cellad\n", f"echoed {got!r}")
                m = d.get("/v1/vms/v1/metrics").json.get("vsock") or {}
                check(m.get("connections", 0) >= 1 and m.get("malformed") == 0 and
                      m.get("guest_connects") == 1, f"metrics vsock {m}")
                text = d.get("/metrics").body
                check('cella_vm_vsock_malformed_total{vm="v1"} 0' in text and
                      'cella_vm_vsock_connections{vm="v1"} ' in text,
                      "Prometheus vsock series")
                s.sendall(b"quit\n")
            d.wait_state("v1", ("stopped", "crashed"), timeout=60)
            check("PASS vsock" in d.console("v1"), "the guest passed")
        finally:
            listener.close()
            if d.vm("v1")["state"] in ("running", "paused"):
                d.action("v1", "stop", {"timeout_s": 0}, expect=202)


if __name__ == "__main__":
    main(test)
