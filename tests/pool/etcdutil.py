"""etcdutil.py: throwaway etcd clusters for the pool tests (stdlib only).

Each Cluster has its own temporary directory: a CA and certificates made
with the openssl CLI (tests/security/tlsutil.py), one data directory per
member, and members on free loopback ports that speak only mutual TLS, to
clients (--client-cert-auth) and to each other (--peer-client-cert-auth).
Scripts exit 77 (skip, loudly) when etcd is not installed."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "security"))
import tlsutil  # noqa: E402

EXIT_SKIP = 77


def log(msg):
    print(f"[pool-test] {msg}", flush=True)


def need_etcd():
    if not shutil.which("etcd"):
        print("#" * 72, flush=True)
        print("# SKIP: etcd is not installed (apt-get install etcd-server etcd-client)",
              flush=True)
        print("#" * 72, flush=True)
        sys.exit(EXIT_SKIP)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Member:
    def __init__(self, cluster, i):
        self.cluster = cluster
        self.name = f"m{i}"
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data = os.path.join(cluster.dir, f"{self.name}.etcd")
        self.log_path = os.path.join(cluster.dir, f"{self.name}.log")
        self.proc = None

    @property
    def endpoint(self):
        return f"https://{self.cluster.host}:{self.client_port}"

    @property
    def peer_url(self):
        return f"https://{self.cluster.host}:{self.peer_port}"

    def start(self, state="new"):
        d = self.cluster.dir
        cmd = ["etcd", "--name", self.name, "--data-dir", self.data,
               "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
               "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls",
               self.peer_url, "--initial-cluster", self.cluster.initial_cluster(),
               "--initial-cluster-state", state, "--initial-cluster-token",
               os.path.basename(d),
               "--client-cert-auth", "--trusted-ca-file", f"{d}/ca.pem",
               "--cert-file", f"{d}/etcd.pem", "--key-file", f"{d}/etcd.key",
               "--peer-client-cert-auth", "--peer-trusted-ca-file", f"{d}/ca.pem",
               "--peer-cert-file", f"{d}/etcd.pem", "--peer-key-file", f"{d}/etcd.key",
               "--heartbeat-interval", "50", "--election-timeout", "500"]
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=self.logf)
        return self

    def stop(self, sig=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        self.stop(9)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Cluster:
    """n etcd members with mutual TLS. Use as a context manager."""

    def __init__(self, n=1, host="127.0.0.1"):
        """host: the address the members listen on (a bridge's, for cellads
        in network namespaces: tests/pool/test_pool_hosts.py)."""
        need_etcd()
        self.host = host
        self.dir = tempfile.mkdtemp(prefix="cella-etcd-")
        tlsutil.make_pki(self.dir, names=("etcd", "client"), ips=sorted({"127.0.0.1", host}))
        tlsutil.make_pki(self.dir, names=("stranger",), ca="otherca")
        self.members = [Member(self, i) for i in range(n)]

    def initial_cluster(self):
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self):
        return [m.endpoint for m in self.members]

    @property
    def ca(self):
        return f"{self.dir}/ca.pem"

    @property
    def cert(self):
        return f"{self.dir}/client.pem"

    @property
    def key(self):
        return f"{self.dir}/client.key"

    def store_config(self, prefix="/cella/test", host=None):
        c = {"endpoints": self.endpoints, "ca": self.ca, "cert": self.cert, "key": self.key,
             "prefix": prefix}
        if host:
            c["host"] = host
        return c

    def start(self, timeout=30):
        for m in self.members:
            m.start()
        self.wait_healthy(timeout)
        return self

    def etcdctl(self, *args, endpoints=None, check=True):
        env = dict(os.environ, ETCDCTL_API="3")
        cmd = ["etcdctl", "--endpoints", ",".join(endpoints or self.endpoints), "--cacert",
               self.ca, "--cert", self.cert, "--key", self.key, "--dial-timeout", "2s",
               "--command-timeout", "3s", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=check)

    def wait_healthy(self, timeout=30, members=None):
        members = members or [m for m in self.members if m.proc]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in members:
                if m.proc and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited:\n{m.log()}")
            r = self.etcdctl("endpoint", "health", endpoints=[m.endpoint for m in members],
                             check=False)
            if r.returncode == 0:
                return
            time.sleep(0.1)  # guard loop: members elect a leader
        raise RuntimeError("etcd did not become healthy:\n" +
                           "\n".join(m.log()[-3000:] for m in members))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def cleanup(self):
        for m in self.members:
            m.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    # A one-member cluster to try by hand: prints a store config, waits
    # (Ctrl-C or SIGTERM stops the member and removes its files).
    import signal

    def _stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    with Cluster(1) as c:
        print(json.dumps({"store": {"etcd": c.store_config()}}), flush=True)
        try:
            time.sleep(3600)
        except KeyboardInterrupt:
            pass
