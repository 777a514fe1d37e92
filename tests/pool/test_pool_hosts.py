#!/usr/bin/env python3
"""test_pool_hosts.py: a pool of three hosts with real processes: three
cellads, each in its own network namespace joined to a bridge by a veth
pair, and a three-member etcd cluster listening on the bridge's address
(mutual TLS; its CA is the pool's).

- `cella pool create` on host-a (the pool's CA given as files) prints a
  join token; a join with a wrong token is refused (403) and records
  nothing; host-b joins with the token, host-c with one from `cella pool
  token`; the used tokens, and an expired one, are refused (403) and record
  nothing; etcd keeps a token's hash, not its secret.
- `pool status` on each host shows the three hosts up with their capacity.
- A VM defined on host-b is listed, with its host, by every host (`cella vm
  list`); a start sent to host-a is forwarded and runs the guest on host-b
  (its console on host-b counts rounds); a stop sent to host-a stops it
  there (no worker left on host-b); a checkpoint, its list and the VM's
  deletion sent to host-a act on host-b too.
- On the forwarding path a caller with a self-signed certificate, one from
  another CA, or the pool CA's but naming no host of the pool, is refused.
- `pool leave` on host-b is refused while it owns the VM; host-c (no VMs)
  leaves: it is out of every host's status and runs as a single host again;
  it cannot create pool p1 again (it exists in etcd), and nothing is left.
- host-b's cellad SIGKILLed: host-a's event stream says pool-host-down once
  its lease TTL passed, and its pool status shows it down.
- One etcd member killed: host-a still makes tokens and renews its lease
  through the other two.

Needs root (namespaces) and etcd; skips loudly without them.
Usage: test_pool_hosts.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
from cellad import Daemon, TestFailure, check, log, main, skip  # noqa: E402

import etcdutil  # noqa: E402
import netutil  # noqa: E402
import tlsutil  # noqa: E402

NET = netutil.subnet()
BRIDGE_IP = f"{NET}.1"
ADDR = {"a": f"{NET}.2", "b": f"{NET}.3", "c": f"{NET}.4"}
PORT = 8419
# The default lease TTL: with 3 s the host fences 1.8 s after its last
# confirmed renewal, and killing the etcd leader costs an election (500 ms
# election timeout here, up to twice that, plus a WAL fsync on each member)
# on top of up to one renewal interval (600 ms): a slow disk once fenced
# host-a in CI. docs/pool.md, "Choosing the lease TTL".
TTL = 5


class Net(netutil.Net):
    """A bridge in this namespace and one namespace per host on it."""

    def __init__(self):
        super().__init__(ADDR, BRIDGE_IP, tag="cp")


class Host(Daemon):
    """A cellad in its host's namespace, with a TCP API. Its first TLS
    files are a throwaway CA's: once in the pool it uses the pool's."""

    def __init__(self, args, h, ns, boot):
        cg = f"cella-test-{os.getpid()}-{h}"
        super().__init__(args, name=f"host-{h}", config={
            "cgroup_parent": cg, "console_history_kib": 1024,
            "memory_capacity_mib": 1024 * (ord(h) - ord("a") + 1),
            "tcp": {"address": ADDR[h], "port": PORT, "token_file": f"{boot}/token"},
            "tls": {"cert": f"{boot}/{h}.pem", "key": f"{boot}/{h}.key", "ca": f"{boot}/ca.pem"}})
        self.cgroup_parent = cg
        self.ns = ns
        self.h = h
        self.url = f"https://{ADDR[h]}:{PORT}"

    def start(self):
        wrapper = netutil.ns_wrapper(os.path.join(self.dir, "cellad-in-ns"), self.ns,
                                     self.args["cellad"])
        self.args = dict(self.args, cellad=wrapper)
        return super().start()

    def wait_pool(self, want=200, timeout=30):
        """cellad starts again after create, join and leave: wait until it
        answers GET /v1/pool with want."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.proc.poll() is not None:
                    raise TestFailure(f"{self.name} exited:\n{self.log()}")
                r = self.get("/v1/pool")
                if r.status == want:
                    return r.json
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TestFailure(f"{self.name}: GET /v1/pool did not answer {want}:\n"
                                  f"{self.log()[-3000:]}")
            time.sleep(0.1)  # guard loop: cellad re-executes itself

    def status(self):
        return {h["name"]: h for h in json.loads(self.cli("--json", "pool", "status").stdout)
                ["hosts"]}


