#!/usr/bin/env python3
"""test_mtls.py: the etcd clusters the pool tests start (and docs/pool.md's
settings) take clients and peers with certificates from the pool's CA
only: a client without a certificate, or with one from another CA, is
refused on the client port and on the peer port; ours is served."""

import sys

import etcdutil
import tlsutil


def request(port, c, cert=None, key=None, path="/v3/kv/range", body=b'{"key":"Lw=="}'):
    """An HTTP/1.1 POST (GET without a body) over TLS 1.3; the reply's first
    line, or the error."""
    try:
        s = tlsutil.tls_connect(port, c.ca, cert, key)
        s.sendall((b"POST " if body else b"GET ") + path.encode() +
                  b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        out = tlsutil.read_all(s)
        s.close()
        return out.split(b"\r\n", 1)[0].decode(errors="replace") or "refused (no reply)"
    except OSError as e:
        return f"refused ({e.__class__.__name__}: {e})"


def main():
    etcdutil.need_etcd()
    fails = 0
    with etcdutil.Cluster(1) as c:
        m = c.members[0]
        d = c.dir
        cases = [
            ("client port, our certificate", m.client_port, c.cert, c.key, True),
            ("client port, no certificate", m.client_port, None, None, False),
            ("client port, another CA's certificate", m.client_port, f"{d}/stranger.pem",
             f"{d}/stranger.key", False),
            ("peer port, our certificate", m.peer_port, c.cert, c.key, True),
            ("peer port, no certificate", m.peer_port, None, None, False),
            ("peer port, another CA's certificate", m.peer_port, f"{d}/stranger.pem",
             f"{d}/stranger.key", False),
        ]
        for what, port, cert, key, served in cases:
            if port == m.client_port:
                first = request(port, c, cert, key)
            else:
                first = request(port, c, cert, key, path="/members", body=b"")
            ok = first.startswith("HTTP/1.1 200") if served else not first.startswith("HTTP/")
            etcdutil.log(f"{'ok' if ok else 'FAIL'}: {what}: {first}")
            fails += not ok
    if fails:
        sys.exit(1)
    etcdutil.log("PASS")


if __name__ == "__main__":
    main()
