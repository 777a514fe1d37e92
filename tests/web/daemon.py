"""daemon.py: a private cellad for the browser tests and bench/web.mjs.

Started by tests/web/lib.mjs with the usual test arguments (--cellad, --cella,
--cella-vm, NAME=GUEST.elf...) plus --ui-dir DIR; it runs a cellad through
tests/daemon/cellad.py (its own state dir, socket, cgroups) with the web
console on a plain-HTTP loopback port and a bearer token, prints one JSON
line {url, token, sock, dir, guests, pid} once the console answers, and then
keeps it running until its stdin closes (the test ended or died); then every
VM is turned off and the daemon stopped. Exits 77 where /dev/kvm is missing.
"""

import json
import os
import secrets
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from cellad import Daemon, args_from_argv, skip  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    args = args_from_argv()
    if not os.path.exists("/dev/kvm"):
        skip("/dev/kvm is missing: the browser tests boot guests")
    extra = json.loads(args.get("config", "{}"))
    d = Daemon(args, name="cellad-web")
    token = secrets.token_urlsafe(32)
    tokf = os.path.join(d.dir, "token")
    with open(tokf, "w") as f:
        f.write(token + "\n")
    os.chmod(tokf, 0o600)
    viewer = secrets.token_urlsafe(32)
    vtokf = os.path.join(d.dir, "viewer-token")
    with open(vtokf, "w") as f:
        f.write(viewer + "\n")
    port = free_port()
    d.config.update({"tcp": {"token_file": tokf, "tokens": [{"file": vtokf, "role": "viewer"}]},
                     "http_loopback_port": port, "ui_dir": args["ui_dir"],
                     "console_history_kib": 256})
    d.config.update(extra)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        d.start()
        url = f"http://127.0.0.1:{port}"
        print(json.dumps({"url": url, "token": token, "viewer_token": viewer, "sock": d.sock,
                          "dir": d.dir, "guests": args["guests"], "pid": d.proc.pid}), flush=True)
        while sys.stdin.read(4096):
            pass
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