def raw_https(addr, port, cert, key, method, path, headers, ca=None):
    """One request over TLS 1.3 with a client certificate; the status."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    s = socket.create_connection((addr, port), timeout=20)
    s = ctx.wrap_socket(s)
    h = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{h}"
              f"Content-Length: 0\r\n\r\n".encode())
    reply = tlsutil.read_all(s)
    s.close()
    return int(reply.split(b" ")[1]) if reply.startswith(b"HTTP/1.1 ") else 0, reply


def post_json_https(url, body):
    """POST without a client certificate (a joining host's call); status, JSON."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    host, port = url[len("https://"):].rsplit(":", 1)
    s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=20))
    data = json.dumps(body).encode()
    s.sendall(f"POST /v1/pool/members HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
              .encode() + data)
    reply = tlsutil.read_all(s)
    s.close()
    head, _, rest = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(rest) if rest.strip() else None


def wait_pool_event(d, event, host, since, timeout):
    """Follow d's event stream from since until event for host comes."""
    from cellad import UnixHTTPConnection
    c = UnixHTTPConnection(d.sock, timeout=timeout)
    c.request("GET", f"/v1/events?since={since}")
    r = c.getresponse()
    buf, deadline = b"", time.monotonic() + timeout
    try:
        while True:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    ev = json.loads(line)
                    if ev["event"] == event and ev.get("detail") == host:
                        return ev
            if time.monotonic() > deadline:
                raise TestFailure(f"no {event} for {host} within {timeout} s")
            chunk = r.read1(65536)
            if not chunk:
                raise TestFailure(f"the event stream ended before {event}")
            buf += chunk
    finally:
        c.close()


def etcd_keys(c, prefix):
    r = c.etcdctl("get", "--prefix", prefix, "--keys-only")
    return [k for k in r.stdout.split("\n") if k]


def wrong_token(t):
    i = 7  # first secret digit
    return t[:i] + ("0" if t[i] != "0" else "1") + t[i + 1:]


