#!/usr/bin/env python3
"""test_pool_console.py: the console of a VM another pool host owns,
forwarded to its owner (docs/pool.md, "Any host answers for the pool").
Two cellads in network namespaces on a bridge, one etcd member on its
address, the pool made with create and join (tests/pool/poolutil.py);
a `ticker` and an `echo` guest run on host-b (h01), every request goes to
host-a (h00):

- `cella vm console tk --no-follow` on host-a prints the ticker's lines;
  GET console with history=0&follow=true shows a line newer than any in
  the history, arriving as it is printed.
- Input posted to host-a (raw bytes) reaches the echo guest on host-b: its
  answer is on the console, read through host-a and on host-b.
- Over TCP with a viewer token: host-a streams the console, and refuses
  the viewer's input itself (403, nothing forwarded).
- The console's WebSocket (GET .../console/ws) on host-a, forwarded to
  host-b: the ticker's history, then lines newer than it as they come
  (one transfer thread on host-a while it is open, none after); a line
  typed into the echo guest's socket is echoed (read on the socket and on
  host-b), a resize is accepted; a viewer's socket over TCP reads, its
  input is refused by host-a with an error message and never forwarded;
  the VM killed: the socket closes with 1000 and a reason; host-b's
  cellad frozen: input typed on host-a is reported undelivered; killed: the socket closes with 1011 naming host-b, and a new
  handshake is a 502 naming it.
- A client that leaves ends the transfer to the owner: host-a's thread
  count is back where it was.
- host-b's cellad killed mid-stream: host-a's stream ends (cut off, as the
  owner's was), host-a answers on; then GET and POST console on host-b's
  VM are 502s naming host-b.

Needs root (namespaces), etcd and /dev/kvm; skips loudly without them.
Usage: test_pool_console.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
from cellad import TestFailure, UnixHTTPConnection, check, log, main, skip  # noqa: E402

import etcdutil  # noqa: E402
import poolutil  # noqa: E402
from test_web_console_ws import OP_PING, OP_PONG, WS  # noqa: E402  (tests/daemon: the RFC 6455 client)

VIEWER_TOKEN = "pool-console-viewer-token-0123456789"


def transfers(pid):
    """cellad's threads that carry a forwarded stream (features/peer_stream.c
    names them)."""
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                n += f.read().strip() == "peer-stream"
        except OSError:
            pass
    return n


def ticks(text):
    return [int(n) for n in re.findall(r"ticker: (\d+)\n", text)]


def open_console(h, vm, history, follow=True, timeout=30):
    """A console stream of vm through h's Unix socket: (connection, response)."""
    c = UnixHTTPConnection(h.sock, timeout=timeout)
    c.request("GET", f"/v1/vms/{vm}/console?history={history}&follow="
              f"{'true' if follow else 'false'}")
    return c, c.getresponse()


def read_until(r, pred, what, timeout=30):
    """Reads the stream r until pred(bytes so far); returns them."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not pred(buf):
        if time.monotonic() > deadline:
            raise TestFailure(f"{what}: not seen within {timeout} s; got {buf[-300:]!r}")
        chunk = r.read1(65536)
        if not chunk:
            raise TestFailure(f"{what}: the stream ended first; got {buf[-300:]!r}")
        buf += chunk
    return buf


def https(h, ca, method, path, body=None, token=VIEWER_TOKEN):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # the certificate names the host's IP: checked by the CA
    c = http.client.HTTPSConnection(h.addr, poolutil.PORT, context=ctx, timeout=30)
    c.request(method, path, body=body, headers={"Authorization": f"Bearer {token}"})
    return c, c.getresponse()


def ws_unix(h, path):
    """A WebSocket on h's Unix socket (root: operator)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(h.sock)
    return WS(s, path)


