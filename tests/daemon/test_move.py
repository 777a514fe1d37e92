"""test_move.py: Move-VM between two hosts. Two cellads, each in its own
network namespace (a veth pair joins them, 10.x addresses), each with its own
state dir, TCP API with a bearer token, and migration certificate (a CA and
two host certificates made with the openssl CLI). A memwriter guest (it
rewrites its memory every round and checks the previous round first) is
moved while it runs:

- live, A -> B: the rounds go on at B where they stopped at A: contiguous
  round numbers across the two consoles, nothing lost or repeated, no FAIL;
  A no longer has the VM; the figures (total_ms, downtime_ms, rounds, bytes)
  are reported;
- quick (save, send the state file over the API, restore), B -> A: same;
- failures: a wrong token (the destination refuses), a wrong certificate
  name (TLS refuses), the destination worker killed mid-move: each time the
  VM keeps running on the source (new rounds keep coming) and nothing is
  left on the destination.

Needs root (network namespaces), ip and openssl; skips loudly otherwise."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from cellad import (ConsoleTail, Daemon, TestFailure, UnixHTTPConnection, check, log, main,
                    memwriter_rounds, skip)

SUB = 64 + os.getpid() % 180
ADDR = {"a": f"10.{SUB}.77.1", "b": f"10.{SUB}.77.2"}
PORT = 8419
GUEST = "mib=4 rounds=0 pause_ms=50"


def sh(*cmd, check_rc=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check_rc and p.returncode:
        raise TestFailure(f"{' '.join(cmd)}: {p.returncode}: {p.stderr}")
    return p


class Net:
    """Two namespaces joined by a veth pair."""

    def __init__(self):
        self.ns = {h: f"cella-mv-{h}-{os.getpid()}" for h in ("a", "b")}

    def up(self):
        for h, ns in self.ns.items():
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        va, vb = f"cmva{os.getpid() % 100000}", f"cmvb{os.getpid() % 100000}"
        sh("ip", "link", "add", va, "netns", self.ns["a"], "type", "veth", "peer", "name", vb,
           "netns", self.ns["b"])
        for h, dev in (("a", va), ("b", vb)):
            sh("ip", "-n", self.ns[h], "addr", "add", ADDR[h] + "/24", "dev", dev)
            sh("ip", "-n", self.ns[h], "link", "set", dev, "up")

    def down(self):
        for ns in self.ns.values():
            sh("ip", "netns", "del", ns, check_rc=False)


def make_certs(d):
    """A CA and one certificate per host (SAN: its IP and name)."""
    def ossl(*a):
        sh("openssl", *a)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cella test CA",
         "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
    for h in ("a", "b"):
        ext = f"{d}/{h}.ext"
        with open(ext, "w") as f:
            f.write(f"subjectAltName=IP:{ADDR[h]},DNS:host{h}\n")
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=host{h}", "-keyout",
             f"{d}/{h}.key", "-out", f"{d}/{h}.csr")
        ossl("x509", "-req", "-in", f"{d}/{h}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{d}/{h}.pem")
        with open(f"{d}/{h}.token", "w") as f:
            f.write(f"token-of-host-{h}-0123456789\n")


class NsDaemon(Daemon):
    """A cellad inside a network namespace, with a TCP API and TLS files."""

    def __init__(self, args, host, ns, certs):
        cg = f"cella-test-{os.getpid()}-{host}"
        super().__init__(args, name=f"cellad-{host}", config={
            "console_history_kib": 4096, "cgroup_parent": cg, "move_timeout_s": 120,
            "tcp": {"address": ADDR[host], "port": PORT, "token_file": f"{certs}/{host}.token"},
            "tls": {"cert": f"{certs}/{host}.pem", "key": f"{certs}/{host}.key",
                    "ca": f"{certs}/ca.pem"}})
        self.cgroup_parent = cg
        self.ns = ns

    def start(self):
        real = self.args["cellad"]
        wrapper = os.path.join(self.dir, "cellad-in-ns")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec ip netns exec {self.ns} {real} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        self.args = dict(self.args, cellad=wrapper)
        return super().start()


def console_bytes(d, name):
    return d.console(name, history=1 << 30).encode()


class Follower:
    """Reads a VM's whole console in a thread until the stream ends (the VM
    left this host) or close()."""

    def __init__(self, d, name):
        self.data = b""
        self.c = UnixHTTPConnection(d.sock, timeout=300)
        self.c.request("GET", f"/v1/vms/{name}/console?history={1 << 30}&follow=true")
        self.r = self.c.getresponse()
        self.done = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        try:
            while True:
                chunk = self.r.read1(65536)
                if not chunk:
                    break
                self.data += chunk
        except OSError:
            pass
        self.done.set()

    def wait(self, timeout=60):
        if not self.done.wait(timeout):
            raise TestFailure("the source console did not end after the move")
        self.c.close()
        return self.data


def rounds_of(text):
    if b"FAIL" in text:
        raise TestFailure(f"memwriter failed: {text[text.index(b'FAIL') - 200:][:400]!r}")
    return [int(m) for m in re.findall(rb"memwriter: round (\d+) checksum", text)]


def check_contiguous(src, dst, what):
    """The rounds the source printed, then the destination's: one run."""
    both = src + dst
    rs = rounds_of(both)
    check(len(rs) > 3 and rs == list(range(rs[0], rs[0] + len(rs))),
          f"{what}: rounds {rs[0] if rs else '?'}..{rs[-1] if rs else '?'} contiguous across "
          f"the move ({len(rounds_of(src))} at the source, {len(rounds_of(dst))} at the "
          f"destination)")


