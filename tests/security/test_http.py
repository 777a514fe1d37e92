"""test_http.py: cellad's HTTP front, tried as a hostile client would.

- Ambiguous framing (RFC 9112 6.3): Content-Length with Transfer-Encoding,
  or two different Content-Lengths, are refused with 400 (Unix socket and
  TCP), and nothing is acted on.
- A NUL (or any control character) in the decoded path is refused with 400:
  DELETE /v1/vms/a%00anything used to delete the VM "a".
- TCP is HTTPS only (TLS 1.3): plain HTTP gets no answer; TLS 1.2 is
  refused.
- TCP: the bearer token is checked on the headers: a 100 MiB body without a
  token is answered 401 before a byte of it is sent.
- Peer routes (/v1/incoming) over TCP need a certificate of the peers' CA
  (mutual TLS) besides the admin token; one from another CA is refused.
- A peer host must be https:// (an http:// peer is refused).
- TCP: a connection that goes silent (half a header) is closed after the
  idle timeout; one client address can hold only so many connections, and
  while one address floods, another one's authenticated request is served.
"""

import json
import os
import shutil
import socket
import ssl
import tempfile
import time

from cellad import Daemon, check, log, main
from tlsutil import make_pki, read_all, tls_connect

PORT = 18000 + os.getpid() % 2000
TOKEN = "security-test-token-0123456789"


def raw(sock_or_addr, data, unix=True, read=True, timeout=10, ca=None):
    """Send raw bytes; return the reply's status line and body."""
    if unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_or_addr)
    else:
        s = tls_connect(sock_or_addr[1], ca)
    s.settimeout(timeout)
    s.sendall(data)
    buf = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if b"\r\n\r\n" in buf:
                    head, _, body = buf.partition(b"\r\n\r\n")
                    cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                    if cl and len(body) >= int(cl[0].split(b":")[1]):
                        break
        except socket.timeout:
            pass
    s.close()
    status = buf.split(b"\r\n", 1)[0].decode(errors="replace")
    return status, buf.partition(b"\r\n\r\n")[2].decode(errors="replace")