def test(args):
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the hosts")
    for tool in ("ip", "openssl"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    etcdutil.need_etcd()
    boot = tempfile.mkdtemp(prefix="cella-pool-boot-")
    tlsutil.make_pki(boot, names=("a", "b", "c"))
    with open(f"{boot}/token", "w") as f:
        f.write("pool-test-bootstrap-token-0123456789\n")
    net = Net()
    hosts = {}
    try:
        net.up()
        with etcdutil.Cluster(3, host=BRIDGE_IP) as c:
            for h in ADDR:
                hosts[h] = Host(args, h, net.ns[h], boot).start()
            a, b, hc = hosts["a"], hosts["b"], hosts["c"]
            scenario(args, c, a, b, hc, boot)
    finally:
        for d in hosts.values():
            d.cleanup()
        net.down()
        shutil.rmtree(boot, ignore_errors=True)


def scenario(args, c, a, b, hc, boot):
    eps = ",".join(c.endpoints)
    # Create: the pool's CA is the one etcd trusts.
    p = a.cli("pool", "create", "p1", "--etcd", eps, "--ca-cert", c.ca, "--ca-key",
              f"{c.dir}/ca.key", "--address", a.url, "--host", "host-a", "--lease-ttl", str(TTL))
    token = next(w for w in p.stdout.split() if w.count(".") == 2 and len(w) > 100)
    check("shown once" in p.stdout, "pool create prints a join token")
    a.wait_pool()
    check(os.path.exists(os.path.join(a.state, "pool", "ca.key")) and
          oct(os.stat(os.path.join(a.state, "pool", "host.key")).st_mode & 0o777) == "0o600",
          "host-a keeps the CA key and its own key (0600) under its state dir")

    # A wrong token: refused, nothing recorded.
    p = b.cli("pool", "join", a.url, "--token", wrong_token(token), "--host", "host-b",
              "--address", b.url, expect=1)
    check("wrong, expired or used" in p.stderr and "403" in p.stderr,
          f"a join with a wrong token is refused with 403: {p.stderr.strip()}")
    check(etcd_keys(c, "/cella/p1/members/") == ["/cella/p1/members/host-a"] and
          not os.path.exists(os.path.join(b.state, "pool")),
          "and nothing is recorded (in etcd or on host-b)")
    p = b.cli("pool", "join", a.url, "--token", token[:-1] + ("0" if token[-1] != "0" else "1"),
              "--host", "host-b", expect=1)
    check("not the one the token pins" in p.stderr,
          f"a token pinning another CA: host-b does not join: {p.stderr.strip()}")

    # host-b joins with the token; host-c with a new one.
    b.cli("pool", "join", a.url, "--token", token, "--host", "host-b", "--address", b.url)
    b.wait_pool()
    p = a.cli("--json", "pool", "token", "--ttl", "600")
    t2 = json.loads(p.stdout)
    check(t2["join_address"] == a.url, "pool token names host-a (it holds the CA key)")
    hc.cli("pool", "join", a.url, "--token", t2["token"], "--host", "host-c", "--address",
           hc.url)
    hc.wait_pool()
    # The used tokens again (by hand, as a joining host would call).
    csr_dir = tempfile.mkdtemp(prefix="cella-pool-csr-")
    try:
        subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=host-x", "-keyout",
                        f"{csr_dir}/x.key", "-out", f"{csr_dir}/x.csr"], check=True,
                       capture_output=True)
        csr = open(f"{csr_dir}/x.csr").read()
    finally:
        shutil.rmtree(csr_dir, ignore_errors=True)
    for what, t in (("the first token", token), ("the second token", t2["token"])):
        st, body = post_json_https(a.url, {"token": t, "name": "host-x", "csr": csr,
                                           "memory_mib": 1, "cpus": 1})
        check(st == 403, f"{what}, used already, is refused: {st} {body}")
    # An expired token (its record's expiry moved to the past: etcd would
    # drop it with its lease only after the minimum TTL of 60 s).
    t3 = json.loads(a.cli("--json", "pool", "token", "--ttl", "60").stdout)["token"]
    tkey = f"/cella/p1/tokens/{t3.split('.')[0]}"
    rec = json.loads(c.etcdctl("get", tkey, "--print-value-only").stdout)
    check("hash" in rec and t3.split(".")[1] not in json.dumps(rec),
          "etcd keeps the token's hash, not its secret")
    rec["expires_at"] = int(time.time()) - 1
    c.etcdctl("put", tkey, json.dumps(rec))
    st, body = post_json_https(a.url, {"token": t3, "name": "host-x", "csr": csr,
                                       "memory_mib": 1, "cpus": 1})
    check(st == 403, f"an expired token is refused: {st} {body}")
    check("/cella/p1/members/host-x" not in etcd_keys(c, "/cella/p1/members/"),
          "and records nothing")

    # Every host sees three hosts up, with their capacity.
    for h, d in (("a", a), ("b", b), ("c", hc)):
        st = d.status()
        check(sorted(st) == ["host-a", "host-b", "host-c"] and
              all(x["state"] == "up" for x in st.values()),
              f"host-{h}: pool status shows the three hosts up")
    st = a.status()
    check([st[n]["memory_mib"] for n in ("host-a", "host-b", "host-c")] == [1024, 2048, 3072]
          and all(x["cpus"] >= 1 for x in st.values()) and st["host-b"]["address"] == b.url,
          "with each host's capacity and address")

    # A VM on host-b, seen from everywhere, started and stopped through host-a.
    b.define("vmb", "memwriter", "rounds=0 mib=4 pause_ms=20")
    for h, d in (("a", a), ("b", b), ("c", hc)):
        deadline = time.monotonic() + 10
        while True:
            vms = {v["name"]: v for v in json.loads(d.cli("--json", "vm", "list").stdout)["vms"]}
            if "vmb" in vms or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the watch brings host-b's definition
        check(vms.get("vmb", {}).get("host") == "host-b",
              f"host-{h}: vm list shows vmb on host-b")
    p = a.cli("vm", "list")
    check("HOST" in p.stdout and "host-b" in p.stdout, "the table has a HOST column")
    a.cli("vm", "start", "vmb", "--host", "host-b")  # placement would pick host-c
    b.wait_console("vmb", "round 2")
    pid = b.vm("vmb")["pid"]
    check(pid and os.path.exists(f"/proc/{pid}"),
          "a start sent to host-a runs the guest on host-b (its console counts rounds)")
    check("POST /v1/vms/vmb/start forwarded to host-b: 200" in a.log(),
          "host-a forwarded it (its log)")
    r = a.get("/v1/vms/vmb")
    check(r.status == 200 and r.json["state"] == "running" and r.json["pid"] == pid,
          "GET of the VM on host-a answers host-b's VM")
    a.cli("vm", "stop", "vmb", "--timeout", "1")
    b.wait_state("vmb", "stopped")
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker exits
    check(not os.path.exists(f"/proc/{pid}"), "a stop sent to host-a stops the worker on host-b")

    # The forwarding path refuses certificates that are not a pool host's.
    forged = tempfile.mkdtemp(prefix="cella-pool-forged-")
    try:
        tlsutil.make_pki(forged, names=("host-a",), ca="other")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=host-a", "-keyout", f"{forged}/self.key", "-out",
                        f"{forged}/self.pem"], check=True, capture_output=True)
        hdr = {"X-Cella-Forwarded-Role": "admin", "X-Cella-Forwarded-For": "mallory"}
        for what, cert, key in (
                ("a self-signed certificate", f"{forged}/self.pem", f"{forged}/self.key"),
                ("another CA's certificate", f"{forged}/host-a.pem", f"{forged}/host-a.key"),
                ("the pool CA's, naming no pool host", c.cert, c.key)):
            st, reply = raw_https(ADDR["b"], PORT, cert, key, "POST", "/v1/vms/vmb/start", hdr)
            check(st in (401, 403), f"forwarding with {what} is refused: {st}")
        check(b.vm("vmb")["state"] == "stopped", "and the VM stayed stopped")
    finally:
        shutil.rmtree(forged, ignore_errors=True)

    # Leave: refused with a VM, accepted without.
    p = b.cli("pool", "leave", expect=5)
    check("still owns 1 VMs" in p.stderr and "vmb" in p.stderr,
          f"host-b cannot leave while it owns vmb: {p.stderr.strip()}")
    # More of the forwarded routes: a checkpoint, its list, the VM's deletion.
    r = a.post("/v1/vms/vmb/checkpoints", {"name": "cp1", "kind": "production"})
    check(r.status == 201, f"a checkpoint created through host-a: {r.status} {r.body[:200]}")
    r = a.get("/v1/vms/vmb/checkpoints")
    check(r.status == 200 and r.json == b.get("/v1/vms/vmb/checkpoints").json and
          "cp1" in r.body, "its checkpoint list through host-a is host-b's")
    r = a.request("DELETE", "/v1/vms/vmb")
    check(r.status == 204 and b.get("/v1/vms/vmb").status == 404,
          "a delete sent to host-a deletes the VM on host-b")
    hc.cli("pool", "leave")
    hc.wait_pool(want=404)
    check(sorted(a.status()) == ["host-a", "host-b"], "host-c left: host-a no longer lists it")
    check(hc.get("/v1/vms").status == 200 and
          not os.path.exists(os.path.join(hc.state, "pool")),
          "host-c runs as a single host again (its pool files put aside)")
    p = hc.cli("pool", "create", "p1", "--etcd", eps, "--ca-cert", c.ca, "--ca-key",
               f"{c.dir}/ca.key", "--host", "host-c", expect=5)
    check("exists in this etcd already" in p.stderr and
          not os.path.exists(os.path.join(hc.state, "pool")) and
          not os.path.exists(os.path.join(hc.state, "pool.new")),
          f"a second create of pool p1 is refused and leaves nothing: {p.stderr.strip()}")

    # host-b dies: down after its lease TTL (host-a's event stream says so).
    evs = a.events()
    since = evs[-1]["seq"] if evs else 0  # the stream sends the events after it
    check(any(e["event"] == "pool-host-left" and e.get("detail") == "host-c" for e in evs),
          "host-a's event stream had pool-host-left for host-c")
    killed = time.monotonic()
    b.kill9()
    ev = wait_pool_event(a, "pool-host-down", "host-b", since, TTL + 10)
    took = time.monotonic() - killed
    # Not before its lease could lapse: TTL after its last renewal, which
    # was at most a third of the TTL before the kill.
    check(took >= TTL * 2 / 3 - 0.2, f"host-b killed: pool-host-down on host-a after "
          f"{took:.1f} s (TTL {TTL} s): {ev}")
    st = a.status()
    check(st["host-b"]["state"] == "down" and st["host-a"]["state"] == "up",
          "pool status: host-b down, host-a up")

    # One etcd member killed: the pool goes on through the others.
    c.members[0].kill()
    killed_etcd = time.monotonic()
    live = [m.endpoint for m in c.members[1:]]
    t4 = json.loads(a.cli("--json", "pool", "token").stdout)
    check(t4["token"].count(".") == 2, "with an etcd member dead, a token is still made")
    kv = json.loads(c.etcdctl("get", "/cella/p1/alive/host-a", "-w", "json",
                              endpoints=live).stdout)["kvs"][0]
    lease = format(int(kv["lease"]), "x")

    def ttl_left():
        r = c.etcdctl("lease", "timetolive", lease, "-w", "json", endpoints=live)
        return json.loads(r.stdout)["ttl"]
    # Without renewals the lease would lapse within TTL of the kill; it
    # must stay alive for twice that.
    seen, until = [], killed_etcd + 2 * TTL
    while time.monotonic() < until:
        seen.append(ttl_left())
        if seen[-1] <= 0:
            raise TestFailure(f"host-a's lease lapsed with an etcd member dead: {seen}")
        time.sleep(0.25)  # sampling the lease over 2 TTLs (an observation, not a wait)
    check(True, f"host-a renews its lease through the other members ({len(seen)} samples, "
          f"time to live {min(seen)}-{max(seen)} s)")
    check(a.status()["host-a"]["state"] == "up", "host-a stays up")


if __name__ == "__main__":
    main(test)