def wait_rounds(d, name, skip_bytes, n):
    t = ConsoleTail(d, name, skip_bytes)
    try:
        first, last = memwriter_rounds(t, 0)
        memwriter_rounds(t, first + n)
    finally:
        t.close()
    return first


def still_running_here(src, dst, name, what):
    check(src.vm(name)["state"] == "running", f"{what}: the VM still runs on the source")
    seen = len(console_bytes(src, name))
    wait_rounds(src, name, seen, 2)
    log(f"ok: {what}: new rounds keep coming on the source")
    deadline = time.monotonic() + 30
    while dst.get(f"/v1/vms/{name}").status != 404:
        if time.monotonic() > deadline:
            raise TestFailure(f"{what}: the destination still has {dst.vm(name)}")
        time.sleep(0.05)  # polling the API with a deadline
    left = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(dst.state, "vms"))
            for f in fs]
    check(not left, f"{what}: nothing left on the destination ({left})")


def move_cli(d, name, *opts, expect=0):
    p = d.cli("--json", "vm", "move", name, *opts, expect=expect)
    return json.loads(p.stdout) if expect == 0 else p


def live_then_quick(a, b):
    a.define("mw", "memwriter", cmdline=GUEST)
    a.action("mw", "start")
    wait_rounds(a, "mw", 0, 3)

    # Live A -> B while it runs.
    f = Follower(a, "mw")
    res = move_cli(a, "mw", "--to", "b")
    log(f"live move: {res['total_ms']} ms, downtime {res['downtime_ms']} ms, "
        f"{res['rounds']} rounds, {res['bytes']} bytes")
    check(res["mode"] == "live" and res["bytes"] > 0 and res["rounds"] >= 1,
          f"live move reports its figures: {dict((k, res[k]) for k in ('total_ms', 'downtime_ms', 'rounds', 'bytes'))}")
    src = f.wait()
    check(a.get("/v1/vms/mw").status == 404, "the source no longer has the VM")
    check(b.vm("mw")["state"] == "running", "the VM runs on the destination")
    wait_rounds(b, "mw", 0, 3)
    check_contiguous(src, console_bytes(b, "mw"), "live")
    ev = [e["event"] for e in a.events(vm="mw")]
    check("moving" in ev and "moved" in ev, f"source events: {ev}")

    # Quick B -> A.
    f = Follower(b, "mw")
    res = move_cli(b, "mw", "--to", "a", "--quick")
    log(f"quick move: {res['total_ms']} ms, downtime {res['downtime_ms']} ms, "
        f"{res['bytes']} bytes")
    check(res["mode"] == "quick" and res["bytes"] >= 64 << 20, "quick move sent the state file")
    # Its job on B, with its phases and the bytes sent as a percent (GET /v1/jobs).
    jobs = [j for j in b.get("/v1/jobs?vm=mw").json["jobs"] if j["kind"] == "move-out"]
    check(jobs and not jobs[0]["running"] and jobs[0]["phase"] == "committing" and
          jobs[0].get("percent") == 100, f"quick move's job: {jobs[:1]}")
    ph = [e["phase"] for e in b.events(vm="mw") if e["event"] == "job-phase" and
          e.get("job") == jobs[0]["id"]]
    check(ph == ["begun", "prepared", "uploading", "committing", "ended"], f"its phases: {ph}")
    src = f.wait()
    check(b.get("/v1/vms/mw").status == 404, "quick: B no longer has the VM")
    check(a.vm("mw")["state"] == "running", "quick: the VM runs on A again")
    wait_rounds(a, "mw", 0, 3)
    check_contiguous(src, console_bytes(a, "mw"), "quick")


