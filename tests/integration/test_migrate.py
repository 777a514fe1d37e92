#!/usr/bin/env python3
"""it-migrate: live migration between two cella-vm workers on this machine,
over TLS with certificates made here by the openssl CLI.

- a running dirtier guest moves from source to destination: its tick
  counter goes on at the destination with nothing lost or repeated, every
  page stamp verifies (the guest fails loudly otherwise), the source exits
  with status 16 and reports rounds, bytes and downtime;
- a destination whose certificate another CA signed: TLS refused, the VM
  keeps running on the source (its console goes on);
- the destination killed in the middle of the stream: the source keeps
  running;
- garbage (plain bytes, then a well-authenticated TLS peer sending nonsense
  records) to an --incoming port: the destination exits with status 4 and a
  clear message, no crash;
- across two network namespaces, with a NIC on a tap in each: a capture on
  the destination's tap sees the VMM announce the guest's MAC (RARP) once
  the move completes.
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import harness
from harness import TestFailure, log

TICK = re.compile(r"^dirtier: tick (\d+) round \d+ pages \d+$")
MIGRATED = 16
VMM_ERROR = 4


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_pki(d):
    """CA 'ca' with hosts src/dst, and an unrelated CA 'evil' with host dst2."""
    for ca in ("ca", "evil"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                "-subj", f"/CN=cella test {ca} CA", cwd=d)
    for host, ca in (("src", "ca"), ("dst", "ca"), ("dst2", "evil")):
        name = f"{host}.cella.test"
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{host}.key", "-out", f"{host}.csr", "-subj", f"/CN={name}", cwd=d)
        with open(os.path.join(d, f"{host}.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{name}\n")
        openssl("x509", "-req", "-in", f"{host}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{host}.crt", "-days", "2", "-extfile",
                f"{host}.ext", cwd=d)


def read(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read()


class Control:
    """JSON-lines client of a worker's control socket."""

    def __init__(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.s.close()
                if time.monotonic() > deadline:
                    raise TestFailure(f"control socket {path} never appeared")
                # The worker creates the socket during its start-up: wait
                # for it by polling the path (no output to wait on).
                time.sleep(0.02)
        self.f = self.s.makefile("rb")

    def send(self, obj):
        self.s.sendall((json.dumps(obj) + "\n").encode())

    def reply(self, timeout=120):
        self.s.settimeout(timeout)
        line = self.f.readline()
        if not line:
            raise TestFailure("control socket closed without a reply")
        return json.loads(line)

    def call(self, obj, timeout=30):
        self.send(obj)
        return self.reply(timeout)

    def close(self):
        self.f.close()
        self.s.close()


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


class Pair:
    """A source worker (control socket, dirtier guest) and helpers to start
    destinations for it."""

    def __init__(self, args, tmp, pki, guest_args, mem):
        self.args, self.tmp, self.pki = args, tmp, pki
        self.guest_args, self.mem = guest_args, mem
        self.ctl_path = os.path.join(tmp, f"src-{time.monotonic_ns()}.sock")
        cmd = harness.build_command("cella", args["cella_vm"], args["guests"]["dirtier"],
                                    guest_args, mem=mem, extra=["--control", self.ctl_path])
        self.src = harness.Guest(cmd, "src").start()
        self.ctl = Control(self.ctl_path)

    def destination(self, name, cert="dst", sock=None):
        """Start a destination worker on an inherited listening socket."""
        d = self.pki
        fd = sock.fileno()
        cmd = harness.build_command("cella", self.args["cella_vm"],
                                    self.args["guests"]["dirtier"], self.guest_args,
                                    mem=self.mem,
                                    extra=["--incoming", f"fd:{fd}",
                                           "--tls-cert", f"{d}/{cert}.crt",
                                           "--tls-key", f"{d}/{cert}.key",
                                           "--tls-ca", f"{d}/{'ca' if cert == 'dst' else 'evil'}.crt",
                                           "--tls-peer", "src.cella.test"])
        return harness.Guest(cmd, name).start(pass_fds=(fd,))

    def migrate_request(self, port, **kw):
        d = self.pki
        req = {"cmd": "migrate", "host": "127.0.0.1", "port": port,
               "tls": {"cert": read(d, "src.crt"), "key": read(d, "src.key"),
                       "ca": read(d, "ca.crt"), "name": "dst.cella.test"}}
        req.update(kw)
        return req

    def expect_running(self, what):
        """The source's guest still runs: two more ticks on its console."""
        t1 = int(self.src.wait_for(TICK.pattern, 30).group(1))
        t2 = int(self.src.wait_for(TICK.pattern, 30).group(1))
        if t2 != t1 + 1:
            raise TestFailure(f"source ticks {t1}, {t2} after {what}: not consecutive")
        st = self.ctl.call({"cmd": "status"})
        if st.get("state") != "running":
            raise TestFailure(f"source state {st.get('state')} after {what}")
        log(f"source still running after {what} (ticks {t1}, {t2}); migration status: "
            f"{st.get('migration')}")

    def close(self):
        self.ctl.close()
        self.src.kill()


def ticks(lines):
    return [int(m.group(1)) for m in map(TICK.match, lines) if m]


def check_continuity(src_lines, dst_lines):
    """The tick counter across both consoles: consecutive, nothing lost or
    repeated (a line cut by the pause continues on the destination)."""
    if src_lines and dst_lines and not TICK.match(src_lines[-1]):
        joined = src_lines[-1] + dst_lines[0]
        src_lines = src_lines[:-1] + [joined]
        dst_lines = dst_lines[1:]
    all_ticks = ticks(src_lines) + ticks(dst_lines)
    for a, b in zip(all_ticks, all_ticks[1:]):
        if b != a + 1:
            raise TestFailure(f"tick {a} followed by {b}: lost or repeated across the move")
    return ticks(src_lines)[-1], ticks(dst_lines)[0]


def test_move(pair):
    sock, port = listener()
    dst = pair.destination("dst", sock=sock)
    sock.close()
    try:
        move(pair, dst, port)
    finally:
        dst.kill()


def move(pair, dst, port):
    pair.src.wait_for(TICK.pattern, 60)
    pair.ctl.send(pair.migrate_request(port))
    # status while it runs: the migration progress shows up
    rep = pair.ctl.reply(180)
    log(f"migrate reply: {rep}")
    if not rep.get("ok"):
        raise TestFailure(f"migration failed: {rep.get('error')}")
    status = pair.src.wait_exit(30)
    if status != MIGRATED:
        raise TestFailure(f"source exit status {status}, want {MIGRATED}")
    # The destination continues: five more ticks, no FAIL.
    first = dst.wait_for(TICK.pattern, 30)
    for _ in range(5):
        dst.wait_for(TICK.pattern, 30)
    if any(l.startswith("FAIL") for l in dst.lines):
        raise TestFailure("the guest failed on the destination")
    last_src, first_dst = check_continuity(pair.src.lines, dst.lines)
    log(f"moved: source's last tick {last_src}, destination's first {first_dst}; "
        f"total {rep['total_ms']} ms, {rep['rounds']} rounds, {rep['bytes']} bytes, "
        f"downtime {rep['downtime_ms']:.3f} ms")
    if not any("incoming migration complete" in l for l in dst.stderr_lines):
        raise TestFailure("destination did not log the completed migration")
    del first
    dst.proc.send_signal(signal.SIGTERM)
    dst.wait_exit(30)


def test_wrong_ca(pair):
    sock, port = listener()
    dst = pair.destination("dst-evil", cert="dst2", sock=sock)
    sock.close()
    try:
        wrong_ca(pair, dst, port)
    finally:
        dst.kill()


def wrong_ca(pair, dst, port):
    rep = pair.ctl.call(pair.migrate_request(port, tls={**pair.migrate_request(port)["tls"],
                                                         "name": "dst2.cella.test"}), 60)
    log(f"migrate reply: {rep}")
    if rep.get("ok") or "TLS" not in rep.get("error", ""):
        raise TestFailure(f"a destination signed by another CA was accepted: {rep}")
    status = dst.wait_exit(30)
    if status != VMM_ERROR:
        raise TestFailure(f"refused destination: exit status {status}, want {VMM_ERROR}")
    pair.expect_running("a refused TLS handshake")


def test_destination_killed(pair):
    sock, port = listener()
    dst = pair.destination("dst-killed", sock=sock)
    sock.close()
    # 4 MiB/s: the first round takes seconds, time to kill the destination.
    pair.ctl.send(pair.migrate_request(port, max_bandwidth=4 << 20))
    deadline = time.monotonic() + 60
    probe = Control(pair.ctl_path)
    try:
        while True:
            st = probe.call({"cmd": "status"})
            mig = st.get("migration") or {}
            if mig.get("phase") == "precopy" and mig.get("bytes", 0) > (1 << 20):
                break
            if time.monotonic() > deadline:
                raise TestFailure(f"migration never got under way: {st}")
            # Polling the status is the only way to see the progress.
            time.sleep(0.05)
        log(f"killing the destination during {mig}")
        dst.kill()
        rep = pair.ctl.reply(60)
        log(f"migrate reply: {rep}")
        if rep.get("ok"):
            raise TestFailure("migration reported success without a destination")
    finally:
        probe.close()
        dst.kill()
    pair.expect_running("losing the destination")


def test_garbage(args, pki, guest_args, mem):
    d = pki
    for kind in ("plain", "tls"):
        sock, port = listener()
        fd = sock.fileno()
        cmd = harness.build_command("cella", args["cella_vm"], args["guests"]["dirtier"],
                                    guest_args, mem=mem,
                                    extra=["--incoming", f"fd:{fd}", "--tls-cert",
                                           f"{d}/dst.crt", "--tls-key", f"{d}/dst.key",
                                           "--tls-ca", f"{d}/ca.crt"])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(fd,))
        sock.close()
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        if kind == "plain":
            c.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(4096))
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(f"{d}/src.crt", f"{d}/src.key")
            ctx.load_verify_locations(f"{d}/ca.crt")
            c = ctx.wrap_socket(c, server_hostname="dst.cella.test")
            # A header claiming a 3 GiB record, then noise.
            c.sendall(b"\x01\x00\x00\x00\x00\x00\x00\xc0" + os.urandom(1024))
        try:
            c.recv(4096)
        except OSError:
            pass
        c.close()
        _, err = proc.communicate(timeout=30)
        err = err.decode(errors="replace")
        log(f"garbage ({kind}): exit status {proc.returncode}; "
            f"{[l for l in err.splitlines() if 'migration' in l or 'TLS' in l]}")
        if proc.returncode != VMM_ERROR:
            raise TestFailure(f"garbage ({kind}): exit status {proc.returncode}, "
                              f"want {VMM_ERROR}")
        want = "TLS handshake failed" if kind == "plain" else "HELLO record of"
        if want not in err:
            raise TestFailure(f"garbage ({kind}): no clear error ({want!r}) in:\n{err}")


