"""test_malformed.py: a table of malformed requests. Each must get the
documented 4xx with a JSON error naming the field and the reason; none may
crash cellad or change any state (the definitions and the running VM are
compared before and after)."""

import json
import socket

from cellad import Daemon, TestFailure, check, log, main

J = {"Content-Type": "application/json"}


def twelve_files():
    import tempfile
    d = tempfile.mkdtemp(prefix="cella-malformed-")
    paths = []
    for i in range(12):
        p = f"{d}/d{i}.img"
        with open(p, "wb") as f:
            f.truncate(1 << 20)
        paths.append(p)
    return paths


def cases(kernel, missing):
    good = {"name": "new1", "kernel": kernel}

    def vm(**kw):
        d = dict(good)
        d.update(kw)
        return d

    # (method, path, body (dict -> JSON, bytes -> raw), headers, status, field or None)
    return [
        # Routes and methods.
        ("GET", "/v2", None, {}, 404, "path"),  # (GET / redirects to the web console)
        ("GET", "/v2/vms", None, {}, 404, "path"),
        ("GET", "/v1/vms/", None, {}, 404, "path"),
        ("GET", "/v1/vms/base/frobnicate", None, {}, 404, "path"),
        ("GET", "/v1/vms/base/start/extra", None, {}, 404, "path"),
        ("PUT", "/v1/vms", None, {}, 405, "method"),
        ("DELETE", "/v1/vms", None, {}, 405, "method"),
        ("GET", "/v1/vms/base/start", None, {}, 405, "method"),
        ("PUT", "/v1/vms/base", None, {}, 405, "method"),
        ("POST", "/v1/host", None, {}, 405, "method"),
        ("DELETE", "/metrics", None, {}, 405, "method"),
        ("POST", "/v1/events", None, {}, 405, "method"),
        # Names in paths.
        ("GET", "/v1/vms/no-such-vm", None, {}, 404, "name"),
        ("POST", "/v1/vms/no-such-vm/start", None, {}, 404, "name"),
        ("DELETE", "/v1/vms/no-such-vm", None, {}, 404, "name"),
        ("GET", "/v1/vms/-bad", None, {}, 400, "name"),
        ("GET", "/v1/vms/" + "a" * 70, None, {}, 400, "name"),
        ("GET", "/v1/vms/bad%20name", None, {}, 400, "name"),
        # Bodies that are not JSON objects.
        ("POST", "/v1/vms", b"", J, 400, ""),
        ("POST", "/v1/vms", b"{", J, 400, ""),
        ("POST", "/v1/vms", b"{\"name\": }", J, 400, ""),
        ("POST", "/v1/vms", b"[1, 2]", J, 400, ""),
        ("POST", "/v1/vms", b"\"text\"", J, 400, ""),
        ("POST", "/v1/vms", b"null", J, 400, ""),
        ("POST", "/v1/vms", b"\xff\xfe\x00", J, 400, ""),
        ("POST", "/v1/vms", b"{\"name\": \"a\", \"name\": \"b\"}", J, 400, ""),
        ("POST", "/v1/vms", json.dumps(good).encode(), {"Content-Type": "text/plain"}, 415,
         "Content-Type"),
        ("POST", "/v1/vms", b"x" * (2 << 20), J, 413, ""),
        # Create: required fields, types, ranges, unknown fields.
        ("POST", "/v1/vms", {"kernel": kernel}, J, 400, "name"),
        ("POST", "/v1/vms", {"name": "n1"}, J, 400, "kernel"),
        ("POST", "/v1/vms", vm(name=5), J, 400, "name"),
        ("POST", "/v1/vms", vm(name=""), J, 400, "name"),
        ("POST", "/v1/vms", vm(name="has space"), J, 400, "name"),
        ("POST", "/v1/vms", vm(name="x" * 64), J, 400, "name"),
        ("POST", "/v1/vms", vm(name="base"), J, 409, "name"),
        ("POST", "/v1/vms", vm(cpus="2"), J, 400, "cpus"),
        ("POST", "/v1/vms", vm(cpus=0), J, 400, "cpus"),
        ("POST", "/v1/vms", vm(cpus=33), J, 400, "cpus"),
        ("POST", "/v1/vms", vm(cpus=1.5), J, 400, "cpus"),
        ("POST", "/v1/vms", vm(cpus=-1), J, 400, "cpus"),
        ("POST", "/v1/vms", vm(memory_mib=4), J, 400, "memory_mib"),
        ("POST", "/v1/vms", vm(memory_mib=1 << 40), J, 400, "memory_mib"),
        ("POST", "/v1/vms", vm(memory_mib=None), J, 400, "memory_mib"),
        ("POST", "/v1/vms", vm(kernel="relative/path"), J, 400, "kernel"),
        ("POST", "/v1/vms", vm(kernel=missing), J, 400, "kernel"),
        ("POST", "/v1/vms", vm(kernel="/"), J, 400, "kernel"),
        ("POST", "/v1/vms", vm(kernel=kernel + ",ro"), J, 400, "kernel"),
        ("POST", "/v1/vms", vm(initrd=missing), J, 400, "initrd"),
        ("POST", "/v1/vms", vm(cmdline=7), J, 400, "cmdline"),
        ("POST", "/v1/vms", vm(cmdline="x" * 5000), J, 400, "cmdline"),
        ("POST", "/v1/vms", vm(autostart="yes"), J, 400, "autostart"),
        ("POST", "/v1/vms", vm(rng=1), J, 400, "rng"),
        ("POST", "/v1/vms", vm(restart_policy="sometimes"), J, 400, "restart_policy"),
        ("POST", "/v1/vms", vm(cpu_weight=0), J, 400, "cpu_weight"),
        ("POST", "/v1/vms", vm(cpu_weight=10001), J, 400, "cpu_weight"),
        ("POST", "/v1/vms", vm(cpu_max=0), J, 400, "cpu_max"),
        ("POST", "/v1/vms", vm(cpu_max=101), J, 400, "cpu_max"),
        ("POST", "/v1/vms", vm(uuid="not-a-uuid"), J, 400, "uuid"),
        ("POST", "/v1/vms", vm(colour="blue"), J, 400, "colour"),
        ("POST", "/v1/vms", vm(disks={}), J, 400, "disks"),
        ("POST", "/v1/vms", vm(disks=["/tmp/x"]), J, 400, "disks[0]"),
        ("POST", "/v1/vms", vm(disks=[{"readonly": True}]), J, 400, "disks[0].path"),
        ("POST", "/v1/vms", vm(disks=[{"path": missing}]), J, 400, "disks[0].path"),
        ("POST", "/v1/vms", vm(disks=[{"path": kernel, "readonly": "no"}]), J, 400,
         "disks[0].readonly"),
        ("POST", "/v1/vms", vm(disks=[{"path": kernel, "id": "x" * 21}]), J, 400, "disks[0].id"),
        ("POST", "/v1/vms", vm(disks=[{"path": kernel, "cache": "none"}]), J, 400,
         "disks[0].cache"),
        ("POST", "/v1/vms", vm(disks=[{"path": kernel}] * 17), J, 400, "disks"),
        ("POST", "/v1/vms", vm(nics=[{}]), J, 400, "nics[0].tap"),
        ("POST", "/v1/vms", vm(nics=[{"tap": "t0", "mac": "zz:zz"}]), J, 400, "nics[0].mac"),
        # More virtio devices than interrupt lines: refused at definition, as
        # cella-vm refuses them at start (19 lines, GSI 5-23).
        ("POST", "/v1/vms", vm(disks=[{"path": p, "readonly": True} for p in twelve_files()],
                               nics=[{"tap": f"t{i}"} for i in range(8)]), J, 400, "nics"),
        # The same rule as cella-vm's (conf/net.h): a multicast MAC cannot be a NIC's.
        ("POST", "/v1/vms", vm(nics=[{"tap": "t0", "mac": "01:00:5e:00:00:01"}]), J, 400,
         "nics[0].mac"),
        ("POST", "/v1/vms", vm(nics=[{"tap": "a" * 16}]), J, 400, "nics[0].tap"),
        ("POST", "/v1/vms", vm(nics=[{"tap": "t/0"}]), J, 400, "nics[0].tap"),
        # Change.
        ("PATCH", "/v1/vms/base", {}, J, 400, ""),
        ("PATCH", "/v1/vms/base", {"name": "renamed"}, J, 400, "name"),
        ("PATCH", "/v1/vms/base", {"uuid": "00000000-0000-0000-0000-000000000000"}, J, 400,
         "uuid"),
        ("PATCH", "/v1/vms/base", {"memory_mib": 256}, J, 409, "memory_mib"),
        ("PATCH", "/v1/vms/base", {"cpu_weight": "high"}, J, 400, "cpu_weight"),
        ("PATCH", "/v1/vms/base", {"cpu_weight": 300, "cpus": 0}, J, 400, "cpus"),
        ("PATCH", "/v1/vms/base", {"bogus": 1}, J, 400, "bogus"),
        ("PATCH", "/v1/vms/base", b"[]", J, 400, ""),
        # Actions: bodies, out-of-order requests.
        ("POST", "/v1/vms/base/start", None, {}, 409, "state"),
        ("POST", "/v1/vms/base/resume", None, {}, 409, "state"),
        ("POST", "/v1/vms/base/pause", {"now": True}, J, 400, "now"),
        ("POST", "/v1/vms/base/stop", {"timeout_s": -1}, J, 400, "timeout_s"),
        ("POST", "/v1/vms/base/stop", {"timeout_s": "soon"}, J, 400, "timeout_s"),
        ("POST", "/v1/vms/base/stop", {"timeout_s": 99999}, J, 400, "timeout_s"),
        ("POST", "/v1/vms/base/stop", {"force": True}, J, 400, "force"),
        ("POST", "/v1/vms/base/kill", b"{oops", J, 400, ""),
        ("DELETE", "/v1/vms/base", None, {}, 409, "state"),
        ("POST", "/v1/vms/idle/stop", None, {}, 409, "state"),
        ("POST", "/v1/vms/idle/pause", None, {}, 409, "state"),
        ("POST", "/v1/vms/idle/console", b"hello\n", {}, 409, "state"),
        ("POST", "/v1/vms/base/console", b"", {}, 400, ""),
        # Query parameters.
        ("GET", "/v1/vms/base/console?history=-5", None, {}, 400, "history"),
        ("GET", "/v1/vms/base/console?history=lots", None, {}, 400, "history"),
        ("GET", "/v1/vms/base/console?follow=maybe", None, {}, 400, "follow"),
        ("GET", "/v1/vms/base/console?colour=1", None, {}, 400, "colour"),
        ("GET", "/v1/events?since=x", None, {}, 400, "since"),
        ("GET", "/v1/events?vm=bad%20name", None, {}, 400, "vm"),
        ("GET", "/v1/vms?page=2", None, {}, 400, "page"),
    ]


