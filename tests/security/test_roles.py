"""test_roles.py: every API route declares the role it needs, and cellad
enforces it for every caller, before it reads a body.

The route table is read from daemon/api/routes.c (as test_openapi does).
Each route is called as:
- Unix socket: users with no role, viewer, operator, admin (uids given
  roles by the "roles" configuration; the test forks a child per request
  that takes that uid), and root (always admin);
- TCP: no token, a viewer token, an operator token, the admin token.
A caller below the route's role gets 403 naming both roles; one at or above
gets anything but 403 (the names used do not exist, so mostly 404 or 400).
Needs root (to take other uids)."""

import json
import os
import re
import shutil
import socket
import tempfile

from cellad import Daemon, check, log, main, skip
from secutil import call_unix_as
from tlsutil import make_pki, read_all, tls_connect

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
RANK = {"ROLE_NONE": 0, "ROLE_VIEWER": 1, "ROLE_OPERATOR": 2, "ROLE_ADMIN": 3}
UIDS = {"none": 60000, "viewer": 60001, "operator": 60002, "admin": 60003}
PORT = 20000 + os.getpid() % 2000


def routes():
    src = open(os.path.join(ROOT, "daemon", "api", "routes.c")).read()
    table = src[src.index("static const struct route routes[]"):]
    out = re.findall(r'\{"(GET|POST|PUT|PATCH|DELETE)", "([^"]+)", \w+, [\w_]+, \w+,\s*(ROLE_\w+)((?:,\s*(?:true|false))*)\}',
                     table)
    check(len(out) >= 30, f"the route table has {len(out)} routes, each with a role")
    # (method, path, role, peer_only): the first flag after the role.
    return [(m, p, r, re.sub(r"\s", "", f).split(",")[1:2] == ["true"]) for m, p, r, f in out]


def request_bytes(method, path, auth=None):
    body = b"{}" if method in ("POST", "PATCH") else b""
    h = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if body:
        h += "Content-Type: application/json\r\n"
    if auth:
        h += f"Authorization: Bearer {auth}\r\n"
    h += f"Content-Length: {len(body)}\r\n\r\n"
    return h.encode() + body


def status_of(reply):
    m = re.match(rb"HTTP/1\.1 (\d+)", reply)
    return int(m.group(1)) if m else 0


def call_tcp(data, ca):
    s = tls_connect(PORT, ca, timeout=30)
    s.sendall(data)
    reply = read_all(s)
    s.close()
    return reply


def test(args):
    if os.geteuid() != 0:
        skip("needs root: the test calls cellad as other uids")
    if not shutil.which("openssl"):
        skip("'openssl' is not installed (certificates for the HTTPS API)")
    tmp = tempfile.mkdtemp(prefix="cella-roles-")
    make_pki(tmp)
    ca = f"{tmp}/ca.pem"
    tokens = {}
    for role in ("admin", "operator", "viewer"):
        tokens[role] = f"{role}-token-for-the-roles-test-{os.getpid()}"
        with open(os.path.join(tmp, role), "w") as f:
            f.write(tokens[role] + "\n")
    cfg = {"roles": {r: [f"user:{UIDS[r]}"] for r in ("viewer", "operator", "admin")},
           "tcp": {"address": "127.0.0.1", "port": PORT, "token_file": os.path.join(tmp, "admin"),
                   "tokens": [{"file": os.path.join(tmp, r), "role": r}
                              for r in ("operator", "viewer")]},
           "tls": {"cert": f"{tmp}/server.pem", "key": f"{tmp}/server.key", "ca": ca}}
    try:
        with Daemon(args, config=cfg) as d:
            os.chmod(d.sock, 0o666)
            os.chmod(d.dir, 0o755)
            fill = {"{name}": "nosuchvm", "{disk}": "d0", "{checkpoint}": "cp", "{host}": "nohost",
                    "{user}": "nouser"}
            checked = 0
            for method, path, need, peer_only in routes():
                url = path
                for k, v in fill.items():
                    url = url.replace(k, v)
                if method == "GET" and (path.endswith("/console") or path == "/v1/events"):
                    url += "?follow=false"  # streams end after their backlog
                for who, uid in UIDS.items():
                    have = RANK.get("ROLE_" + who.upper(), 0)
                    st = status_of(call_unix_as(d.sock, uid, request_bytes(method, url)))
                    ok = (st == 403) == (have < RANK[need])
                    if not ok:
                        check(False, f"{method} {path} as uid {uid} ({who}): {st}, needs {need}")
                    checked += 1
                st = status_of(call_unix_as(d.sock, 0, request_bytes(method, url)))
                if st == 403:
                    check(False, f"{method} {path} as root: 403")
                for who in ("viewer", "operator", "admin"):
                    st = status_of(call_tcp(request_bytes(method, url, tokens[who]), ca))
                    # Peer routes also need a peer's certificate over TCP.
                    if (st == 403) != (RANK["ROLE_" + who.upper()] < RANK[need] or peer_only):
                        check(False, f"{method} {path} over TCP as {who}: {st}, needs {need}")
                    checked += 1
                reply = call_tcp(request_bytes(method, url), ca)
                st = status_of(reply)
                # Routes without a role (a pool join: its token is in the body;
                # the web console's files and login) are open; every other one
                # needs a bearer token. GET and DELETE /v1/session answer 401
                # themselves without a session cookie (field Cookie).
                if st == 401 and b'"field":"Cookie"' in reply:
                    st = 200 if need == "ROLE_NONE" else 401
                if (st == 401) == (need == "ROLE_NONE") or st == 403:
                    check(False, f"{method} {path} over TCP without a token: {st}")
            check(True, f"{checked} calls: every route refuses the roles below its own with "
                  f"403 and lets the others through; TCP without a token is 401 (but on "
                  f"the routes open to joining hosts)")
            reply = call_unix_as(d.sock, UIDS["viewer"], request_bytes(
                "POST", "/v1/vms"))
            body = reply.partition(b"\r\n\r\n")[2]
            err = json.loads(body)["error"]
            check(status_of(reply) == 403 and "operator" in err["reason"] and
                  "viewer" in err["reason"], f"the refusal names the roles: {err['reason']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(test)
