"""test_streams.py: console and event streams hold no thread each. 60
followers (event streams and a VM's console) are opened at once; cellad's
thread count does not grow with them (with a thread per connection it grew
by one per stream), every follower still gets the next event and the
console's new output, and a plain request is answered meanwhile."""

import os
import socket
import time

from cellad import ConsoleTail, Daemon, check, log, main, memwriter_rounds


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def follow(sock, path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.settimeout(30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


def saw(s, head, marker):
    """Whether the follower's stream (after its headers) brings marker."""
    buf = head.partition(b"\r\n\r\n")[2]
    while marker not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return marker in buf


def test(args):
    with Daemon(args) as d:
        d.define("s", "memwriter", "mib=4 rounds=0 pause_ms=50")
        d.action("s", "start")
        t = ConsoleTail(d, "s", 0)
        memwriter_rounds(t, 1)
        t.close()
        base = threads(d.proc.pid)
        ev, con = [], []
        for i in range(40):
            ev.append(follow(d.sock, "/v1/events?vm=s"))
        for i in range(20):
            con.append(follow(d.sock, "/v1/vms/s/console?history=0"))
        check(all(h.startswith(b"HTTP/1.1 200") for _, h in ev + con), "60 followers open")
        now = threads(d.proc.pid)
        check(now <= base + 4, f"cellad's threads: {base} before, {now} with 60 followers")
        t0 = time.monotonic()
        check(d.get("/v1/host").status == 200, "a request is answered meanwhile")
        log(f"GET /v1/host with 60 followers: {(time.monotonic() - t0) * 1000:.1f} ms")
        d.action("s", "pause")
        got = sum(saw(s, head, b'"paused"') for s, head in ev)
        check(got == 40, f"every event follower got the pause ({got} of 40)")
        d.action("s", "resume")
        got = sum(saw(s, head, b"round") for s, head in con)
        check(got == 20, f"every console follower got new output ({got} of 20)")
        for s, _ in ev + con:
            s.close()
        d.action("s", "kill")


if __name__ == "__main__":
    main(test)