def raw_garbage(d):
    """Bytes that are not HTTP at all: cellad must shrug them off."""
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"FOO /v1/vms HTTP/9.9\r\n\r\n",
                 b"GET /v1/vms HTTP/1.1\r\nContent-Length: -4\r\n\r\n"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(d.sock)
        s.sendall(junk)
        try:
            s.recv(4096)
        except OSError:
            pass
        s.close()
    log("ok: raw garbage on the socket")


def tcp_token(args):
    """The TCP listener (HTTPS): every request needs the bearer token."""
    import http.client
    import os
    import shutil
    import ssl
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "security"))
    from tlsutil import make_pki
    if not shutil.which("openssl"):
        log("SKIP (loud): the TCP token check needs 'openssl' for the HTTPS certificates")
        return
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with Daemon(args, name="cellad-tcp") as d:
        d.stop()
        token = os.path.join(d.dir, "token")
        with open(token, "w") as f:
            f.write("s3cret-token-0123456789\n")
        make_pki(d.dir)
        d.config["tcp"] = {"address": "127.0.0.1", "port": port, "token_file": token}
        d.config["tls"] = {"cert": f"{d.dir}/server.pem", "key": f"{d.dir}/server.key",
                           "ca": f"{d.dir}/ca.pem"}
        d.start()
        ctx = ssl.create_default_context(cafile=f"{d.dir}/ca.pem")
        for hdr, want in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                          ({"Authorization": "Basic s3cret-token-0123456789"}, 401),
                          ({"Authorization": "Bearer s3cret-token-0123456789x"}, 401),
                          ({"Authorization": "Bearer s3cret-token-0123456789"}, 200)):
            c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
            c.request("GET", "/v1/vms", headers=hdr)
            r = c.getresponse()
            body = r.read()
            if r.status != want or (want == 401 and b"Authorization" not in body):
                raise TestFailure(f"TCP {hdr}: {r.status} {body!r}")
            c.close()
        log("ok: TCP listener refuses missing/wrong tokens (401) and accepts the right one")