class Waitable(harness.Guest):
    """A Guest whose stderr can be waited on (the destination says when it
    listens)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.cv = threading.Condition()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cv:
                self.stderr_lines.append(line)
                self.cv.notify_all()
            print(f"  {self.name}! {line}", flush=True)
        with self.cv:
            self.cv.notify_all()

    def wait_stderr(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not any(text in l for l in self.stderr_lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TestFailure(f"{self.name}: no {text!r} on stderr")
                self.cv.wait(left)


def ip(*args):
    subprocess.run(["ip", *args], check=True)


# Run in the destination's namespace: wait for the RARP announcing MAC on
# the tap (argv: tap, mac, seconds); print what it saw.
CAPTURE = r"""
import socket, sys, time
tap, mac, limit = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((tap, 0))
print("capturing", flush=True)
end = time.monotonic() + limit
while time.monotonic() < end:
    s.settimeout(max(0.1, end - time.monotonic()))
    try:
        f = s.recv(2048)
    except socket.timeout:
        break
    if len(f) >= 42 and f[12:14] == b"\x80\x35" and f[6:12] == mac and f[22:28] == mac:
        print("announced", f[:42].hex(), flush=True)
        sys.exit(0)
print("no announcement", flush=True)
sys.exit(1)
"""
GUEST_MAC = "52:54:00:5a:11:42"


def test_netns(args, tmp, pki, guest_args, mem):
    """Source and destination in two network namespaces joined by a veth
    pair: the stream crosses a real (virtual) link, not loopback. Each has
    a NIC on a tap of its namespace; the destination announces the guest."""
    tag = f"cm{os.getpid() % 100000}"
    na, nb = f"{tag}a", f"{tag}b"
    ip("netns", "add", na)
    try:
        ip("netns", "add", nb)
        ip("link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb")
        ip("link", "set", f"{tag}va", "netns", na)
        ip("link", "set", f"{tag}vb", "netns", nb)
        ip("-n", na, "addr", "add", "10.213.7.1/24", "dev", f"{tag}va")
        ip("-n", nb, "addr", "add", "10.213.7.2/24", "dev", f"{tag}vb")
        tap = f"{tag}t"
        for ns, dev in ((na, f"{tag}va"), (nb, f"{tag}vb")):
            ip("-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
            ip("-n", ns, "link", "set", tap, "up")
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        nic = ["--net", f"tap={tap},mac={GUEST_MAC}"]
        ctl_path = os.path.join(tmp, "netns-src.sock")
        kernel = args["guests"]["dirtier"]
        src = harness.Guest(harness.build_command(
            "cella", args["cella_vm"], kernel, guest_args, mem=mem,
            extra=nic + ["--control", ctl_path]), "ns-src",
            wrapper=["ip", "netns", "exec", na]).start()
        cap = dst = None
        try:
            cap = subprocess.Popen(["ip", "netns", "exec", nb, "python3", "-c", CAPTURE, tap,
                                    GUEST_MAC, "240"], stdout=subprocess.PIPE, text=True)
            if cap.stdout.readline().strip() != "capturing":
                raise TestFailure("the capture on the destination's tap did not start")
            dst = Waitable(harness.build_command(
                "cella", args["cella_vm"], kernel, guest_args, mem=mem,
                extra=nic + ["--incoming", "tcp:10.213.7.2:4444", "--tls-cert",
                             f"{pki}/dst.crt", "--tls-key", f"{pki}/dst.key", "--tls-ca",
                             f"{pki}/ca.crt", "--tls-peer", "src.cella.test"]), "ns-dst",
                wrapper=["ip", "netns", "exec", nb]).start()
            src.wait_for(TICK.pattern, 60)
            dst.wait_stderr("waiting for the source")
            ctl = Control(ctl_path)
            rep = ctl.call({"cmd": "migrate", "host": "10.213.7.2", "port": 4444,
                            "tls": {"cert": read(pki, "src.crt"), "key": read(pki, "src.key"),
                                    "ca": read(pki, "ca.crt"), "name": "dst.cella.test"}}, 180)
            ctl.close()
            log(f"netns migrate reply: {rep}")
            if not rep.get("ok"):
                raise TestFailure(f"migration across namespaces failed: {rep.get('error')}")
            if src.wait_exit(30) != MIGRATED:
                raise TestFailure("source did not exit with status 16")
            for _ in range(3):
                dst.wait_for(TICK.pattern, 30)
            check_continuity(src.lines, dst.lines)
            out, _ = cap.communicate(timeout=60)
            log(f"destination tap capture: {out.strip()}")
            if cap.returncode != 0:
                raise TestFailure("no RARP from the guest's MAC on the destination's tap")
            if not any("announced" in l for l in dst.stderr_lines):
                raise TestFailure("the destination did not log the announcement")
        finally:
            if cap and cap.poll() is None:
                cap.kill()
                cap.wait()
            src.kill()
            if dst:
                dst.kill()
    finally:
        subprocess.run(["ip", "netns", "del", na], check=False)
        subprocess.run(["ip", "netns", "del", nb], check=False)


def test(args):
    if not shutil.which("openssl"):
        harness.skip("the openssl command is needed to make test certificates")
    guest_args = "mib=32 rate=64 tick_ms=100"
    mem = 128
    with tempfile.TemporaryDirectory(prefix="cella-it-migrate-") as tmp:
        pki = os.path.join(tmp, "pki")
        os.mkdir(pki)
        make_pki(pki)
        test_garbage(args, pki, guest_args, mem)
        pair = Pair(args, tmp, pki, guest_args, mem)
        try:
            pair.src.wait_for(r"^dirtier: ready", 60)
            test_wrong_ca(pair)
            test_destination_killed(pair)
            test_move(pair)
        finally:
            pair.close()
        if os.geteuid() != 0 or not shutil.which("ip"):
            print("#" * 72 + "\n# SKIP (part): migration across network namespaces needs "
                  "root and iproute2\n" + "#" * 72, flush=True)
        else:
            test_netns(args, tmp, pki, guest_args, mem)


if __name__ == "__main__":
    harness.main(test)
