"""test_web_auth.py: the web console's backend (docs/web.md) against a real
cellad, over HTTPS and over the plain-HTTP loopback listener: logins with a
token and with a password (Argon2id, `cella user add`), wrong credentials
401 and then 429, the session cookie's flags, the cookie on a GET, the
Origin check on a state-changing request, logout ending the session on the
server, expiry, the users' routes for admins only, malformed cookies and
Origins refused with 4xx, and the static files' headers: CSP, GET /
redirect, ETag and 304, immutable caching of hashed names, precompressed
siblings with Vary, path escapes refused."""

import gzip
import http.client
import json
import os
import shutil
import socket
import sqlite3
import ssl
import sys
import tempfile
import time

from cellad import Daemon, TestFailure, check, log, main

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "security"))
from tlsutil import make_pki  # noqa: E402

TOKEN = "web-admin-token-0123456789"
VIEW_TOKEN = "web-viewer-token-0123456789"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Web:
    """A browser's view of one listener: scheme, port, and a cookie jar of
    one cookie (cella_session)."""

    def __init__(self, scheme, port, ca=None):
        self.scheme, self.port, self.ca = scheme, port, ca
        self.origin = f"{scheme}://127.0.0.1:{port}"
        self.cookie = None

    def conn(self):
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.ca)
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, headers=None, cookie=True, raw=None):
        h = dict(headers or {})
        if cookie and self.cookie and "Cookie" not in h:
            h["Cookie"] = f"cella_session={self.cookie}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c = self.conn()
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        headers = {k.lower(): v for k, v in r.getheaders()}
        set_cookies = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
        c.close()
        try:
            js = json.loads(payload) if payload else None
        except ValueError:
            js = None
        return r.status, headers, payload, js, set_cookies

    def login(self, body, origin=True):
        h = {"Origin": self.origin} if origin else {}
        st, hd, _, js, sc = self.request("POST", "/v1/session", body, headers=h, cookie=False)
        if st == 200:
            check(len(sc) == 1, f"one Set-Cookie: {sc}")
            self.cookie = sc[0].split(";", 1)[0].split("=", 1)[1]
        return st, js, sc


def cookie_flags(sc):
    parts = [p.strip() for p in sc.split(";")]
    name, value = parts[0].split("=", 1)
    return name, value, {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else True)
                         for p in parts[1:]}


