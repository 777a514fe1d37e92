"""daemon.py: a private cellad for the browser tests and bench/web.mjs.

Started by tests/web/lib.mjs with the usual test arguments (--cellad, --cella,
--cella-vm, NAME=GUEST.elf...) plus --ui-dir DIR; it runs a cellad through
tests/daemon/cellad.py (its own state dir, socket, cgroups) with the web
console on a plain-HTTP loopback port and a bearer token, prints one JSON
line {url, token, sock, dir, guests, pid} once the console answers, and then
keeps it running until its stdin closes (the test ended or died); then every
VM is turned off and the daemon stopped. Exits 77 where /dev/kvm is missing.

--pool N (web-pool): this cellad is host-a of a pool on a one-member etcd
(tests/pool/etcdutil.py: loopback, mutual TLS) given by configuration (a
"store" and a "pool" section, as pool-members), with N-1 more cellads
(host-b, ...) on the same etcd, without a web listener; the JSON line adds
"pool": {"name", "hosts": {NAME: {"sock", "pid"}}}. Each host has a
certificate from the pool's CA (CN its name, IP 127.0.0.1) for mutual TLS
between hosts, and each host but host-a a TCP API on loopback given as its pool
address, so host-a forwards requests on their VMs there (docs/pool.md, "Any
host answers for the pool"). Exits 77 without etcd.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pool"))
from cellad import Daemon, args_from_argv, skip  # noqa: E402

POOL_PREFIX = "/cella/web"


def host_cert(cluster, host):
    """host's certificate from the pool's CA (the etcd cluster's): CN the
    host's name (how a forwarding host is known), IP 127.0.0.1."""
    d = cluster.dir
    with open(f"{d}/{host}.ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout",
        f"{d}/{host}.key", "-out", f"{d}/{host}.csr")
    run("x509", "-req", "-in", f"{d}/{host}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{d}/{host}.ext", "-out", f"{d}/{host}.pem")
    return {"cert": f"{d}/{host}.pem", "key": f"{d}/{host}.key", "ca": f"{d}/ca.pem"}


def pool_conf(cluster, host, mib, port=None, token_file=None):
    """A pool member by configuration: the store, the pool, its capacity,
    its certificate; with port, a TCP API on loopback that is its pool
    address. Each starts only its own VMs (the tests name the host)."""
    c = {"store": {"etcd": cluster.store_config(prefix=POOL_PREFIX, host=host)},
         "pool": {"lease_ttl_s": 5},
         "memory_capacity_mib": mib, "tls": host_cert(cluster, host)}
    if port:
        c["pool"]["address"] = f"https://127.0.0.1:{port}"
        c["tcp"] = {"address": "127.0.0.1", "port": port, "token_file": token_file}
    return c


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
    npool = int(args.get("pool", "0"))
    cluster, others = None, []
    if npool:
        import etcdutil  # the pool tests' throwaway etcd (exits 77 without etcd)
        etcdutil.need_etcd()
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
        info = {}
        if npool:
            cluster = etcdutil.Cluster(1).start()
            d.config.update(pool_conf(cluster, "host-a", 2048))
            for i in range(1, npool):
                name = f"host-{chr(ord('a') + i)}"
                o = Daemon(args, name=name, config=pool_conf(cluster, name, 1024, free_port(),
                                                             tokf))
                o.config["cgroup_parent"] = o.cgroup_parent = f"cella-test-{os.getpid()}-{name}"
                others.append(o)
        d.start()
        for o in others:
            o.start()
        if npool:
            info["pool"] = {"name": POOL_PREFIX.rsplit("/", 1)[1],
                            "hosts": {"host-a": {"sock": d.sock, "pid": d.proc.pid},
                                      **{o.name: {"sock": o.sock, "pid": o.proc.pid}
                                         for o in others}}}
        url = f"http://127.0.0.1:{port}"
        print(json.dumps({"url": url, "token": token, "viewer_token": viewer, "sock": d.sock,
                          "dir": d.dir, "guests": args["guests"], "pid": d.proc.pid, **info}),
              flush=True)
        while sys.stdin.read(4096):
            pass
    finally:
        for o in others:
            o.cleanup()
        d.cleanup()
        if cluster:
            cluster.cleanup()


if __name__ == "__main__":
    main()
