"""cellad.py: run a private cellad for a test and talk to it (stdlib only).

Each Daemon has its own state dir, run dir, socket and cgroup parent in a
temporary directory; the system's cellad is never touched. Requests go over
the Unix socket with http.client; waits follow the event stream or poll the
API with a deadline (a guard against hangs, never a way to synchronise).

Scripts exit 0 (pass), 1 (fail) or 77 (skip), as meson expects.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

EXIT_PASS, EXIT_FAIL, EXIT_SKIP = 0, 1, 77


class TestFailure(Exception):
    pass


def log(msg):
    print(f"[daemon-test] {msg}", flush=True)


def skip(reason):
    print("#" * 72, flush=True)
    print(f"# SKIP: {reason}", flush=True)
    print("#" * 72, flush=True)
    sys.exit(EXIT_SKIP)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)
    log(f"ok: {msg}")


def poll(what, fn, timeout=60, interval=0.05):
    """fn()'s first true value, polled every interval s until timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out waiting for {what} ({timeout} s)")
        time.sleep(interval)  # polling the host's state with a deadline


def wait_vm_metric(d, name, section, key, want, timeout):
    """The VM's metrics section (/v1/vms/NAME/metrics) once its key is want,
    polled until timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = d.get(f"/v1/vms/{name}/metrics").json.get(section) or {}
        if v.get(key) == want:
            return v
        if time.monotonic() > deadline:
            raise TestFailure(f"{name}: metrics {section}.{key} = {v.get(key)}, want {want}")
        time.sleep(0.05)  # polling the API with a deadline


def sh(*cmd, check_rc=True):
    """A host command's stdout and stderr together; a failure raises."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check_rc and r.returncode:
        raise TestFailure(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r.stdout


def status_fields(pid):
    """/proc/PID/status (or "PID/task/TID") as {field: [words]}."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def args_from_argv(argv=None):
    """--cellad PATH --cella PATH --cella-vm PATH NAME=GUEST.elf ..."""
    argv = sys.argv[1:] if argv is None else argv
    a = {"guests": {}}
    it = iter(argv)
    for x in it:
        if x.startswith("--"):
            a[x[2:].replace("-", "_")] = next(it)
        elif "=" in x:
            k, v = x.split("=", 1)
            a["guests"][k] = v
    return a


class Daemon:
    """A private cellad. Use as a context manager: every VM it started is
    turned off and the daemon stopped at the end."""

    def __init__(self, args, name="cellad", config=None, keep_dir=None, wrapper=None):
        self.args = args
        self.wrapper = list(wrapper or [])  # e.g. nsenter --net=...: must exec cellad
        self.dir = keep_dir or tempfile.mkdtemp(prefix="cella-dt-")
        self.sock = os.path.join(self.dir, "cellad.sock")
        self.state = os.path.join(self.dir, "state")
        self.run = os.path.join(self.dir, "run")
        self.cgroup_parent = f"cella-test-{os.getpid()}"
        self.config = {"cgroup_parent": self.cgroup_parent, "shutdown_timeout_s": 5,
                       "test_probe": True, "socket_group": ""}
        # CELLA_TEST_STORE='{"etcd": {...}}' runs this cellad on that store
        # instead of SQLite (tests/pool/run_on_etcd.py), under a prefix and
        # host name of its state dir's: the cellads of one test do not share,
        # and one restarted on the same directory finds its state again.
        store = os.environ.get("CELLA_TEST_STORE")
        if store:
            store = json.loads(store)
            store["etcd"]["prefix"] = store["etcd"].get("prefix", "/cella") + "/" + \
                os.path.basename(self.dir)
            store["etcd"]["host"] = os.path.basename(self.dir)
            self.config["store"] = store
        self.config.update(config or {})
        self.proc = None
        self.name = name
        self.log_path = os.path.join(self.dir, "cellad.log")

    def start(self):
        cfg = os.path.join(self.dir, "cellad.json")
        with open(cfg, "w") as f:
            json.dump(self.config, f)
        cmd = self.wrapper + [self.args["cellad"], "--config", cfg, "--socket", self.sock,
                              "--state-dir", self.state, "--run-dir", self.run, "--worker",
                              self.args["cella_vm"]]
        log(f"{self.name}: {' '.join(cmd)}")
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=self.logf)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure(f"cellad exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.sock):
                try:
                    if self.get("/v1/host").status == 200:
                        return self
                except OSError:
                    pass
            time.sleep(0.01)  # guard loop: the socket appears once cellad is ready
        raise TestFailure("cellad did not come up")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def cleanup(self):
        try:
            if self.proc and self.proc.poll() is None:
                for vm in self.get("/v1/vms").json["vms"]:
                    if vm["state"] in ("running", "paused", "stopping"):
                        self.post(f"/v1/vms/{vm['name']}/kill")
        except Exception as e:  # best effort
            log(f"cleanup: {e}")
        self.stop()
        # Workers left by a test that killed cellad: end them by pid.
        for f in os.listdir(self.run) if os.path.isdir(self.run) else []:
            pass
        for d in ("cpu", "memory"):
            base = f"/sys/fs/cgroup/{d}/{self.cgroup_parent}"
            if os.path.isdir(base):
                for sub in os.listdir(base):
                    p = os.path.join(base, sub)
                    if os.path.isdir(p):
                        try:
                            os.rmdir(p)
                        except OSError:
                            pass
                try:
                    os.rmdir(base)
                except OSError:
                    pass
        print(f"---- {self.name} log ----\n{self.log()}---- end ----", flush=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.logf.close()
        self.logf = None

    # HTTP ---------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, raw=None, timeout=60):
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        resp = Response(r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace"))
        c.close()
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def vm(self, name):
        r = self.get(f"/v1/vms/{name}")
        if r.status != 200:
            raise TestFailure(f"GET {name}: {r}")
        return r.json

    def define(self, name, guest, cmdline="", **kw):
        body = {"name": name, "kernel": self.args["guests"][guest], "cmdline": cmdline,
                "memory_mib": 64}
        body.update(kw)
        r = self.post("/v1/vms", body)
        if r.status != 201:
            raise TestFailure(f"create {name}: {r}")
        return r.json

    def action(self, name, verb, body=None, expect=200):
        r = self.post(f"/v1/vms/{name}/{verb}", body)
        if r.status != expect:
            raise TestFailure(f"{verb} {name}: expected {expect}, got {r}")
        return r.json

    def wait_state(self, name, states, timeout=30):
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        while True:
            vm = self.vm(name)
            if vm["state"] in states:
                return vm
            if time.monotonic() > deadline:
                raise TestFailure(f"{name}: state {vm['state']}, wanted {states}")
            time.sleep(0.02)  # polling the API with a deadline

    def console(self, name, history=65536, follow=False, timeout=30):
        r = self.get(f"/v1/vms/{name}/console?history={history}&follow="
                     f"{'true' if follow else 'false'}", timeout=timeout)
        return r.body

    def wait_console(self, name, text, timeout=30):
        """Follows the console stream until text appears."""
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        c.request("GET", f"/v1/vms/{name}/console?history=1048576&follow=true")
        r = c.getresponse()
        buf = b""
        deadline = time.monotonic() + timeout
        try:
            while text.encode() not in buf:
                if time.monotonic() > deadline:
                    raise TestFailure(f"{name}: {text!r} not on the console; got {buf[-300:]!r}")
                chunk = r.read1(65536)
                if not chunk:
                    raise TestFailure(f"{name}: console ended before {text!r}; got "
                                      f"{buf[-300:]!r}")
                buf += chunk
        finally:
            c.close()
        return buf.decode("utf-8", "replace")

    def events(self, since=0, vm=None):
        """The events kept so far (the backlog; the stream ends after it)."""
        q = f"?since={since}&follow=false" + (f"&vm={vm}" if vm else "")
        r = self.get("/v1/events" + q)
        return [json.loads(l) for l in r.body.splitlines() if l.strip()]

    def wait_event(self, vm, event, since=0, timeout=30):
        """Follows the event stream until `event` for `vm` arrives."""
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        c.request("GET", f"/v1/events?since={since}&vm={vm}")
        r = c.getresponse()
        buf = b""
        deadline = time.monotonic() + timeout
        try:
            while True:
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        ev = json.loads(line)
                        if ev["event"] == event:
                            return ev
                if time.monotonic() > deadline:
                    raise TestFailure(f"{vm}: no {event} event within {timeout} s")
                chunk = r.read1(65536)
                if not chunk:
                    raise TestFailure(f"{vm}: event stream ended before {event}")
                buf += chunk
        finally:
            c.close()

    def cli(self, *argv, expect=0, input=None):
        cmd = [self.args["cella"], "--socket", self.sock] + list(argv)
        p = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=120)
        log(f"$ cella {' '.join(argv)} -> {p.returncode}")
        if expect is not None and p.returncode != expect:
            raise TestFailure(f"cella {' '.join(argv)}: exit {p.returncode}, want {expect}\n"
                              f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p


def main(test, need_root=False):
    args = args_from_argv()
    if not os.path.exists("/dev/kvm"):
        skip("/dev/kvm is missing: cellad tests boot guests")
    if need_root and os.geteuid() != 0:
        skip("needs root (mount namespace sandbox, user switch, cgroups)")
    try:
        test(args)
    except TestFailure as e:
        print(f"[daemon-test] FAIL: {e}", flush=True)
        # Also last on stderr, after the hosts' logs: a CI log shows its end.
        print(f"[daemon-test] FAIL: {str(e)[:2000]}", file=sys.stderr, flush=True)
        sys.exit(EXIT_FAIL)
    print("[daemon-test] PASS", flush=True)
    sys.exit(EXIT_PASS)


class ConsoleTail:
    """Follows a VM's console from a byte offset of its history (the bytes
    before it were already seen): open it once the VM runs, with the length
    of the history read before the action that produced the new output.
    Needs a console_history_kib large enough to hold the whole run."""

    def __init__(self, d, name, skip, timeout=60):
        self.c = UnixHTTPConnection(d.sock, timeout=timeout)
        self.c.request("GET", f"/v1/vms/{name}/console?history={1 << 30}&follow=true")
        self.r = self.c.getresponse()
        self.skip = skip
        self.buf = b""

    def line(self):
        while True:
            if self.skip and self.buf:
                n = min(self.skip, len(self.buf))
                self.buf, self.skip = self.buf[n:], self.skip - n
            if not self.skip and b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                return line.decode("utf-8", "replace")
            chunk = self.r.read1(65536)
            if not chunk:
                raise TestFailure("the console stream ended")
            self.buf += chunk

    def close(self):
        self.c.close()


def memwriter_rounds(tail, want):
    """Reads memwriter's lines until a round >= want; returns (first, last)
    round numbers seen. A FAIL line (lost or stale memory) fails the test."""
    import re
    first = None
    while True:
        text = tail.line()
        if "FAIL" in text:
            raise TestFailure(f"memwriter: {text}")
        m = re.search(r"memwriter: round (\d+)", text)
        if m:
            r = int(m.group(1))
            first = r if first is None else first
            if r >= want:
                return first, r