def sessions(web, d, label):
    """Logins, cookie use, Origin, logout: on one listener."""
    st, js, sc = web.login({"token": "wrong-token-0123456789"})
    check(st == 401 and js["error"]["field"] == "token", f"{label}: wrong token 401: {st} {js}")
    st, js, sc = web.login({"user": "alice", "password": "not her password"})
    check(st == 401 and js["error"]["field"] == "password",
          f"{label}: wrong password 401: {st} {js}")
    st, js, sc = web.login({"user": "nobody", "password": "whatever-password"})
    check(st == 401, f"{label}: unknown user 401, like a wrong password: {st} {js}")

    # Token login: an admin session.
    t0 = int(time.time())
    st, js, sc = web.login({"token": TOKEN})
    check(st == 200 and js["role"] == "admin" and js["expires"] >= t0 + 3000,
          f"{label}: token login: {st} {js}")
    name, value, flags = cookie_flags(sc[0])
    check(name == "cella_session" and len(value) == 43 and
          all(c.isalnum() or c in "-_" for c in value), f"{label}: 256-bit base64url id {value}")
    check(flags.get("path") == "/" and flags.get("httponly") is True and
          flags.get("secure") is True and flags.get("samesite") == "Strict" and
          3000 <= int(flags.get("max-age", 0)) <= 3600, f"{label}: cookie flags {flags}")
    st, _, _, js, _ = web.request("GET", "/v1/session")
    check(st == 200 and js["role"] == "admin", f"{label}: GET /v1/session: {st} {js}")

    # Password login: alice is an operator.
    st, js, sc = web.login({"user": "alice", "password": "correct horse battery"})
    check(st == 200 and js["user"] == "alice" and js["role"] == "operator",
          f"{label}: password login: {st} {js}")
    alice = web.cookie
    st, _, _, js, _ = web.request("GET", "/v1/vms")
    check(st == 200 and any(v["name"] == "webvm" for v in js["vms"]),
          f"{label}: the cookie works on a GET: {st}")
    st, _, _, js, _ = web.request("GET", "/v1/users")
    check(st == 403 and js["error"]["field"] == "role", f"{label}: operator cannot list users: {st}")

    # CSRF: a cookie-authenticated POST needs this server's Origin.
    for hdr in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"},
                {"Origin": web.origin + ".evil.example"}, {"Origin": web.origin + "/path"},
                {"Origin": ("http" if web.scheme == "https" else "https") + web.origin[
                    len(web.scheme):]}):
        st, _, _, js, _ = web.request("POST", "/v1/vms/webvm/pause", headers=hdr)
        check(st == 403 and js["error"]["field"] == "Origin",
              f"{label}: POST with cookie and Origin {hdr}: 403 Origin, got {st} {js}")
    check(d.vm("webvm")["state"] == "running", f"{label}: nothing was paused")
    st, _, _, js, _ = web.request("POST", "/v1/vms/webvm/pause", headers={"Origin": web.origin})
    check(st == 200, f"{label}: POST with the right Origin works: {st} {js}")
    st, _, _, js, _ = web.request("POST", "/v1/vms/webvm/resume",
                                  headers={"Origin": web.origin.upper().replace("HTTP", "http")})
    check(st == 200, f"{label}: Origin compared case-insensitively: {st} {js}")
    # A bearer token needs no Origin.
    st, _, _, js, _ = web.request("POST", "/v1/vms/webvm/pause", cookie=False,
                                  headers={"Authorization": f"Bearer {TOKEN}"})
    check(st == 200, f"{label}: bearer POST without Origin: {st} {js}")
    d.action("webvm", "resume")

    # Logout: 204, the cookie cleared, and the old id refused at once.
    st, _, _, js, _ = web.request("DELETE", "/v1/session")
    check(st == 403, f"{label}: logout without Origin refused too: {st}")
    st, hd, _, _, sc = web.request("DELETE", "/v1/session", headers={"Origin": web.origin})
    check(st == 204 and sc and "max-age=0" in sc[0].lower(), f"{label}: logout: {st} {sc}")
    for path in ("/v1/vms", "/v1/session"):
        st, _, _, js, _ = web.request("GET", path, headers={"Cookie": f"cella_session={alice}"})
        check(st == 401, f"{label}: the old cookie after logout on {path}: {st} {js}")
    log(f"ok: {label}: token and password logins, cookie flags, Origin check, logout")


def malformed(web):
    cases = [
        ("cella_session=short", 400), ("cella_session=" + "A" * 42 + "!", 400),
        ("cella_session=" + "A" * 5000, 400), ("cella_session=" + "A" * 43, 401),
        ("other=1; cella_session", 401), ("=;;;==; ;", 401), ("\x7f\x01", 401),
    ]
    for ck, want in cases:
        try:
            st, _, _, js, _ = web.request("GET", "/v1/vms", headers={"Cookie": ck})
        except http.client.HTTPException as e:  # a header the client refuses to send
            log(f"  (client refused {ck[:20]!r}: {e})")
            continue
        check(st == want, f"Cookie {ck[:30]!r}: want {want}, got {st} {js}")
    st, _, _, _, _ = web.request("GET", "/v1/vms", headers={"Cookie": "x=" + "A" * 200000})
    check(400 <= st < 500, f"a 200 kB Cookie header: 4xx, got {st}")
    for body, want, field in ((b"{", 400, ""), (b"[]", 400, ""), (b'{"token": 5}', 400, "token"),
                              (b'{"user": "a"}', 400, ""), (b'{"x": "y"}', 400, "x"),
                              (b'{"token": "' + b"t" * 5000 + b'"}', 400, "token")):
        st, _, _, js, _ = web.request("POST", "/v1/session", raw=body, cookie=False,
                                      headers={"Content-Type": "application/json"})
        check(st == want and js["error"]["field"] == field,
              f"POST /v1/session {body[:30]!r}: {st} {js}")
    st, js, _ = web.login({"token": TOKEN}, origin=False)
    for origin in ("https://[::1", "https://127.0.0.1:99999", "https://a@127.0.0.1",
                   "\x01", "https://" + "a" * 4000):
        st, _, _, js, _ = web.request("POST", "/v1/vms/webvm/pause", headers={"Origin": origin})
        check(st == 403, f"Origin {origin[:30]!r}: 403, got {st}")
    st, _, _, js, _ = web.request("POST", "/v1/session", {"token": TOKEN}, cookie=False,
                                  headers={"Origin": "https://evil.example"})
    check(st == 403 and js["error"]["field"] == "Origin", f"a cross-site login: {st} {js}")
    log("ok: malformed cookies, bodies and Origins refused with 4xx")


