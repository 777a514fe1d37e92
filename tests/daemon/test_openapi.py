"""test_openapi.py: docs/api/openapi.json against the server. Every
documented route exists and answers only with documented status codes (for
success and failure requests alike); every route in cellad's table is
documented; success bodies carry their schema's required properties."""

import json
import os
import re

from cellad import Daemon, TestFailure, check, log, main

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def server_routes():
    """cellad's route table, read from its source (the single place routes live)."""
    src = open(os.path.join(ROOT, "daemon", "api", "routes.c")).read()
    table = src[src.index("static const struct route routes[]"):]
    return set(re.findall(r'\{\s*"([A-Z]+)",\s*"(/[^"]*)"', table))


def required_of(spec, schema):
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema.get("required", [])


def test(args):
    spec = json.load(open(os.path.join(ROOT, "docs", "api", "openapi.json")))
    check(spec["openapi"].startswith("3."), "OpenAPI 3 document")
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    server = server_routes()
    check(server == documented, f"server routes == documented routes ({len(server)}); "
          f"undocumented: {server - documented}, missing: {documented - server}")

    seen = {}

    with Daemon(args) as d:
        def call(method, template, name=None, sub=None, **kw):
            path = template.replace("{name}", name or "x")
            path = re.sub(r"\{(disk|checkpoint|host|file|vm|user|switch|nic)\}", sub or "x", path)
            r = d.request(method, path, **kw)
            seen.setdefault((method, template), []).append(r)
            return r

        kernel = args["guests"]["echo"]
        j = {"Content-Type": "application/json"}
        call("GET", "/v1/host")
        call("GET", "/v1/vms")
        call("GET", "/v1/vms?bad=1")
        call("POST", "/v1/vms", body={"name": "oa", "kernel": kernel, "cmdline": ""})
        call("POST", "/v1/vms", body={"name": "oa", "kernel": kernel})
        call("POST", "/v1/vms", body={"name": "oa2"})
        call("POST", "/v1/vms", raw=b"{}", headers={"Content-Type": "text/plain"})
        call("GET", "/v1/vms/{name}", "oa")
        call("GET", "/v1/vms/{name}", "nope")
        call("PATCH", "/v1/vms/{name}", "oa", body={"cpus": 2})
        call("PATCH", "/v1/vms/{name}", "oa", body={"cpus": "two"})
        call("PATCH", "/v1/vms/{name}", "nope", body={"cpus": 2})
        call("POST", "/v1/vms/{name}/pause", "oa")
        call("POST", "/v1/vms/{name}/start", "oa")
        call("POST", "/v1/vms/{name}/start", "oa")
        call("POST", "/v1/vms/{name}/start", "nope")
        bl = "/v1/vms/{name}/balloon"
        call("PUT", bl, "oa", body={"target_mib": 4})          # no balloon: 409
        call("PUT", bl, "oa", body={"target_mib": -1})
        call("PUT", bl, "oa", raw=b"{}", headers={"Content-Type": "text/plain"})
        call("PUT", bl, "nope", body={"target_mib": 4})
        call("POST", "/v1/vms", body={"name": "ob", "kernel": kernel, "cmdline": "",
                                      "balloon": True})
        call("PUT", bl, "ob", body={"target_mib": 4})          # stopped: 409
        call("POST", "/v1/vms/{name}/start", "ob")
        call("PUT", bl, "ob", body={"target_mib": 4})
        call("PUT", bl, "ob", body={"target_mib": 1 << 20})
        call("POST", "/v1/vms/{name}/stop", "ob", body={"timeout_s": 0})
        d.wait_state("ob", "stopped")
        call("DELETE", "/v1/vms/{name}", "ob")
        call("PATCH", "/v1/vms/{name}", "oa", body={"memory_mib": 64})
        call("DELETE", "/v1/vms/{name}", "oa")
        call("POST", "/v1/vms/{name}/console", "oa", raw=b"hi\n")
        call("POST", "/v1/vms/{name}/console", "oa", raw=b"")
        call("GET", "/v1/vms/{name}/console?follow=false", "oa")
        call("GET", "/v1/vms/{name}/console?follow=nope", "oa")
        call("GET", "/v1/vms/{name}/console", "nope")
        # The console's WebSocket (test_web_console_ws.py speaks it): refusals.
        wsh = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        call("GET", "/v1/vms/{name}/console/ws", "oa")
        call("GET", "/v1/vms/{name}/console/ws", "nope", headers=wsh)
        call("GET", "/v1/events/ws?since=x")
        call("GET", "/v1/vms/{name}/metrics", "oa")
        call("GET", "/v1/vms/{name}/metrics", "nope")
        call("GET", "/v1/vms/{name}/log", "oa")
        call("GET", "/v1/vms/{name}/log?tail=0", "oa")
        call("GET", "/v1/vms/{name}/log", "nope")
        call("GET", "/v1/jobs")
        call("GET", "/v1/jobs?bad=1")
        call("GET", "/metrics")
        call("GET", "/ui")
        call("GET", "/ui/{file}", sub="index.html")
        call("GET", "/ui/{file}", sub="..x")
        # The web console's logins and users (docs/web.md): no TCP listener
        # here, so no sessions; users are admins' (root on the socket).
        call("GET", "/")
        call("GET", "/ui/")
        call("POST", "/v1/session", body={"token": "x"})
        call("GET", "/v1/session")
        call("DELETE", "/v1/session")
        call("POST", "/v1/users", body={"name": "oa-user", "role": "viewer",
                                        "password": "oa password"})
        call("POST", "/v1/users", body={"name": "oa-user", "role": "root",
                                        "password": "oa password"})
        call("POST", "/v1/users", raw=b"{}", headers={"Content-Type": "text/plain"})
        call("GET", "/v1/users")
        call("DELETE", "/v1/users/{user}", sub="oa-user")
        call("DELETE", "/v1/users/{user}", sub="oa-user")
        call("POST", "/v1/vms/{name}/resume", "oa")
        call("POST", "/v1/vms/{name}/pause", "oa")
        call("POST", "/v1/vms/{name}/pause", "oa")
        call("POST", "/v1/vms/{name}/resume", "oa")
        call("POST", "/v1/vms/{name}/reset", "oa")
        call("POST", "/v1/vms/{name}/reset", "oa", body={"hard": True})
        call("POST", "/v1/vms/{name}/save", "oa")
        call("POST", "/v1/vms/{name}/save", "oa")
        call("POST", "/v1/vms/{name}/save", "nope")
        call("DELETE", "/v1/vms/{name}/state", "oa")
        call("DELETE", "/v1/vms/{name}/state", "oa")
        call("POST", "/v1/vms/{name}/start", "oa")
        call("POST", "/v1/vms/{name}/kill", "oa")
        call("POST", "/v1/vms/{name}/kill", "oa")
        call("POST", "/v1/vms/{name}/stop", "oa")
        call("POST", "/v1/vms/{name}/start", "oa")
        call("POST", "/v1/vms/{name}/stop", "oa", body={"timeout_s": "x"})
        call("POST", "/v1/vms/{name}/stop", "oa", body={"timeout_s": 0})
        d.wait_state("oa", "stopped")
        call("POST", "/v1/vms/{name}/console", "oa", raw=b"late\n")
        call("GET", "/v1/events?since=abc")
        # Switches (test_switch.py makes real ones in a namespace): reads and
        # refusals only, so that nothing is made on this host.
        call("GET", "/v1/switches")
        call("POST", "/v1/switches", body={"name": "oa-sw", "type": "hub"})
        call("POST", "/v1/switches", raw=b"{}", headers={"Content-Type": "text/plain"})
        call("GET", "/v1/switches/{switch}", sub="nope")
        call("DELETE", "/v1/switches/{switch}", sub="nope")
        call("PATCH", "/v1/vms/{name}/nics/{nic}", "oa", sub="0", body={"policy": {}})
        call("PATCH", "/v1/vms/{name}/nics/{nic}", "oa", sub="x", body={"policy": {}})
        call("DELETE", "/v1/vms/{name}", "oa")
        call("DELETE", "/v1/vms/{name}", "oa")

        # Disks and checkpoints, on a stopped VM with a raw disk.
        img = os.path.join(d.dir, "od.img")
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        call("POST", "/v1/vms", body={"name": "od", "kernel": kernel, "cmdline": "",
                                      "disks": [{"path": img, "id": "d0"}]})
        dk = "/v1/vms/{name}/disks/{disk}"
        call("PATCH", dk, "od", "d0", body={"qos": {"iops": 100}})
        call("PATCH", dk, "od", "d0", body={"qos": {"iops": -1}})
        call("PATCH", dk, "od", "d0", raw=b"{}", headers={"Content-Type": "text/plain"})
        call("PATCH", dk, "od", "nope", body={"qos": {}})
        cps, cp = "/v1/vms/{name}/checkpoints", "/v1/vms/{name}/checkpoints/{checkpoint}"
        call("GET", cps, "od")
        call("GET", cps, "nope")
        call("POST", cps, "od", body={"name": "c1", "kind": "production"})
        call("POST", cps, "od", body={"name": "c1"})
        call("POST", cps, "od", body={"name": "c2", "kind": "fast"})
        call("POST", cps, "od", raw=b"{}", headers={"Content-Type": "text/plain"})
        call("POST", cps, "nope", body={"name": "c1"})
        call("POST", cp + "/apply", "od", "c1")
        call("POST", cp + "/apply", "od", "nope")
        call("POST", cp + "/apply", "od", "c1", body={"x": 1})
        call("POST", "/v1/vms/{name}/start", "od")
        call("DELETE", cp, "od", "c1")
        call("POST", "/v1/vms/{name}/kill", "od")
        call("DELETE", cp, "od", "c1")
        call("DELETE", cp, "od", "c1")
        call("DELETE", cp, "od", "c1", body={"x": 1})
        # Peer hosts and moves (one cellad: the destination side is driven
        # by hand, as a source cellad would).
        call("GET", "/v1/hosts")
        call("POST", "/v1/hosts", body={"name": "peer", "url": "https://127.0.0.1:1",
                                        "token": "0123456789abcdef"})
        call("POST", "/v1/hosts", body={"name": "peer", "url": "ftp://x"})
        call("POST", "/v1/hosts", raw=b"{}", headers={"Content-Type": "text/plain"})
        mv = "/v1/vms/{name}/move"
        call("POST", mv, "od", body={})
        call("POST", mv, "od", body={"to": "nope"})
        call("POST", mv, "od", body={"to": "peer"})
        call("POST", mv, "nope", body={"to": "peer"})
        call("POST", mv, "od", raw=b"{}", headers={"Content-Type": "text/plain"})
        call("POST", "/v1/vms/{name}/start", "od")
        call("POST", mv, "od", body={"to": "peer", "quick": True})
        call("POST", "/v1/vms/{name}/kill", "od")
        hp = "/v1/hosts/{host}"
        call("DELETE", hp, sub="peer")
        call("DELETE", hp, sub="peer")
        call("DELETE", hp, sub="-x")
        vmdef = {"name": "oi", "uuid": "6f1c1bde-62a7-4c51-9d55-3a1f8e0c9a11",
                 "kernel": kernel, "cmdline": "", "memory_mib": 16}
        call("POST", "/v1/incoming", body={})
        call("POST", "/v1/incoming", body={"vm": vmdef})
        call("POST", "/v1/incoming", body={"vm": vmdef, "mode": "quick"})
        call("POST", "/v1/incoming", body={"vm": vmdef, "mode": "quick"})
        call("POST", "/v1/incoming", raw=b"{}", headers={"Content-Type": "text/plain"})
        ost = {"Content-Type": "application/octet-stream"}
        call("PUT", "/v1/incoming/{name}/state", "oi", raw=b"not a state file", headers=ost)
        call("PUT", "/v1/incoming/{name}/state", "nope", raw=b"x", headers=ost)
        call("PUT", "/v1/incoming/{name}/state", "oi", raw=b"", headers=ost)
        call("PUT", "/v1/incoming/{name}/state", "oi", raw=b"x" * (17 << 20) + b"x" * (64 << 20),
             headers=ost)
        call("PUT", "/v1/incoming/{name}/disks/{disk}", "oi", "d0", raw=b"x", headers=ost)
        call("PUT", "/v1/incoming/{name}/disks/{disk}", "od", "d0", raw=b"x", headers=ost)
        call("POST", "/v1/incoming/{name}/commit", "od")
        call("POST", "/v1/incoming/{name}/commit", "nope")
        call("POST", "/v1/incoming/{name}/commit", "oi", body={"x": 1})
        call("POST", "/v1/incoming/{name}/commit", "oi")
        call("DELETE", "/v1/incoming/{name}", "oi")
        call("DELETE", "/v1/incoming/{name}", "oi")
        call("DELETE", "/v1/incoming/{name}", "od")
        # Replication, both sides on one cellad (tests/daemon/test_replica.py:
        # between two hosts).
        rp = "/v1/vms/{name}/replica"
        call("GET", rp, "od")
        call("POST", rp, "od", body={})
        call("POST", rp, "od", body={"to": "nope", "interval_ms": 1})
        call("POST", rp, "od", body={"to": "nope"})
        call("DELETE", rp, "od")
        call("POST", rp, "od", body={"to": "nope", "keep_for_s": -1})
        call("POST", rp + "/pause", "od")   # not replicated: 404
        call("POST", rp + "/resume", "nope")
        rdef = {"name": "orep", "uuid": "0c8a40e2-5d2e-4a3b-a3c6-7f0e2b9d1c55",
                "kernel": kernel, "cmdline": "", "memory_mib": 16,
                "disks": [{"path": img, "id": "d0"}]}
        call("GET", "/v1/replicas")
        call("POST", "/v1/replicas", body={})
        call("POST", "/v1/replicas", body={"vm": rdef, "disk_sizes": {"d0": 1 << 20}})
        call("POST", "/v1/replicas", body={"vm": rdef, "disk_sizes": {"d0": 1 << 20}})
        call("GET", "/v1/replicas")
        call("GET", "/v1/replicas/{name}", "orep")
        call("GET", "/v1/replicas/{name}", "nope")
        rs = "/v1/replicas/{name}/disks/{disk}"
        call("PUT", rs, "orep", "d0", raw=b"not a change set", headers=ost)
        call("PUT", rs, "orep", "nope", raw=b"x", headers=ost)
        call("PUT", rs, "nope", "d0", raw=b"x", headers=ost)
        call("PUT", rs, "orep", "d0", raw=b"x" * (3 << 20), headers=ost)
        # Resumable uploads (docs/replica.md): state, a start, a resume, refusals.
        call("GET", rs, "orep", "d0")
        call("GET", rs, "orep", "nope")
        call("PUT", rs + "?id=s1&total=20&offset=0", "orep", "d0", raw=b"0123456789", headers=ost)
        call("GET", rs, "orep", "d0")
        call("PUT", rs + "?id=s1&total=20&offset=15", "orep", "d0", raw=b"x", headers=ost)
        call("PUT", rs + "?id=s2&total=20&offset=10", "orep", "d0", raw=b"x", headers=ost)
        call("PUT", rs + "?id=s1&total=-1&offset=0", "orep", "d0", raw=b"x", headers=ost)
        call("PUT", rs + "?id=s1&total=20&offset=10", "orep", "d0", raw=b"not a change", headers=ost)
        call("PUT", rs + "?id=s1&total=20&offset=10", "orep", "d0", raw=b"0123456789", headers=ost)
        call("PUT", rs + "?bad=1", "orep", "d0", raw=b"x", headers=ost)
        call("POST", "/v1/replicas/{name}/failover", "orep", body={})
        call("POST", "/v1/replicas/{name}/failover", "orep", body={"x": 1})
        call("POST", "/v1/replicas/{name}/failover", "nope")
        call("POST", "/v1/replicas/{name}/failover", "orep", body={"test": "yes"})
        call("DELETE", "/v1/replicas/{name}/test", "orep")
        call("DELETE", "/v1/replicas/{name}/test", "nope")
        # Planned failover and reverse replication (test_replica_planned.py:
        # between two hosts).
        call("POST", rp + "/failover", "od", body={"planned": True})
        call("POST", rp + "/failover", "od", body={"timeout_s": 0})
        call("POST", rp + "/failover", "nope")
        call("POST", rp + "/reverse", "orep")
        call("POST", rp + "/reverse", "od", body={"x": 1})
        call("POST", rp + "/reverse", "nope")
        ad = "/v1/replicas/{name}/adopt"
        call("POST", ad, "od", body={})
        call("POST", ad, "od", body={"from": "x", "uuid": "u", "disk_sizes": {}})
        call("POST", ad, "nope", body={"from": "x", "uuid": "u", "disk_sizes": {}})
        call("DELETE", "/v1/replicas/{name}", "orep")
        call("DELETE", "/v1/replicas/{name}", "orep")
        # A single host is in no pool (tests/pool/test_pool_members.py: in one).
        call("GET", "/v1/pool")
        call("GET", "/v1/pool?x=1")
        call("POST", "/v1/pool/leave")
        call("POST", "/v1/pool", body={})
        call("POST", "/v1/pool", body={"name": "p", "etcd": ["https://127.0.0.1:1"],
                                       "ca_cert": "x", "ca_key": "y"})
        call("POST", "/v1/pool/tokens")
        call("POST", "/v1/pool/join", body={"to": "https://127.0.0.1:1", "token": "bad"})
        call("POST", "/v1/pool/members", body={})
        call("GET", "/v1/pool/ca")
        mh = "/v1/pool/hosts/{host}/maintenance"
        call("POST", mh, sub="h1", body={"state": "on"})
        call("POST", mh, sub="h1", raw=b"{}", headers={"Content-Type": "text/plain"})
        call("POST", "/v1/pool/balance", body={"dry_run": True})
        call("POST", "/v1/pool/vms/{vm}/load", sub="6f1c1bde-62a7-4c51-9d55-3a1f8e0c9a11")
        # Images (tests/daemon/test_images.py: with storage locations): this
        # cellad has none, so the changes are refused.
        call("GET", "/v1/images")
        call("GET", "/v1/images?location=nope")
        call("POST", "/v1/images", body={"location": "nope", "name": "a.qcow2", "size": "1M"})
        call("POST", "/v1/images", raw=b"{}", headers={"Content-Type": "text/plain"})
        for sfx in ("/resize", "/convert", "/backup"):
            call("POST", "/v1/images/{file}" + sfx, sub="a.qcow2", body={"size": 1 << 20,
                                                                         "target": "b"})
        call("GET", "/v1/images/{file}", sub="a.qcow2")
        call("DELETE", "/v1/images/{file}", sub="a.qcow2")
        # The event stream never ends by itself: read its head only.
        evs = d.events(since=0)
        seen.setdefault(("GET", "/v1/events"), []).append(type("R", (), {
            "status": 200, "json": evs[0] if evs else None, "body": ""})())

    failures = []
    for (method, template), rs in sorted(seen.items()):
        template_path = template.split("?")[0]
        op = spec["paths"][template_path][method.lower()]
        for r in rs:
            doc = op["responses"].get(str(r.status))
            if doc is None:
                failures.append(f"{method} {template}: status {r.status} not documented: {r}")
                continue
            content = doc.get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema and r.json is not None:
                missing = [k for k in required_of(spec, schema) if k not in r.json]
                if missing:
                    failures.append(f"{method} {template} {r.status}: missing {missing}")
        print(f"  {method:6} {template:36} {sorted({r.status for r in rs})}")
    untested = documented - {(m, t.split("?")[0]) for m, t in seen}
    if untested:
        failures.append(f"documented but not exercised: {untested}")
    if failures:
        raise TestFailure("\n".join(failures))
    log(f"ok: {len(documented)} operations answered only with documented statuses")


if __name__ == "__main__":
    main(test)