def ws_tls(h, ca, path, token=VIEWER_TOKEN):
    """A WebSocket on h's TCP API (TLS, a bearer token)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # the certificate names the host's IP: checked by the CA
    s = ctx.wrap_socket(socket.create_connection((h.addr, poolutil.PORT), timeout=30))
    return WS(s, path, token)


def wait_transfers(pid, want, timeout=20):
    t0 = time.monotonic()
    while transfers(pid) != want and time.monotonic() < t0 + timeout:
        time.sleep(0.05)  # the transfer notices its reader left: polled with a deadline
    return time.monotonic() - t0


def ws_forwarded(a, b, ca):
    """The console WebSocket on host-a of host-b's VMs (docs/web.md, "Pools")."""
    pid = a.proc.pid
    w = ws_unix(a, "/v1/vms/tk/console/ws?history=2048")
    check(w.status == 101, f"the console WebSocket of host-b's tk on host-a: {w.status} "
          f"{w.head.splitlines()[0]}")
    w.until(lambda x: len(ticks(x.output.decode())) >= 2, "the ticker's history")
    hist = ticks(w.output.decode())
    w.until(lambda x: max(ticks(x.output.decode())) > max(hist) + 2, "live ticker lines")
    seen = ticks(w.output.decode())
    check(seen == sorted(seen) and len(w.output) > 0,
          f"tk's socket on host-a: history (ticker: {hist[0]}..{hist[-1]}) then live lines "
          f"(..{seen[-1]}), in order")
    check(transfers(pid) == 1, f"one transfer thread on host-a for the socket "
          f"({transfers(pid)})")
    w.close()
    took = wait_transfers(pid, 0)
    check(transfers(pid) == 0, f"the socket closed: host-a's transfer ended ({took:.2f} s)")

    e = ws_unix(a, "/v1/vms/ec/console/ws")
    check(e.status == 101, f"the echo guest's socket on host-a: {e.status}")
    e.until(lambda x: b"echo: L35-19 " in x.output, "the echo guest's history (its last echo)")
    e.send_text('{"resize": [120, 40]}')
    e.send_text("ws-through-a\n")
    t0 = time.monotonic()
    e.until(lambda x: b"echo: ws-through-a" in x.output, "the echo of a typed line")
    check(not e.texts, f"a line typed into host-a's socket is echoed by the guest on host-b "
          f"({(time.monotonic() - t0) * 1000:.0f} ms), the resize accepted (no error: "
          f"{e.texts})")
    check("echo: ws-through-a" in b.wait_console("ec", "echo: ws-through-a"),
          "the typed line reached the guest on host-b")
    # Keystrokes one by one, as a browser sends them: in order, whole.
    for ch in "keys-1by1\n":
        e.send_bin(ch.encode())
    e.until(lambda x: b"echo: keys-1by1" in x.output, "the echo of single keystrokes")

    fwd_before = a.log().count("POST /v1/vms/ec/console forwarded")
    v = ws_tls(a, ca, "/v1/vms/ec/console/ws")
    check(v.status == 101, f"a viewer's socket over TCP on host-a: {v.status}")
    v.until(lambda x: b"echo: ws-through-a" in x.output, "the viewer's history")
    v.send_text("viewer-ws\n")
    v.until(lambda x: x.texts, "the viewer's input refused")
    err = v.texts[0].get("error", {})
    check(err.get("field") == "role" and "operator" in err.get("message", ""),
          f"the viewer's input refused by host-a: {err.get('message')}")
    e.send_text("after-viewer\n")
    e.until(lambda x: b"echo: after-viewer" in x.output, "the echo after the viewer's try")
    check(b"viewer-ws" not in e.output and
          a.log().count("POST /v1/vms/ec/console forwarded") == fwd_before + 1,
          "the viewer's input was never forwarded (only the operator's next line was)")
    v.close()
    e.close()
    wait_transfers(pid, 0)


def wait_listed(a, vms, owner, timeout=30):
    """host-a's pool-wide list shows each of vms on owner (the watch)."""
    deadline = time.monotonic() + timeout
    while True:
        listed, _ = a.pool_list()
        if all(listed.get(v) == [owner] for v in vms):
            return
        if time.monotonic() > deadline:
            raise TestFailure(f"{a.name} lists {listed}, want {vms} on {owner}")
        time.sleep(0.1)  # the pool's watch brings host-b's VMs: polled with a deadline