def static_files(web, ui):
    st, hd, _, _, _ = web.request("GET", "/")
    check(st == 302 and hd.get("location") == "/ui/", f"GET / redirects to /ui/: {st} {hd}")
    for path in ("/ui/", "/ui", "/ui/app-5XKQ3G7H.js", "/ui/style.css"):
        st, hd, body, _, _ = web.request("GET", path)
        check(st == 200, f"{path}: {st}")
        check(hd.get("content-security-policy") == CSP, f"{path}: CSP {hd}")
        check(hd.get("x-content-type-options") == "nosniff" and
              hd.get("referrer-policy") == "no-referrer", f"{path}: nosniff, no-referrer")
    st, hd, body, _, _ = web.request("GET", "/ui/app-5XKQ3G7H.js")
    check(hd.get("cache-control") == "public, max-age=31536000, immutable",
          f"hashed name cached for a year: {hd.get('cache-control')}")
    st, hd, body, _, _ = web.request("GET", "/ui/")
    check(b"<title>cella</title>" in body and hd.get("cache-control") == "no-cache" and
          hd.get("etag"), f"index: no-cache with an ETag: {hd}")
    etag = hd["etag"]
    st, hd2, body, _, _ = web.request("GET", "/ui/", headers={"If-None-Match": etag})
    check(st == 304 and body == b"" and hd2.get("etag") == etag, f"If-None-Match: 304, got {st}")
    st, _, _, _, _ = web.request("GET", "/ui/", headers={"If-None-Match": '"other"'})
    check(st == 200, f"another ETag: 200, got {st}")
    # Precompressed siblings.
    st, hd, body, _, _ = web.request("GET", "/ui/style.css", headers={"Accept-Encoding": "gzip"})
    check(st == 200 and hd.get("content-encoding") == "gzip" and
          hd.get("vary") == "Accept-Encoding" and
          gzip.decompress(body) == open(os.path.join(ui, "style.css"), "rb").read() and
          hd.get("content-type", "").startswith("text/css"), f"style.css.gz sent: {hd}")
    st, hd2, body, _, _ = web.request("GET", "/ui/style.css",
                                      headers={"Accept-Encoding": "gzip;q=0, deflate"})
    check(st == 200 and "content-encoding" not in hd2 and hd2.get("vary") == "Accept-Encoding" and
          body == open(os.path.join(ui, "style.css"), "rb").read() and
          hd2.get("etag") != hd.get("etag"), f"gzip;q=0: the plain file: {hd2}")
    st, hd, body, _, _ = web.request("GET", "/ui/style.css", headers={"Accept-Encoding": "br, gzip"})
    check(hd.get("content-encoding") == "br" and body == b"BROTLI", f"br preferred: {hd}")
    # Path escapes.
    for path in ("/ui/..", "/ui/%2e%2e", "/ui/%2e%2e%2fcellad.json", "/ui/../cellad.json",
                 "/ui/leak.txt", "/ui/sub", "/ui/%2fetc%2fpasswd", "/ui/a%00b", "/ui/sub/x"):
        st, _, body, _, _ = web.request("GET", path)
        check(st in (400, 404) and b"root:" not in body and TOKEN.encode() not in body,
              f"{path}: refused ({st})")
    log("ok: static files: CSP and headers, redirect, ETag/304, immutable, gzip/br, escapes")


