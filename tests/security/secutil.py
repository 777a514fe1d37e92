"""secutil.py: calling cellad's Unix socket as another uid (the test forks a
child that takes the uid), for the security tests that check roles."""

import os
import socket


def call_unix_as(sock, uid, data):
    """Send the raw request data to the socket as uid; return the raw reply."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)
            s.sendall(data)
            reply = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
            os.write(w, reply[:65536])
        finally:
            os._exit(0)
    os.close(w)
    reply = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        reply += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return reply