def test(args):
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the hosts")
    for tool in ("ip", "openssl"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    etcdutil.need_etcd()
    for g in ("ticker", "echo"):
        if g not in args["guests"]:
            skip(f"the {g} guest is not built")
    tmp = tempfile.mkdtemp(prefix="cella-pool-console-")
    tok = os.path.join(tmp, "viewer")
    with open(tok, "w") as f:
        f.write(VIEWER_TOKEN + "\n")
    try:
        with poolutil.ScalePool(args, 2, etcd_members=1, ttl=3, tag="cq", salt=7, width=2,
                                tcp_tokens=[{"file": tok, "role": "viewer"}]) as pool:
            run(pool)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(pool):
    pool.up()
    pool.form()
    a, b = pool.hosts["h00"], pool.hosts["h01"]
    ca = pool.cluster.ca
    b.define("tk", "ticker", "period_ms=200", memory_mib=16)
    b.define("ec", "echo", memory_mib=16)
    for vm in ("tk", "ec"):
        b.action(vm, "start", {"host": b.name})
    b.wait_console("tk", "ticker: 3")
    b.wait_console("ec", "echo: ready")
    wait_listed(a, ("tk", "ec"), b.name)
    check(a.get("/v1/vms/tk").json.get("state") == "running", "host-a answers for tk "
          "(forwarded GET)")

    # History, through the CLI on host-a.
    p = a.cli("vm", "console", "tk", "--no-follow")
    seen = ticks(p.stdout)
    check(len(seen) >= 3 and seen == sorted(seen),
          f"`cella vm console tk --no-follow` on host-a prints host-b's guest's lines "
          f"(ticker: {seen[0]}..{seen[-1]})")
    r = a.get("/v1/vms/tk/console?history=64&follow=false")
    check(r.status == 200 and 0 < len(r.body.encode()) <= 64 and "ticker: " in r.body,
          f"GET console?history=64&follow=false on host-a: the last {len(r.body)} bytes")

    # Follow: a line newer than the history arrives.
    pid = a.proc.pid
    last = max(seen)
    c, resp = open_console(a, "tk", history=0)
    check(resp.status == 200 and resp.getheader("Content-Type") == "application/octet-stream",
          "follow on host-a: 200, application/octet-stream")
    t0 = time.monotonic()
    buf = read_until(resp, lambda x: any(n > last + 2 for n in ticks(x.decode())),
                     "a new ticker line through host-a")
    new = ticks(buf.decode())
    check(min(new) > last and new == sorted(new),
          f"follow=true on host-a: new lines arrive as the guest prints them (ticker: "
          f"{new[0]}..{new[-1]} after {last}, {time.monotonic() - t0:.1f} s)")

    # The client leaves: host-a's transfer to the owner ends with it.
    during = transfers(pid)
    c.close()
    t0 = time.monotonic()
    while transfers(pid) and time.monotonic() < t0 + 20:
        time.sleep(0.05)  # the transfer notices its reader left: polled with a deadline
    check(during == 1 and transfers(pid) == 0,
          f"the client left: host-a's transfer to host-b ended ({during} transfer thread "
          f"while following, none {time.monotonic() - t0:.2f} s after)")

    # Input through host-a reaches the guest on host-b.
    r = a.request("POST", "/v1/vms/ec/console", raw=b"through-a \x01\xff\n",
                  headers={"Content-Type": "application/octet-stream"})
    check(r.status == 204, f"POST console on host-a (raw bytes): {r.status}")
    got = a.wait_console("ec", "echo: through-a")
    check("echo: through-a" in b.wait_console("ec", "echo: through-a"),
          "the echo guest on host-b answered the input sent to host-a")
    check("echo: through-a" in got, "its answer read through host-a")
    # A silent console: the forwarded stream opens before any byte comes,
    # and input sent through host-a comes back on it.
    t0 = time.monotonic()
    c, resp = open_console(a, "ec", history=0)
    check(resp.status == 200, f"following the silent echo guest through host-a: 200 "
          f"({time.monotonic() - t0:.2f} s, no byte yet)")
    r = a.request("POST", "/v1/vms/ec/console", raw=b"second\n")
    buf = read_until(resp, lambda x: b"echo: second" in x, "the echo on the open stream")
    check(r.status == 204 and b"echo: second" in buf,
          "input through host-a, its echo on host-a's open stream")
    # Volume: 72 KiB of lines sent through host-a in batches, each echoed
    # back on the open stream (more than the transfer's 64 KiB ring: it
    # wraps), every line there, in order, whole.
    t0 = time.monotonic()
    sent, got = [], b""
    for batch in range(36):
        lines = [f"L{batch:02d}-{i:02d} " + "x" * 90 for i in range(20)]
        sent += lines
        data = "".join(x + "\n" for x in lines).encode()
        deadline = time.monotonic() + 30
        while True:
            r = a.request("POST", "/v1/vms/ec/console", raw=data)
            if r.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # the UART's socket is full: polled with a deadline
        if r.status != 204:
            raise TestFailure(f"batch {batch}: POST console through host-a: {r}")
        want = f"echo: {lines[-1]}\n".encode()
        got += read_until(resp, lambda x: want in x, f"the echo of batch {batch}")
    echoed = [x[len("echo: "):] for x in got.decode().split("\n") if x.startswith("echo: L")]
    check(echoed == sent, f"{len(got) >> 10} KiB echoed through host-a in "
          f"{time.monotonic() - t0:.1f} s: all {len(sent)} lines, in order, whole")
    # Its client leaves while the owner is silent: the transfer ends too
    # (the API's ticker notices within 5 s, the transfer within a second).
    c.close()
    t0 = time.monotonic()
    while transfers(pid) and time.monotonic() < t0 + 20:
        time.sleep(0.05)  # polled with a deadline
    check(transfers(pid) == 0, f"a silent stream's client left: the transfer ended "
          f"{time.monotonic() - t0:.1f} s later")
    r = a.request("POST", "/v1/vms/ec/console", raw=b"")
    check(r.status == 400, f"an empty input: 400 at host-a ({r.status})")

    # A viewer over TCP: reads, cannot write (refused by host-a itself).
    c, resp = https(a, ca, "GET", "/v1/vms/tk/console?history=256&follow=false")
    body = resp.read().decode()
    c.close()
    check(resp.status == 200 and "ticker: " in body,
          f"a viewer token on host-a's TCP API reads host-b's console ({resp.status})")
    fwd_before = a.log().count("POST /v1/vms/ec/console forwarded")
    c, resp = https(a, ca, "POST", "/v1/vms/ec/console", body=b"viewer\n")
    err = resp.read().decode()
    c.close()
    check(resp.status == 403 and "operator" in err,
          f"the viewer's input: 403 at host-a naming the role ({resp.status})")
    check(a.log().count("POST /v1/vms/ec/console forwarded") == fwd_before,
          "the viewer's input was never forwarded")
    r = a.get("/v1/vms/tk/console?history=x")
    check(r.status == 400, f"a bad history: 400 at host-a ({r.status})")
    # The console's WebSocket, forwarded to the owner.
    ws_forwarded(a, b, ca)

    # `cella vm console ec` on host-a both ways: its input echoed, and
    # "quit" ends the guest on host-b, which ends the command.
    p = a.cli("vm", "console", "ec", input="via-cli\nquit\n")
    check("echo: via-cli" in p.stdout and "PASS echo" in p.stdout,
          "`cella vm console ec` on host-a: its input echoed by the guest on host-b, and "
          "'quit' ended the guest and the command (exit 0)")
    a.action("ec", "start", {"host": b.name})
    b.wait_state("ec", "running")

    # The owner's stream ends (its VM killed, through host-a): so does
    # host-a's, whole (its last chunk).
    c, resp = open_console(a, "ec", history=0)
    w = ws_unix(a, "/v1/vms/ec/console/ws?history=0")
    check(w.status == 101, f"ec's socket on host-a: {w.status}")
    a.action("ec", "kill")
    w.until(lambda x: x.closed, "the socket's close after the kill")
    check(w.closed[0] == 1000 and "stopped" in w.closed[1] and b.name in w.closed[1],
          f"ec killed: its socket on host-a closed with {w.closed}")
    w.close()
    try:
        rest = resp.read()
        ended = f"whole ({len(rest)} bytes after the kill)"
    except http.client.IncompleteRead as e:
        ended = f"cut off ({e!r})"
    c.close()
    check(ended.startswith("whole"), f"ec killed through host-a: host-a's follower ended "
          f"{ended}")
    a.action("ec", "start", {"host": b.name})
    b.wait_state("ec", "running")

    # host-b's cellad killed mid-stream: host-a's stream ends, host-a lives.
    c, resp = open_console(a, "tk", history=0, timeout=60)
    read_until(resp, lambda x: b"ticker: " in x, "a follower before the kill")
    w = ws_unix(a, "/v1/vms/tk/console/ws?history=0")
    w.until(lambda x: b"ticker: " in x.output, "a socket's line before the kill")
    # host-b's cellad frozen (SIGSTOP): input typed on host-a cannot be
    # delivered; the client is told (the POST's connect timeout, 10 s),
    # and the loop serves the other socket meanwhile.
    e = ws_unix(a, "/v1/vms/ec/console/ws?history=0")
    check(e.status == 101, f"ec's socket on host-a before the freeze: {e.status}")
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        e.send_text("while-frozen\n")
        # The loop is not held by the waiting input: a ping is answered.
        e.send_frame(OP_PING, b"still-there")
        e.s.settimeout(30)
        while e.frame()[0] != OP_PONG:
            pass
        pong = time.monotonic() - t0
        check(pong < 5 and not e.texts, f"while the input waits for frozen host-b, the "
              f"loop answers a ping ({pong * 1000:.0f} ms)")
        e.until(lambda x: x.texts, "the undelivered input's message", timeout=90)
        msg = e.texts[0].get("error", {}).get("message", "")
        check("not delivered" in msg and b.name in msg,
              f"host-b frozen: the input typed on host-a is reported undelivered "
              f"({time.monotonic() - t0:.1f} s): {msg}")
    finally:
        e.s.close()
        os.kill(b.proc.pid, signal.SIGCONT)  # kill_hosts asks it for its workers first
    t0 = time.monotonic()
    pool.kill_hosts([b.name])
    w.until(lambda x: x.closed, "the socket's close after host-b's death")
    check(w.closed[0] == 1011 and b.name in w.closed[1],
          f"host-b's cellad killed: tk's socket on host-a closed with {w.closed} "
          f"({time.monotonic() - t0:.1f} s)")
    w.close()
    ended = None
    try:
        while resp.read1(65536):
            if time.monotonic() - t0 > 30:
                break
        ended = "at its end"
    except (http.client.IncompleteRead, ConnectionError, OSError) as e:
        ended = f"cut off ({type(e).__name__})"
    c.close()
    check(ended is not None and time.monotonic() - t0 < 30,
          f"host-b's cellad killed: host-a's stream ended {ended} "
          f"{time.monotonic() - t0:.1f} s later")
    check(a.proc.poll() is None and a.get("/v1/host").status == 200,
          "host-a's cellad is up and answers")

    # The owner cannot be reached: 502.
    r = a.get("/v1/vms/tk/console?history=64&follow=false")
    check(r.status == 502 and b.name in r.body,
          f"GET console of host-b's VM with host-b down: 502 naming it ({r.status}: "
          f"{r.json.get('error', {}).get('message', '')[:120] if r.json else r.body[:120]})")
    r = a.request("POST", "/v1/vms/ec/console", raw=b"x\n")
    check(r.status == 502, f"POST console input: 502 ({r.status})")
    w = ws_unix(a, "/v1/vms/tk/console/ws")
    check(w.status == 502 and b.name in w.head + w.s.recv(4096).decode(errors="replace"),
          f"the console WebSocket of tk with host-b down: {w.status} naming host-b")
    w.s.close()
    log(f"{a.name} log, forwarded: "
        f"{a.log().count('forwarded to')} requests")


if __name__ == "__main__":
    main(test)