def snapshot(d):
    vms = d.get("/v1/vms").json["vms"]
    for v in vms:
        v.pop("uptime_ms", None)
    return json.dumps(vms, sort_keys=True)


def test(args):
    with Daemon(args) as d:
        kernel = args["guests"]["memwriter"]
        d.define("base", "memwriter", "rounds=0 mib=4")
        d.define("idle", "hello")
        d.action("base", "start")
        before = snapshot(d)
        table = cases(kernel, d.dir + "/missing.elf")
        check(len(table) >= 50, f"{len(table)} malformed requests in the table")
        failures = []
        for method, path, body, headers, status, field in table:
            kw = {"headers": headers}
            if isinstance(body, (bytes, bytearray)):
                kw["raw"] = body
            elif body is not None:
                kw["body"] = body
            r = d.request(method, path, **kw)
            err = (r.json or {}).get("error") if isinstance(r.json, dict) else None
            ok = (r.status == status and isinstance(err, dict) and err.get("reason")
                  and (field is None or err.get("field") == field))
            if not ok:
                failures.append(f"{method} {path} {str(body)[:60]}: want {status} field "
                                f"{field!r}, got {r}")
            else:
                print(f"  {r.status} {method} {path[:50]} -> {err['field']}: {err['reason'][:70]}")
        raw_garbage(d)
        if failures:
            raise TestFailure("\n".join(failures))
        log(f"ok: all {len(table)} malformed requests refused with the right status and field")
        check(d.proc.poll() is None, "cellad is still running")
        check(snapshot(d) == before, "no definition or state changed")
        check(d.vm("base")["state"] == "running", "the running VM is untouched")
    tcp_token(args)


if __name__ == "__main__":
    main(test)
