"""test_web_console_ws.py: a VM's console over a WebSocket
(GET /v1/vms/{name}/console/ws, docs/web.md "Console over WebSocket"),
against a real cellad and the echo guest, spoken by a small RFC 6455
client written here (stdlib: handshake, masking, frames).

- the history arrives first, then live output; a typed line (text or
  binary message) is echoed by the guest; a resize is accepted; a
  malformed resize gets an error message; pings are answered;
- over HTTPS with bearer tokens: an operator types, a viewer reads but
  its input is refused with an error message (and never reaches the
  guest); no token is a 401;
- with a session cookie (POST /v1/session): the handshake needs this
  server's Origin (403 without it, or with another), and the session's
  role applies;
- bad handshakes (no key, a bad key, version 8, no Upgrade) are 400s, a
  POST a 405; an oversized message (or a frame claiming 1 TiB) is closed
  with 1009;
- 20 sockets at once add no thread to cellad and all get the guest's
  next output;
- when the VM stops, the socket is closed with 1000 and the VM's state;
- GET /v1/events/ws: the backlog and new events, one JSON event per text
  message (a viewer may follow it; input is refused with an error);
- a client that pings without reading is no longer read (cellad's memory
  stays put); cellad stopping closes its sockets with 1001."""

import base64
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import time

from cellad import Daemon, TestFailure, UnixHTTPConnection, check, log, main, skip

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "security"))
from tlsutil import make_pki, tls_connect  # noqa: E402

