#!/usr/bin/env python3
"""it-console_flush: what the guest printed last reaches a console reader
that lags. The guest writes a byte at a time, each byte its own message on
the console's Unix socket, so a reader that does not keep up (cellad on a
loaded host) fills the socket after a few hundred bytes and the UART queues
the rest. The guest then ends: the worker must deliver the queued bytes
before it exits, not drop them (a daemon test once lost "PASS net" so).

The test holds the console's connection without reading until the worker
has logged its exit, then reads to EOF: the last filler line and "PASS
hello" must be there (the first bytes may go before the worker accepts the
connection; that is not what this tests)."""
import os
import socket
import tempfile
import time

import harness
from harness import TestFailure, log

LINES = 36  # ~2.7 KB: more than the socket holds in 1-byte messages, less
            # than the UART's 4 KiB queue, so the guest never waits for THRE


def test(args):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "console.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(1)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(path)  # queued: the worker accepts it when its loop runs
        g = harness.run_guest(args["guests"]["hello"], f"it=hello lines={LINES}",
                              cella_vm=args["cella_vm"])
        g.cmd += ["--console", f"unix:fd:{lsock.fileno()}"]
        g.start(pass_fds=(lsock.fileno(),))
        try:
            lsock.close()
            deadline = time.monotonic() + 60
            while not any("exit:" in line for line in g.stderr_lines):
                if time.monotonic() > deadline:
                    raise TestFailure(f"no exit logged; stderr {g.stderr_lines[-5:]}")
                time.sleep(0.02)  # polling the worker's log with a deadline
            log("the worker logged its exit; reading the console now")
            buf = b""
            client.settimeout(10)
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                buf += chunk
            g.wait_exit(timeout=30)
        finally:
            g.kill()
        text = buf.decode("utf-8", "replace")
        log(f"read {len(buf)} bytes after the exit; tail {text[-120:]!r}")
        if f"filler line {LINES - 1} " not in text or "PASS hello" not in text:
            raise TestFailure(f"the console's tail was lost: {text[-300:]!r}")
        log("ok: the queued output reached the reader after the guest ended")


harness.main(test)
