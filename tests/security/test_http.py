"""test_http.py: cellad's HTTP front, tried as a hostile client would.

- Ambiguous framing (RFC 9112 6.3): Content-Length with Transfer-Encoding,
  or two different Content-Lengths, are refused with 400 (Unix socket and
  TCP), and nothing is acted on.
- A NUL (or any control character) in the decoded path is refused with 400:
  DELETE /v1/vms/a%00anything used to delete the VM "a".
- TCP: the bearer token is checked on the headers: a 100 MiB body without a
  token is answered 401 before a byte of it is sent.
- TCP: a connection that goes silent (half a header) is closed after the
  idle timeout; one client address can hold only so many connections, and
  while one address floods, another one's authenticated request is served.
"""

import json
import os
import socket
import time

from cellad import Daemon, check, log, main

PORT = 18000 + os.getpid() % 2000
TOKEN = "security-test-token-0123456789"


def raw(sock_or_addr, data, unix=True, read=True, timeout=10):
    """Send raw bytes; return the reply's status line and body."""
    if unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_or_addr)
    else:
        s = socket.create_connection(sock_or_addr)
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
    tokf = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"cella-sec-token-{os.getpid()}")
    with open(tokf, "w") as f:
        f.write(TOKEN + "\n")
    cfg = {"tcp": {"address": "127.0.0.1", "port": PORT, "token_file": tokf,
                   "idle_timeout_s": 2, "connections_per_client": 8}}
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
                    unix=False)
                check(" 400 " in st, f"{name}: refused on TCP ({st})")
            check(d.get("/v1/vms/b").status == 404, "nothing was defined by the refused requests")

            for path in ("/v1/vms/a%00anything", "/v1/vms/a%0d%0aX", "/v1/vms/a%01"):
                r = d.request("DELETE", path)
                check(r.status == 400, f"DELETE {path}: 400 ({r.status} {r.body.strip()[:80]})")
            check(d.vm("a")["state"] == "defined", "the VM 'a' is still there")

            # No token: answered on the headers, the body is never read.
            s = socket.create_connection(("127.0.0.1", PORT))
            s.settimeout(10)
            s.sendall(b"POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 104857600\r\n\r\n")
            head = s.recv(4096).decode(errors="replace")
            s.close()
            check(head.startswith("HTTP/1.1 401"), f"100 MiB body without a token: 401 before "
                  f"the body ({head.splitlines()[0] if head else 'nothing'})")

            # A half-sent header is dropped after the idle timeout.
            s = socket.create_connection(("127.0.0.1", PORT))
            s.settimeout(30)
            s.sendall(b"GET /v1/host HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            got = s.recv(4096)
            took = time.monotonic() - t0
            s.close()
            check(got in (b"",) or got.startswith(b"HTTP/1.1 4"),
                  f"a silent half-open connection is closed by the server ({took:.1f} s, "
                  f"idle_timeout_s 2)")

            # One address floods (more connections than it may hold); another
            # address is served all the while.
            flood = []
            for _ in range(40):
                try:
                    c = socket.create_connection(("127.0.0.1", PORT), timeout=5)
                    c.sendall(b"GET /v1/host HTTP/1.1\r\nHost: x\r\n")  # never finished
                    flood.append(c)
                except OSError:
                    break
            refused = held = 0
            for c in flood[8:]:
                c.settimeout(5)
                try:
                    refused += c.recv(1) == b""
                except socket.timeout:
                    held += 1
                except OSError:  # reset: refused at accept
                    refused += 1
            check(refused == len(flood) - 8 and not held, f"one address holds at most 8 "
                  f"connections: {len(flood)} opened, the {refused} beyond 8 closed at once")
            other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            other.bind(("127.0.0.2", 0))
            other.settimeout(10)
            other.connect(("127.0.0.1", PORT))
            t0 = time.monotonic()
            other.sendall(b"GET /v1/host HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n")
            reply = b""
            while True:
                chunk = other.recv(65536)
                if not chunk:
                    break
                reply += chunk
            ms = (time.monotonic() - t0) * 1000
            other.close()
            check(reply.startswith(b"HTTP/1.1 200"), f"another client is served during the "
                  f"flood ({ms:.1f} ms)")
            log(f"authenticated request during the flood: {ms:.1f} ms")
            for c in flood:
                c.close()
    finally:
        os.unlink(tokf)


if __name__ == "__main__":
    main(test)