def make_ui(ui):
    with open(os.path.join(ui, "index.html"), "w") as f:
        f.write("<!doctype html><title>cella</title>\n")
    with open(os.path.join(ui, "app-5XKQ3G7H.js"), "w") as f:
        f.write("console.log('cella');\n")
    css = b"body { color: black; }\n" * 50
    with open(os.path.join(ui, "style.css"), "wb") as f:
        f.write(css)
    with open(os.path.join(ui, "style.css.gz"), "wb") as f:
        f.write(gzip.compress(css))
    with open(os.path.join(ui, "style.css.br"), "wb") as f:
        f.write(b"BROTLI")
    os.symlink("/etc/passwd", os.path.join(ui, "leak.txt"))
    os.mkdir(os.path.join(ui, "sub"))


def test(args):
    if not shutil.which("openssl"):
        raise TestFailure("openssl is needed for the HTTPS certificates (scripts/setup.sh)")
    ui = tempfile.mkdtemp(prefix="cella-webui-")
    try:
        make_ui(ui)
        tcp, loop = free_port(), free_port()
        with Daemon(args, name="cellad-web") as d:
            d.stop()
            with open(os.path.join(d.dir, "token"), "w") as f:
                f.write(TOKEN + "\n")
            with open(os.path.join(d.dir, "vtoken"), "w") as f:
                f.write(VIEW_TOKEN + "\n")
            make_pki(d.dir)
            d.config.update({
                "tcp": {"address": "127.0.0.1", "port": tcp, "token_file": f"{d.dir}/token",
                        "tokens": [{"file": f"{d.dir}/vtoken", "role": "viewer"}]},
                "tls": {"cert": f"{d.dir}/server.pem", "key": f"{d.dir}/server.key",
                        "ca": f"{d.dir}/ca.pem"},
                "ui_dir": ui, "http_loopback_port": loop, "session_ttl_s": 3600,
                "login_attempts_per_minute": 30})
            d.start()
            d.define("webvm", "echo")
            d.action("webvm", "start")
            d.wait_state("webvm", ["running"])

            # Users: the CLI (admin over the socket), the password never shown.
            p = d.cli("user", "add", "alice", "--role", "operator",
                      input="correct horse battery\n")
            check("correct horse" not in p.stdout + p.stderr, "the password is not echoed")
            d.cli("user", "add", "bob", "--role", "viewer", input="bob's password 1\n")
            d.cli("user", "add", "carol", "--role", "root", input="carol's password\n", expect=1)
            d.cli("user", "add", "dave", "--role", "viewer", input="short\n", expect=1)
            out = d.cli("user", "list").stdout
            check("alice" in out and "operator" in out and "bob" in out and "carol" not in out
                  and "$argon2" not in out, f"cella user list: {out}")
            r = d.get("/v1/users")
            check(r.status == 200 and [u["name"] for u in r.json["users"]] == ["alice", "bob"] and
                  all("hash" not in u for u in r.json["users"]), f"GET /v1/users: {r}")
            db = sqlite3.connect(os.path.join(d.state, "cellad.db"))
            rows = dict(db.execute("SELECT name, hash FROM web_users").fetchall())
            db.close()
            raw = b"".join(open(os.path.join(d.state, f), "rb").read()
                           for f in os.listdir(d.state) if f.startswith("cellad.db"))
            check(rows["alice"].startswith("$argon2id$v=19$m=19456,t=2,p=1$") and
                  b"correct horse" not in raw,
                  f"the store holds an Argon2id hash, not the password: {rows['alice'][:40]}")
            check("correct horse" not in d.log(), "the password is never logged")

            https = Web("https", tcp, ca=f"{d.dir}/ca.pem")
            plain = Web("http", loop)
            sessions(https, d, "HTTPS")
            sessions(plain, d, "loopback HTTP")
            # A cookie is only a credential on the listener that... accepts it
            # anywhere: the same cellad serves both.
            st, js, _ = https.login({"user": "bob", "password": "bob's password 1"})
            check(st == 200 and js["role"] == "viewer", f"bob logs in: {st} {js}")
            st, _, _, js, _ = https.request("POST", "/v1/vms/webvm/pause",
                                            headers={"Origin": https.origin})
            check(st == 403 and js["error"]["field"] == "role", f"a viewer's cookie: {st} {js}")
            d.cli("user", "delete", "bob")
            st, _, _, _, _ = https.request("GET", "/v1/vms")
            check(st == 401, f"a deleted user's session ends: {st}")
            d.cli("user", "delete", "bob", expect=4)
            # Admin routes: an admin session may manage users (with Origin).
            https.login({"token": TOKEN})
            st, _, _, js, _ = https.request("POST", "/v1/users", {"name": "erin", "role": "viewer",
                                            "password": "erin's password"},
                                            headers={"Origin": https.origin})
            check(st == 201 and js == {"name": "erin", "role": "viewer"}, f"POST /v1/users {st} {js}")
            st, _, _, js, _ = https.request("DELETE", "/v1/users/erin",
                                            headers={"Origin": https.origin})
            check(st == 204, f"DELETE /v1/users/erin: {st} {js}")
            st, _, _, js, _ = https.request("GET", "/v1/users", cookie=False,
                                            headers={"Authorization": f"Bearer {VIEW_TOKEN}"})
            check(st == 403, f"a viewer token cannot list users: {st}")
            malformed(https)
            static_files(https, ui)
            st, hd, _, _, _ = plain.request("GET", "/ui/")
            check(st == 200 and hd.get("content-security-policy") == CSP, "loopback serves /ui/")
            # Loopback only: the plain listener's socket is bound to 127.0.0.1.
            want = "0100007F:%04X" % loop
            rows = [ln.split() for ln in open("/proc/net/tcp").read().splitlines()[1:]]
            bound = [r[1] for r in rows if r[1].endswith(":%04X" % loop) and r[3] == "0A"]
            check(bound == [want], f"plain HTTP listens on 127.0.0.1 only: {bound}")
            # Failed logins are limited per address: 429 with Retry-After.
            statuses = []
            for _ in range(40):
                st, js, _ = https.login({"user": "alice", "password": "guess"})
                statuses.append(st)
                if st == 429:
                    break
            check(statuses[-1] == 429 and set(statuses[:-1]) == {401},
                  f"failed logins end in 429: {statuses}")
            st, hd, _, js, _ = https.request("POST", "/v1/session", {"token": TOKEN}, cookie=False)
            check(st == 429 and int(hd.get("retry-after", "0")) >= 1,
                  f"even the right token waits: {st} {hd.get('retry-after')}")
            check(d.proc.poll() is None, "cellad still runs")

        # Expiry: a short session_ttl_s.
        tcp = free_port()
        with Daemon(args, name="cellad-web-ttl") as d:
            d.stop()
            with open(os.path.join(d.dir, "token"), "w") as f:
                f.write(TOKEN + "\n")
            make_pki(d.dir)
            d.config.update({
                "tcp": {"address": "127.0.0.1", "port": tcp, "token_file": f"{d.dir}/token"},
                "tls": {"cert": f"{d.dir}/server.pem", "key": f"{d.dir}/server.key",
                        "ca": f"{d.dir}/ca.pem"}, "session_ttl_s": 2})
            d.start()
            web = Web("https", tcp, ca=f"{d.dir}/ca.pem")
            st, js, sc = web.login({"token": TOKEN})
            check(st == 200 and "Max-Age=2" in sc[0], f"ttl 2 s: {st} {sc}")
            check(web.request("GET", "/v1/vms")[0] == 200, "fresh session works")
            deadline = time.monotonic() + 10
            while web.request("GET", "/v1/vms")[0] == 200:
                if time.monotonic() > deadline:
                    raise TestFailure("the session did not expire within 10 s")
                time.sleep(0.2)  # polling for the expiry, with a deadline
            check(time.time() >= js["expires"] - 1, "not expired before its time")
            st, _, _, js, _ = web.request("GET", "/v1/session")
            check(st == 401, f"GET /v1/session after expiry: {st} {js}")
            log("ok: a session expires after session_ttl_s")
    finally:
        shutil.rmtree(ui, ignore_errors=True)


if __name__ == "__main__":
    main(test)