def live_with_storage(a, b):
    """Live move with --include-storage: the destination gets its own copy of
    the disk (a qcow2 with data and holes), byte-identical to the source's."""
    d = tempfile.mkdtemp(prefix="cella-mv-disk-")
    try:
        img = os.path.join(d, "st.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "32M"], check=True)
        for off, pat in ((0, "0x5a"), (5 << 20, "0xc3"), (31 << 20, "0x11")):
            subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {pat} {off} 512k",
                            img], check=True, stdout=subprocess.DEVNULL)
        os.chmod(d, 0o777)
        os.chmod(img, 0o666)
        a.define("st", "memwriter", cmdline=GUEST, disks=[{"path": img}])
        a.action("st", "start")
        wait_rounds(a, "st", 0, 2)
        f = Follower(a, "st")
        res = move_cli(a, "st", "--to", "b", "--include-storage")
        log(f"live move with storage: {res['total_ms']} ms, downtime {res['downtime_ms']} ms, "
            f"{res['bytes']} bytes")
        src = f.wait()
        check(b.vm("st")["state"] == "running", "with storage: the VM runs on the destination")
        wait_rounds(b, "st", 0, 2)
        check_contiguous(src, console_bytes(b, "st"), "live with storage")
        dst_img = b.vm("st")["disks"][0]["path"]
        check(os.path.realpath(dst_img) != os.path.realpath(img),
              f"with storage: the destination has its own image ({dst_img})")
        r = subprocess.run(["qemu-img", "compare", "-U", img, dst_img], capture_output=True,
                           text=True)
        check(r.returncode == 0, f"with storage: the copy matches the source: "
              f"{(r.stdout + r.stderr).strip()}")
        b.action("st", "kill")
        b.wait_state("st", ("stopped",))
        r = b.request("DELETE", "/v1/vms/st")
        check(r.status in (200, 204), f"with storage: the moved VM is deleted on B: {r}")
        # Like Remove-VM, deleting a VM keeps its disks: clear the copy so the
        # failure cases below can check that B is left empty.
        os.unlink(dst_img)
        try:
            os.rmdir(os.path.dirname(dst_img))
        except OSError:
            pass
    finally:
        shutil.rmtree(d, ignore_errors=True)


def failures(a, b, args):
    # The destination refuses: wrong token.
    a.cli("host", "add", "b-badtoken", "--url", f"https://{ADDR['b']}:{PORT}", "--token",
          "not-the-right-token-at-all")
    p = move_cli(a, "mw", "--to", "b-badtoken", expect=1)
    check("401" in p.stderr or "token" in p.stderr, f"wrong token refused: {p.stderr.strip()}")
    still_running_here(a, b, "mw", "wrong token")

    # TLS refuses: B's certificate does not carry the name A expects.
    a.cli("host", "add", "b-badname", "--url", f"https://{ADDR['b']}:{PORT}", "--token-file",
          os.path.join(args["certs"], "b.token"), "--tls-name", "somebody-else")
    p = move_cli(a, "mw", "--to", "b-badname", expect=1)
    check("failed" in p.stderr, f"wrong certificate name refused: {p.stderr.strip()}")
    still_running_here(a, b, "mw", "wrong certificate name")

    # The destination worker dies mid-move (a slow link keeps it busy).
    result = {}

    def mover():
        result["p"] = a.cli("vm", "move", "mw", "--to", "b", "--max-bandwidth", "2000000",
                            expect=None)
    log_path = os.path.join(b.state, "logs", "mw.log")
    log_start = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    t = threading.Thread(target=mover)
    t.start()
    deadline = time.monotonic() + 60
    pid = None
    while time.monotonic() < deadline:
        r = b.get("/v1/vms/mw")
        if r.status == 200 and r.json["pid"] and os.path.exists(log_path) and \
                "connected" in open(log_path, errors="replace").read()[log_start:]:
            pid = r.json["pid"]
            break
        time.sleep(0.02)  # polling with a deadline for the stream to start
    check(pid is not None, "the destination worker got the source's stream")
    os.kill(pid, 9)
    t.join(180)
    check(result["p"].returncode == 1, f"move failed when the destination worker died: "
          f"{result['p'].stderr.strip()}")
    still_running_here(a, b, "mw", "destination worker killed")


def test(args):
    for tool in ("ip", "openssl"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the two hosts")
    certs = tempfile.mkdtemp(prefix="cella-mv-certs-")
    args["certs"] = certs
    net = Net()
    try:
        make_certs(certs)
        net.up()
        with NsDaemon(args, "a", net.ns["a"], certs) as a, \
                NsDaemon(args, "b", net.ns["b"], certs) as b:
            a.cli("host", "add", "b", "--url", f"https://{ADDR['b']}:{PORT}", "--token-file",
                  f"{certs}/b.token")
            b.cli("host", "add", "a", "--url", f"https://{ADDR['a']}:{PORT}", "--token-file",
                  f"{certs}/a.token")
            hosts = json.loads(a.cli("--json", "host", "list").stdout)["hosts"]
            check([h["name"] for h in hosts] == ["b"] and "token" not in hosts[0],
                  "host list (tokens never shown)")
            live_then_quick(a, b)
            live_with_storage(a, b)
            failures(a, b, args)
            a.cli("host", "remove", "b-badtoken")
            a.cli("host", "remove", "b-badtoken", expect=4)
    finally:
        net.down()
        shutil.rmtree(certs, ignore_errors=True)


if __name__ == "__main__":
    main(test)
