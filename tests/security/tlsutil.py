"""tlsutil.py: a throwaway CA and certificates for the security tests
(openssl CLI), and TLS 1.3 client sockets to cellad's HTTPS API."""

import os
import socket
import ssl
import subprocess


def _ossl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d, names=("server", "peer"), ca="ca", ips=("127.0.0.1",)):
    """A CA (d/ca.pem) and, for each name, d/NAME.pem and d/NAME.key signed
    by it with SAN IP:127.0.0.1 (or each of ips) and DNS:NAME."""
    _ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
          f"/CN=cella test {ca}", "-keyout", f"{d}/{ca}.key", "-out", f"{d}/{ca}.pem")
    for n in names:
        with open(f"{d}/{n}.ext", "w") as f:
            f.write("subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips) + f",DNS:{n}\n")
        _ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={n}", "-keyout",
              f"{d}/{n}.key", "-out", f"{d}/{n}.csr")
        _ossl("x509", "-req", "-in", f"{d}/{n}.csr", "-CA", f"{d}/{ca}.pem", "-CAkey",
              f"{d}/{ca}.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/{n}.ext",
              "-out", f"{d}/{n}.pem")


def tls_connect(port, ca, cert=None, key=None, source=None, timeout=10):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        ctx.load_cert_chain(cert, key)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")


def read_all(s):
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ssl.SSLError, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    return out