def test(args):
    if not shutil.which("openssl"):
        from cellad import skip
        skip("'openssl' is not installed (certificates for the HTTPS API)")
    pki = tempfile.mkdtemp(prefix="cella-sec-pki-")
    make_pki(pki)
    make_pki(pki, names=("stranger",), ca="otherca")
    ca = f"{pki}/ca.pem"
    tokf = os.path.join(pki, "token")
    with open(tokf, "w") as f:
        f.write(TOKEN + "\n")
    cfg = {"tcp": {"address": "127.0.0.1", "port": PORT, "token_file": tokf,
                   "idle_timeout_s": 2, "connections_per_client": 8},
           "tls": {"cert": f"{pki}/server.pem", "key": f"{pki}/server.key", "ca": ca}}
    try:
        with Daemon(args, config=cfg) as d:
            d.define("a", "hello")
            body = json.dumps({"name": "b", "kernel": args["guests"]["hello"]}).encode()
            for name, extra in (
                    ("Content-Length with Transfer-Encoding",
                     b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(body)),
                    ("two different Content-Lengths",
                     b"Content-Length: %d\r\nContent-Length: 5\r\n" % len(body))):
                req = (b"POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       + extra + b"\r\n" + body)
                st, reply = raw(d.sock, req)
                check(" 400 " in st, f"{name}: refused on the Unix socket ({st})")
                st, _ = raw(("127.0.0.1", PORT), req.replace(
                    b"Host: x\r\n", b"Host: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"),
                    unix=False, ca=ca)
                check(" 400 " in st, f"{name}: refused on TCP ({st})")
            check(d.get("/v1/vms/b").status == 404, "nothing was defined by the refused requests")

            for path in ("/v1/vms/a%00anything", "/v1/vms/a%0d%0aX", "/v1/vms/a%01"):
                r = d.request("DELETE", path)
                check(r.status == 400, f"DELETE {path}: 400 ({r.status} {r.body.strip()[:80]})")
            check(d.vm("a")["state"] == "defined", "the VM 'a' is still there")

            # Plain HTTP to the TCP port: no HTTP answer. TLS 1.2: refused.
            s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            s.sendall(b"GET /v1/host HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                got = s.recv(4096)
            except (socket.timeout, OSError):
                got = b""
            s.close()
            check(not got.startswith(b"HTTP/"), f"plain HTTP on the TCP port gets no HTTP answer "
                  f"({got[:20]!r})")
            ctx12 = ssl.create_default_context(cafile=ca)
            ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
            try:
                with ctx12.wrap_socket(socket.create_connection(("127.0.0.1", PORT), timeout=10),
                                       server_hostname="127.0.0.1"):
                    ok12 = True
            except (ssl.SSLError, OSError):
                ok12 = False
            check(not ok12, "TLS 1.2 is refused (TLS 1.3 only)")

            # Peer routes need the peers' CA's certificate (mutual TLS).
            def incoming(cert=None, key=None):
                s = tls_connect(PORT, ca, cert, key)
                s.sendall(b"DELETE /v1/incoming/nosuchvm HTTP/1.1\r\nHost: x\r\n"
                          b"Authorization: Bearer " + TOKEN.encode() +
                          b"\r\nConnection: close\r\n\r\n")
                return read_all(s).split(b"\r\n", 1)[0]
            st = incoming()
            check(b" 403 " in st, f"admin token without a client certificate: {st!r}")
            st = incoming(f"{pki}/peer.pem", f"{pki}/peer.key")
            check(b" 404 " in st, f"admin token with a peer certificate: through ({st!r})")
            try:
                st = incoming(f"{pki}/stranger.pem", f"{pki}/stranger.key")
            except (ssl.SSLError, OSError) as e:
                st = str(e).encode()
            check(b" 200 " not in st and b" 404 " not in st,
                  f"a certificate from another CA is refused: {st[:80]!r}")
            r = d.post("/v1/hosts", {"name": "plain", "url": "http://127.0.0.1:8419",
                                     "token": "0123456789abcdef0123"})
            check(r.status == 400 and r.json["error"]["field"] == "url",
                  f"an http:// peer is refused: {r.status}")

            # No token: answered on the headers, the body is never read.
            s = tls_connect(PORT, ca)
            s.sendall(b"POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 104857600\r\n\r\n")
            head = s.recv(4096).decode(errors="replace")
            s.close()
            check(head.startswith("HTTP/1.1 401"), f"100 MiB body without a token: 401 before "
                  f"the body ({head.splitlines()[0] if head else 'nothing'})")

            # A half-sent header is dropped after the idle timeout.
            s = tls_connect(PORT, ca, timeout=30)
            s.sendall(b"GET /v1/host HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            got = read_all(s)
            took = time.monotonic() - t0
            s.close()
            check(got in (b"",) or got.startswith(b"HTTP/1.1 4"),
                  f"a silent half-open connection is closed by the server ({took:.1f} s, "
                  f"idle_timeout_s 2)")

            # One address holds its 8 connections (silent: no TLS handshake);
            # a 9th from it is turned away, another address is served. The
            # flood comes from an address of its own (127.0.0.3): the
            # connections above, from 127.0.0.1, may still be closing on the
            # server's side, and one that ended between the flood and the 9th
            # would make room for it.
            flood = [socket.create_connection(("127.0.0.1", PORT), timeout=5,
                                              source_address=("127.0.0.3", 0))
                     for _ in range(8)]
            try:
                extra = tls_connect(PORT, ca, timeout=5, source="127.0.0.3")
                extra.sendall(b"GET /v1/host HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                              + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n")
                turned_away = not read_all(extra).startswith(b"HTTP/1.1 200")
            except (ssl.SSLError, OSError):
                turned_away = True
            check(turned_away, "a 9th connection from an address holding 8 is turned away")
            t0 = time.monotonic()
            other = tls_connect(PORT, ca, source="127.0.0.2")
            other.sendall(b"GET /v1/host HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n")
            reply = read_all(other)
            ms = (time.monotonic() - t0) * 1000
            other.close()
            check(reply.startswith(b"HTTP/1.1 200"), f"another client is served during the "
                  f"flood ({ms:.1f} ms)")
            log(f"authenticated request during the flood: {ms:.1f} ms")
            for c in flood:
                c.close()
    finally:
        shutil.rmtree(pki, ignore_errors=True)


if __name__ == "__main__":
    main(test)