PORT = 22000 + os.getpid() % 2000
OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def session_cookie(ca, token):
    """POST /v1/session over HTTPS with a token: the cella_session cookie."""
    body = json.dumps({"token": token}).encode()
    s = tls_connect(PORT, ca, timeout=30)
    s.sendall(b"POST /v1/session HTTP/1.1\r\nHost: x\r\nOrigin: https://x\r\n"
              b"Content-Type: application/json\r\nConnection: close\r\n" +
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    s.close()
    head = out.partition(b"\r\n\r\n")[0].decode("latin-1")
    for line in head.split("\r\n"):
        if line.lower().startswith("set-cookie: cella_session="):
            return line.split(":", 1)[1].strip().split(";")[0]
    raise TestFailure(f"no session cookie: {head!r}")


def cookie_origin(ca, tokens):
    """A handshake the session cookie authenticates needs this server's
    Origin (cross-site WebSocket hijacking), though it is a GET."""
    cookie = session_cookie(ca, tokens["viewer"])
    for origin in (None, "https://evil.example", "http://x"):
        hdr = f"Cookie: {cookie}\r\n" + (f"Origin: {origin}\r\n" if origin else "")
        w = WS(tls_connect(PORT, ca, timeout=30), "/v1/vms/e/console/ws", None, hdr)
        check(w.status == 403 and '"field":"Origin"' in w.head + w.s.recv(4096).decode(),
              f"a cookie-authenticated handshake with Origin {origin}: 403 Origin")
        w.s.close()
    w = WS(tls_connect(PORT, ca, timeout=30), "/v1/vms/e/console/ws", None,
           f"Cookie: {cookie}\r\nOrigin: https://x\r\n")
    check(w.status == 101, "a cookie-authenticated handshake from this server's origin: 101")
    w.until(lambda w: b"echo: ready" in w.output, "the history over the cookie's socket")
    w.send_text("cookie viewer\n")
    w.until(lambda w: w.texts, "the refusal of the cookie viewer's input")
    check(w.texts[0]["error"]["field"] == "role", "the session's role applies (viewer)")
    w.close()


def flood(d, ca, tokens):
    """A client that sends pings as fast as it can and reads nothing: each
    ping earns a pong, queued for it; past cellad's bound (1024 messages or
    128 KiB waiting) cellad stops reading that client, so the client's
    sends block after the kernel's buffers and cellad's memory stays put
    (without the bound it would queue a pong per ping for as long as the
    client sends)."""
    rss0 = vmrss_kib(d.proc.pid)
    slow = tls_ws(ca, "/v1/vms/e/console/ws?history=0", tokens["viewer"])
    check(slow.status == 101, "a client that does not read: 101")
    frame = bytes([0x89, 0x80]) + b"\x00\x00\x00\x00"  # a masked, empty ping
    chunk = frame * 8192
    slow.s.settimeout(1)
    sent, blocked, deadline = 0, False, time.monotonic() + 8
    while time.monotonic() < deadline:
        try:
            slow.s.sendall(chunk)
        except (socket.timeout, TimeoutError):
            blocked = True  # the send side is full: cellad stopped reading
            break
        sent += len(chunk)
    rss1 = vmrss_kib(d.proc.pid)
    log(f"a client sent {sent // len(frame)} pings ({sent >> 10} KiB) without reading; "
        f"cellad's RSS {rss0} -> {rss1} KiB")
    check(blocked and sent < (64 << 20), f"cellad stopped reading it: its sends blocked after "
          f"{sent >> 10} KiB")
    with open(f"/proc/{d.proc.pid}/maps") as f:
        asan = "libasan" in f.read()
    if asan:  # its quarantine and shadow make RSS say nothing
        log(f"cellad runs under AddressSanitizer: RSS not compared ({rss1 - rss0:+} KiB)")
    else:
        check(rss1 - rss0 < 8192, f"cellad's memory stayed bounded: {rss1 - rss0:+} KiB")
    slow.s.close()
    check(d.get("/v1/host").status == 200, "cellad answers on")


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


class WS:
    """A WebSocket client on a connected socket (Unix or TLS)."""

    def __init__(self, sock, path, token=None, extra_headers=""):
        self.s = sock
        key = base64.b64encode(os.urandom(16)).decode()
        h = (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             f"Sec-WebSocket-Version: 13\r\n")
        if token:
            h += f"Authorization: Bearer {token}\r\n"
        self.s.sendall((h + extra_headers + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)  # byte by byte: frames may follow the headers
            if not chunk:
                raise TestFailure(f"handshake: connection closed after {head!r}")
            head += chunk
        self.head = head.decode("latin-1")
        self.status = int(self.head.split()[1])
        self.buf = b""
        if self.status == 101:
            import hashlib
            want = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            if f"Sec-WebSocket-Accept: {want}" not in self.head:
                raise TestFailure(f"wrong Sec-WebSocket-Accept in {self.head!r}")
        self.output = b""      # console bytes received
        self.texts = []        # text messages received
        self.closed = None     # (code, reason) once the server closed

    def send_frame(self, op, payload, fin=True, mask=True, claim_len=None):
        b0 = (0x80 if fin else 0) | op
        n = len(payload) if claim_len is None else claim_len
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            m = os.urandom(4)
            payload = bytes(c ^ m[i % 4] for i, c in enumerate(payload))
            hdr += m
        self.s.sendall(hdr + payload)

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode())

    def send_bin(self, data):
        self.send_frame(OP_BIN, data)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        """One frame from the server: (opcode, payload); pings answered."""
        b0, b1 = self._read(2)
        if b1 & 0x80:
            raise TestFailure("the server masked a frame")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        payload = self._read(n)
        op = b0 & 0x0F
        if op == OP_PING:
            self.send_frame(OP_PONG, payload)
        elif op == OP_BIN:
            self.output += payload
        elif op == OP_TEXT:
            self.texts.append(json.loads(payload))
        elif op == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
            self.closed = (code, payload[2:].decode())
        return op, payload

    def until(self, pred, what, timeout=30):
        """Reads frames until pred(self) holds (a deadline guards hangs)."""
        self.s.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while not pred(self):
            if time.monotonic() > deadline:
                raise TestFailure(f"no {what} within {timeout} s; output "
                                  f"{self.output[-300:]!r}, texts {self.texts}")
            try:
                self.frame()
            except EOFError:
                raise TestFailure(f"connection ended before {what}; output "
                                  f"{self.output[-300:]!r}, closed {self.closed}")
            if self.closed and not pred(self):
                raise TestFailure(f"closed {self.closed} before {what}")

    def close(self):
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        self.s.close()


def unix(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(d.sock)
    return s


def raw_status(d, req):
    """A raw request on the Unix socket: (status, head, body)."""
    s = unix(d)
    s.sendall(req.encode())
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
        if b"\r\n\r\n" in out:
            head, _, body = out.partition(b"\r\n\r\n")
            cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if cl and len(body) >= int(cl[0].split(b":")[1]):
                break
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1"), body


def handshakes(d):
    key = base64.b64encode(os.urandom(16)).decode()
    base = "GET /v1/vms/e/console/ws HTTP/1.1\r\nHost: x\r\nConnection: close, Upgrade\r\n"
    cases = [
        ("no key", base + "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
         400, "Sec-WebSocket-Key"),
        ("a key of 12 bytes", base + "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
         f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(12)).decode()}\r\n\r\n",
         400, "Sec-WebSocket-Key"),
        ("version 8", base + "Upgrade: websocket\r\nSec-WebSocket-Version: 8\r\n"
         f"Sec-WebSocket-Key: {key}\r\n\r\n", 400, "Sec-WebSocket-Version"),
        ("no Upgrade", base + f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n",
         400, "Upgrade"),
        ("a POST", "POST /v1/vms/e/console/ws HTTP/1.1\r\nHost: x\r\nConnection: close, "
         f"Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
         f"{key}\r\nContent-Length: 0\r\n\r\n", 405, "method"),
    ]
    for what, req, want, field in cases:
        st, head, body = raw_status(d, req)
        err = json.loads(body)["error"]
        check(st == want and err["field"] == field,
              f"handshake with {what}: {st} ({err['message']})")
        if field == "Sec-WebSocket-Version":
            check("Sec-WebSocket-Version: 13" in head, "the version spoken is named")
    st, _, body = raw_status(d, "GET /v1/vms/nosuch/console/ws HTTP/1.1\r\nHost: x\r\n"
                             "Connection: close, Upgrade\r\nUpgrade: websocket\r\n"
                             f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n")
    check(st == 404, "a VM that does not exist: 404 before any upgrade")


def test(args):
    if not shutil.which("openssl"):
        skip("'openssl' is not installed (certificates for the HTTPS API)")
    tmp = tempfile.mkdtemp(prefix="cella-ws-")
    make_pki(tmp)
    ca = f"{tmp}/ca.pem"
    tokens = {}
    for role in ("admin", "operator", "viewer"):
        tokens[role] = f"{role}-token-for-the-ws-test-{os.getpid()}"
        with open(os.path.join(tmp, role), "w") as f:
            f.write(tokens[role] + "\n")
    cfg = {"tcp": {"address": "127.0.0.1", "port": PORT, "token_file": os.path.join(tmp, "admin"),
                   "tokens": [{"file": os.path.join(tmp, r), "role": r}
                              for r in ("operator", "viewer")]},
           "tls": {"cert": f"{tmp}/server.pem", "key": f"{tmp}/server.key", "ca": ca}}
    try:
        with Daemon(args, config=cfg) as d:
            run(d, ca, tokens)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tls_ws(ca, path, token):
    s = tls_connect(PORT, ca, timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as browsers do
    return WS(s, path, token)


def run(d, ca, tokens):
    d.define("e", "echo", cpus=1)
    d.action("e", "start")
    d.wait_console("e", "echo: ready")
    handshakes(d)

    # Unix socket (root: admin). History first, then input and its echo.
    w = WS(unix(d), "/v1/vms/e/console/ws")
    check(w.status == 101, "the handshake is answered 101 with the right accept key")
    w.until(lambda w: b"echo: ready" in w.output, "history")
    check(True, "the history arrives first")
    w.send_text("hello over ws\n")
    w.until(lambda w: b"echo: hello over ws\n" in w.output, "the echo of a text message")
    check(True, "a typed line (text message) is echoed by the guest")
    lat = []
    for i in range(20):
        t0 = time.monotonic()
        w.send_text(f"k{i}\n")
        w.until(lambda w: f"echo: k{i}\n".encode() in w.output, f"the echo of k{i}")
        lat.append((time.monotonic() - t0) * 1000)
    lat.sort()
    log(f"line-to-echo over the WebSocket (Unix socket, 20 lines): median {lat[10]:.2f} ms, "
        f"max {lat[-1]:.2f} ms")
    w.send_bin(b"binary line\r")
    w.until(lambda w: b"echo: binary line\n" in w.output, "the echo of a binary message")
    check(True, "a binary message is input too")
    w.send_text(json.dumps({"resize": [120, 40]}))
    w.send_text("after resize\n")
    w.until(lambda w: b"echo: after resize\n" in w.output, "the line after the resize")
    check(not w.texts and b'{"resize"' not in w.output,
          "a resize is accepted and is not typed into the guest")
    w.send_text('{"resize": "big"}')
    w.until(lambda w: w.texts, "an error for a malformed resize")
    check(w.texts[0]["error"]["field"] == "resize", f"malformed resize: {w.texts[0]}")
    w.send_frame(OP_PING, b"are you there")
    w.s.settimeout(30)
    got = [w.frame() for _ in range(1)]
    while got[-1][0] != OP_PONG:
        got.append(w.frame())
    check(got[-1] == (OP_PONG, b"are you there"), "a ping is answered with its payload")

    # HTTPS with bearer tokens: an operator types; a viewer only reads.
    s = tls_connect(PORT, ca, timeout=30)
    ws_none = WS(s, "/v1/vms/e/console/ws")
    check(ws_none.status == 401, "over TCP without a token: 401")
    s.close()
    op = tls_ws(ca, "/v1/vms/e/console/ws?history=0", tokens["operator"])
    check(op.status == 101, "operator over HTTPS: 101")
    vw = tls_ws(ca, "/v1/vms/e/console/ws", tokens["viewer"])
    check(vw.status == 101, "viewer over HTTPS: 101")
    vw.until(lambda w: b"echo: after resize" in w.output, "the viewer's history")
    op.send_text("typed over tls\n")
    op.until(lambda w: b"echo: typed over tls\n" in w.output, "the operator's echo")
    check(not op.output.startswith(b"echo: ready"), "history=0: no history")
    lat = []
    for i in range(20):
        t0 = time.monotonic()
        op.send_text(f"t{i}\n")
        op.until(lambda w: f"echo: t{i}\n".encode() in w.output, f"the echo of t{i}")
        lat.append((time.monotonic() - t0) * 1000)
    lat.sort()
    log(f"line-to-echo over the WebSocket (HTTPS, 20 lines): median {lat[10]:.2f} ms, "
        f"max {lat[-1]:.2f} ms")
    vw.send_text("viewer typed\n")
    vw.until(lambda w: w.texts, "the viewer's refusal")
    err = vw.texts[0]["error"]
    check(err["field"] == "role" and "operator" in err["reason"],
          f"a viewer's input is refused: {err['message']}")
    op.send_text("marker\n")
    vw.until(lambda w: b"echo: marker\n" in w.output, "the marker on the viewer's console")
    check(b"viewer typed" not in vw.output and vw.closed is None,
          "the viewer's input never reached the guest and its console stays open")
    vw.close()
    cookie_origin(ca, tokens)

    # Oversized messages: 1009.
    big = WS(unix(d), "/v1/vms/e/console/ws?history=0")
    big.send_bin(b"x" * 70000)
    big.until(lambda w: w.closed, "the close")
    check(big.closed[0] == 1009, f"a 70000-byte message is closed with 1009: {big.closed}")
    big.s.close()
    huge = WS(unix(d), "/v1/vms/e/console/ws?history=0")
    huge.send_frame(OP_BIN, b"x" * 16, claim_len=1 << 40)
    huge.until(lambda w: w.closed, "the close")
    check(huge.closed[0] == 1009, "a frame claiming 1 TiB is closed with 1009 at once")
    huge.s.close()

    # 20 sockets at once: no thread each.
    deadline = time.monotonic() + 10
    base = threads(d.proc.pid)
    many = []
    for i in range(20):
        many.append(WS(unix(d), "/v1/vms/e/console/ws?history=0"))
    check(all(m.status == 101 for m in many), "20 WebSockets open")
    now = threads(d.proc.pid)
    while now > base and time.monotonic() < deadline:
        time.sleep(0.05)  # handler threads of the handshakes exiting (polled)
        now = threads(d.proc.pid)
    check(now <= base, f"cellad's threads: {base} before, {now} with 20 more WebSockets")
    op.send_text("to all\n")
    for m in many:
        m.until(lambda w: b"echo: to all\n" in w.output, "the echo on every socket")
    check(True, "all 20 sockets got the guest's output")
    for m in many:
        m.close()

    flood(d, ca, tokens)

    # The event stream as a WebSocket: the backlog, then what comes.
    ev = tls_ws(ca, "/v1/events/ws?since=0&vm=e", tokens["viewer"])
    check(ev.status == 101, "events over a WebSocket, as a viewer: 101")
    ev.until(lambda w: any(t.get("event") == "started" for t in w.texts), "the backlog")
    check(all(t.get("vm") == "e" for t in ev.texts), "one JSON event per text message, "
          f"filtered by vm ({len(ev.texts)} events)")
    ev.send_text("hi")
    ev.until(lambda w: any("error" in t for t in w.texts), "the refusal of input")
    n_before = len(ev.texts)

    # The VM stops: closed with 1000 and its state.
    w.send_text("quit\n")
    w.until(lambda w: w.closed, "the close when the VM stops")
    check(w.closed[0] == 1000 and "stopped" in w.closed[1],
          f"the VM stopped: closed with {w.closed}")
    check(b"PASS echo" in w.output, "the guest's last output came before the close")
    op.until(lambda w: w.closed, "the operator's close")
    w.s.close()
    op.s.close()
    d.wait_state("e", "stopped")
    ev.until(lambda w: any(t.get("event") == "stopped" for t in w.texts[n_before:]),
             "the stop event")
    check(True, "the event WebSocket brought the stop as it happened")
    ev.close()
    w2 = WS(unix(d), "/v1/vms/e/console/ws")
    w2.until(lambda w: w.closed, "the close of a stopped VM's console")
    check(b"PASS echo" in w2.output and w2.closed[0] == 1000,
          f"a stopped VM's console: its history, then closed {w2.closed} {w2.output[-200:]!r}")
    w2.s.close()

    # cellad stops with a socket open: closed with 1001 before it goes.
    last = WS(unix(d), "/v1/events/ws")
    check(last.status == 101, "an event WebSocket open as cellad stops")
    d.stop()
    last.until(lambda w: w.closed, "the close as cellad stops")
    check(last.closed == (1001, "cellad is stopping"), f"cellad stopping: {last.closed}")
    check("not closed" not in d.log(), "no upgraded connection was left to MHD")
    last.s.close()


if __name__ == "__main__":
    main(test)
