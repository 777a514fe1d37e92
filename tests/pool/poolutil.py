"""poolutil.py: a pool of many cellads on this machine, for the scale test
(tests/pool/test_pool_scale.py) and its benchmark (bench/pool_scale.py).

Each host is a cellad in its own network namespace on one bridge
(netutil.Net), with a TCP API on its address; an etcd cluster of n
members (mutual TLS, etcdutil.Cluster) listens on the bridge's address and
its CA is the pool's. The pool is made the way an operator makes it:
`cella pool create` on the first host, one `cella pool token` per other
host, `cella pool join` on each (several at once). The guest is `ticker`
(guest/tests/ticker.c): it prints, then sleeps on the LAPIC timer between
lines, so hundreds fit on two cores.

Everything it starts (namespaces, bridge, etcd, cellads, their workers)
is ended by cleanup(), also on failure. Needs root and etcd."""

import concurrent.futures
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
sys.path.insert(0, os.path.join(HERE, "..", "security"))
from cellad import Daemon, TestFailure, log  # noqa: E402

import etcdutil  # noqa: E402
import netutil  # noqa: E402
import tlsutil  # noqa: E402

PORT = 8419
POOL_NAME = "scale"
PREFIX = f"/cella/{POOL_NAME}"


def pct(xs, p):
    """The p-th percentile of xs (nearest rank on the sorted values)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs):
    """{n, p50, p99, max} of xs (None when empty)."""
    if not xs:
        return None
    return {"n": len(xs), "p50": statistics.median(xs), "p99": pct(xs, 99), "max": max(xs)}


def parallel(fn, items, width=8):
    """fn(item) for every item, width at a time; the results in order. The
    first exception is raised once all have ended."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, width)) as ex:
        futs = [ex.submit(fn, x) for x in items]
        concurrent.futures.wait(futs)
        return [f.result() for f in futs]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None



def prioritize(pid, nice=0, rt=False):
    """Every thread of pid (etcd is a Go program: setpriority on the pid
    alone reaches its first thread only) at nice, or real-time round-robin
    at the lowest priority (rt), as the lease threads of cellad run: etcd
    ahead of the guests and builds that share this machine's two cores, as
    if it had machines of its own. Threads made later inherit it from the
    thread that makes them."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        try:
            if rt:
                os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(1))
            elif nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            pass

class PoolHost(Daemon):
    """A cellad in its host's namespace with a TCP API on its address. Its
    first TLS files are a throwaway CA's (never checked: the join checks the
    pool CA's hash); once in the pool it uses the pool's."""

    def __init__(self, args, name, ns, addr, boot, config=None, tcp_tokens=None):
        cg = f"cella-test-{os.getpid()}-{name}"
        conf = {"cgroup_parent": cg, "console_history_kib": 16, "memory_capacity_mib": 4096,
                "tcp": {"address": addr, "port": PORT, "token_file": f"{boot}/token",
                        "tokens": list(tcp_tokens or [])},
                "tls": {"cert": f"{boot}/boot.pem", "key": f"{boot}/boot.key",
                        "ca": f"{boot}/ca.pem"}}
        conf.update(config or {})
        super().__init__(args, name=name, config=conf)
        self.cgroup_parent = cg
        self.ns = ns
        self.addr = addr
        self.url = f"https://{addr}:{PORT}"
        self.show_log = False

    def start(self):
        if "cellad-in-ns" not in self.args["cellad"]:
            wrapper = netutil.ns_wrapper(os.path.join(self.dir, "cellad-in-ns"), self.ns,
                                         self.args["cellad"])
            self.args = dict(self.args, cellad=wrapper)
        return super().start()

    def wait_pool(self, want=200, timeout=60):
        """cellad starts itself again after create and join: wait until it
        answers GET /v1/pool with want."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.proc.poll() is not None:
                    raise TestFailure(f"{self.name} exited:\n{self.log()[-3000:]}")
                r = self.get("/v1/pool")
                if r.status == want:
                    return r.json
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TestFailure(f"{self.name}: GET /v1/pool did not answer {want}:\n"
                                  f"{self.log()[-3000:]}")
            time.sleep(0.1)  # guard loop: cellad re-executes itself

    def local_vms(self):
        """{name: vm} of the VMs this host runs (its own registry's)."""
        r = self.get("/v1/vms")
        if r.status != 200:
            raise TestFailure(f"{self.name}: GET /v1/vms: {r}")
        return {v["name"]: v for v in r.json["vms"] if v.get("host", self.name) == self.name}

    def pool_list(self):
        """`cella --json vm list` on this host: {name: [hosts listing it]},
        and the seconds the command took."""
        t = time.monotonic()
        p = subprocess.run([self.args["cella"], "--socket", self.sock, "--json", "vm", "list"],
                           capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t
        if p.returncode:
            raise TestFailure(f"{self.name}: cella vm list: {p.returncode}: {p.stderr}")
        out = {}
        for v in json.loads(p.stdout)["vms"]:
            out.setdefault(v["name"], []).append(v.get("host", self.name))
        return out, took

    def cleanup(self):
        """Kills its VMs, stops cellad, removes its cgroups and files; prints
        the end of its log only when show_log is set (a failure)."""
        try:
            if self.proc and self.proc.poll() is None:
                for n, vm in self.local_vms().items():
                    if vm["state"] in ("running", "paused", "stopping"):
                        self.post(f"/v1/vms/{n}/kill")
        except Exception as e:  # best effort
            log(f"{self.name}: cleanup: {e}")
        self.stop()
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
        text = self.log() if os.path.exists(self.log_path) else ""
        # A sanitizer's report (ASan builds) fails the run: ScalePool.__exit__.
        self.sanitizer = "Sanitizer" in text and "ERROR" in text
        if self.show_log or self.sanitizer:
            print(f"---- {self.name} log (end) ----\n{text[-6000:]}---- end ----", flush=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class ScalePool:
    """n cellads in namespaces and an etcd cluster of etcd_members. Use as a
    context manager; up() starts the processes, form() makes the pool."""

    def __init__(self, args, hosts, etcd_members=3, ttl=3, tag="cs", salt=0, width=8,
                 keep_logs=None, etcd_nice=0, tcp_tokens=None, etcd_rt=False):
        """tcp_tokens: more bearer tokens for every host's TCP API
        ([{"file", "role"}], the tcp section's "tokens"). keep_logs: a directory to copy every cellad's and etcd member's
        log into at cleanup (the bench's --logs). etcd_nice: the members'
        nice value (negative: ahead of the guests and everything else on
        this machine, as etcd on machines of its own would be)."""
        if hosts < 2 or hosts > 200:
            raise ValueError("hosts: 2 to 200 (one /24; the bridge takes 1024 ports)")
        self.args = args
        self.ttl = ttl
        self.width = width
        net = netutil.subnet(salt)
        # Short names: interface names are at most 15 bytes (tag, index, pid).
        self.names = [f"h{i:02d}" for i in range(hosts)]
        self.addr = {n: f"{net}.{i + 2}" for i, n in enumerate(self.names)}
        self.net = netutil.Net(self.addr, f"{net}.1", tag=tag)
        self.etcd_members = etcd_members
        self.cluster = None
        self.hosts = {}
        self.boot = None
        self.killed = set()
        self.keep_logs = keep_logs
        self.etcd_nice = etcd_nice
        self.etcd_rt = etcd_rt
        self.tcp_tokens = tcp_tokens

    # processes ------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is not None:
            for h in list(self.hosts.values())[:3]:
                h.show_log = True
        self.cleanup()
        bad = [h.name for h in self.hosts.values() if getattr(h, "sanitizer", False)]
        if bad and exc_type is None:
            raise TestFailure(f"sanitizer reports in the logs of {bad} (printed above)")
        return False

    def up(self):
        """The network, etcd and every cellad (not in a pool yet)."""
        self.boot = tempfile.mkdtemp(prefix="cella-scale-boot-")
        tlsutil.make_pki(self.boot, names=("boot",))
        with open(f"{self.boot}/token", "w") as f:
            f.write("pool-scale-bootstrap-token-0123456789\n")
        self.net.up()
        self.cluster = etcdutil.Cluster(self.etcd_members, host=self.net.bridge_ip)
        self.cluster.start()
        for m in self.cluster.members:
            prioritize(m.proc.pid, self.etcd_nice, self.etcd_rt)
        for n in self.names:
            self.hosts[n] = PoolHost(self.args, n, self.net.ns[n], self.addr[n], self.boot,
                                     tcp_tokens=self.tcp_tokens)
        parallel(lambda h: h.start(), self.hosts.values(), self.width)
        return self

    def cleanup(self):
        if self.keep_logs:
            os.makedirs(self.keep_logs, exist_ok=True)
            for h in self.hosts.values():
                if os.path.exists(h.log_path):
                    shutil.copy(h.log_path, os.path.join(self.keep_logs, f"{h.name}.log"))
        parallel(lambda h: h.cleanup(), list(self.hosts.values()), self.width)
        if self.cluster:
            for m in self.cluster.members:
                m.stop()
                if self.keep_logs and os.path.exists(m.log_path):
                    shutil.copy(m.log_path, os.path.join(self.keep_logs, f"etcd-{m.name}.log"))
            self.cluster.cleanup()
        self.net.down()
        if self.boot:
            shutil.rmtree(self.boot, ignore_errors=True)

    @property
    def first(self):
        return self.hosts[self.names[0]]

    def live(self):
        return [self.hosts[n] for n in self.names if n not in self.killed]

    # the pool ---------------------------------------------------------------
    def form(self, join_width=None):
        """create on the first host, a token for each other host, joins
        join_width at a time; waits until every host sees every other up.
        Returns {create_s, tokens_s, joins_s, all_up_s, total_s}."""
        c, a = self.cluster, self.first
        t0 = time.monotonic()
        p = a.cli("pool", "create", POOL_NAME, "--etcd", ",".join(c.endpoints), "--ca-cert",
                  c.ca, "--ca-key", f"{c.dir}/ca.key", "--address", a.url, "--host", a.name,
                  "--lease-ttl", str(self.ttl))
        if "shown once" not in p.stdout:
            raise TestFailure(f"pool create: {p.stdout}")
        a.wait_pool()
        t_create = time.monotonic()
        others = self.names[1:]
        tokens = parallel(lambda _: json.loads(a.cli("--json", "pool", "token", "--ttl",
                                                     "3600").stdout)["token"],
                          others, min(4, self.width))
        t_tokens = time.monotonic()

        def join(nt):
            n, tok = nt
            h = self.hosts[n]
            h.cli("pool", "join", a.url, "--token", tok, "--host", n, "--address", h.url)
            h.wait_pool()
        parallel(join, list(zip(others, tokens)), join_width or self.width)
        t_joins = time.monotonic()
        self.wait_all_up(timeout=60 + len(self.names))
        t_up = time.monotonic()
        return {"create_s": t_create - t0, "tokens_s": t_tokens - t_create,
                "joins_s": t_joins - t_tokens, "all_up_s": t_up - t_joins,
                "total_s": t_up - t0}

    def status(self, h):
        return {x["name"]: x for x in json.loads(h.cli("--json", "pool", "status").stdout)
                ["hosts"]}

    def wait_all_up(self, timeout=60, hosts=None):
        """Every host (or those given) sees every live host up and the
        killed ones not up."""
        want = set(self.names) - self.killed
        deadline = time.monotonic() + timeout
        for h in hosts or self.live():
            while True:
                st = self.status(h)
                up = {n for n, x in st.items() if x["state"] == "up"}
                if up == want and set(st) == set(self.names):
                    break
                if time.monotonic() > deadline:
                    raise TestFailure(f"{h.name}: pool status {sorted(up)} up, want "
                                      f"{sorted(want)}")
                time.sleep(0.2)  # polling the status with a deadline

    # VMs ----------------------------------------------------------------------
    def define_vms(self, per_host, period_ms=500, memory_mib=16, ha=True, prefix="v"):
        """per_host ticker VMs defined on each live host through its own
        socket (width hosts at a time, each host's in turn). Returns {vm
        name: host name} and the wall time it took."""
        placed = {}
        for h in self.live():
            for i in range(per_host):
                placed[f"{prefix}{h.name[1:]}-{i}"] = h.name

        def define(h):
            for vm in [v for v, x in placed.items() if x == h]:
                self.hosts[h].define(vm, "ticker", f"period_ms={period_ms}",
                                     memory_mib=memory_mib, ha=ha)
        t0 = time.monotonic()
        parallel(define, sorted(set(placed.values())), self.width)
        return placed, time.monotonic() - t0

    def start_vms(self, placed):
        """Starts the VMs of placed ({vm: host}) on their hosts (width hosts
        at a time); the wall time it took."""
        def start(h):
            for vm in [v for v, x in placed.items() if x == h]:
                # On the host it was defined on (placement on start would
                # choose; the scale runs measure a known spread).
                self.hosts[h].action(vm, "start", {"host": h})
        t0 = time.monotonic()
        parallel(start, sorted(set(placed.values())), self.width)
        return time.monotonic() - t0

    def wait_output(self, placed, text="ticker: 1", timeout=120):
        """Every VM of placed ({vm: host}) printed text on its host."""
        parallel(lambda kv: self.hosts[kv[1]].wait_console(kv[0], text, timeout=timeout),
                 list(placed.items()), self.width)

    def wait_owner_leases(self, names, timeout=30):
        """Every HA VM's owner key is on its owner's lease (etcd's view)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.cluster.etcdctl("get", "--prefix", f"{PREFIX}/owner/", "-w", "json")
            kvs = json.loads(r.stdout).get("kvs", [])
            on_lease = sum(1 for kv in kvs if int(kv.get("lease", 0)))
            if on_lease >= len(names):
                return
            if time.monotonic() > deadline:
                raise TestFailure(f"{on_lease} of {len(names)} owner keys on a lease")
            time.sleep(0.2)  # polling etcd with a deadline

    def pool_views(self, hosts):
        """The pool-wide list of each of hosts: {host: ({vm: [hosts]}, s)}."""
        return dict(zip([h.name for h in hosts],
                        parallel(lambda h: h.pool_list(), hosts, self.width)))

    def where_running(self):
        """{vm: [hosts whose own registry runs it]} over the live hosts."""
        out = {}
        for h, vms in zip(self.live(), parallel(lambda h: h.local_vms(), self.live(),
                                                self.width)):
            for n, v in vms.items():
                if v["state"] == "running":
                    out.setdefault(n, []).append(h.name)
        return out

    def kill_hosts(self, names):
        """kill -9 of each named host's cellad and then of its workers, all
        hosts at once (their pids read first). Returns the monotonic time
        just before the first kill."""
        pids = {n: [v["pid"] for v in self.hosts[n].local_vms().values() if v.get("pid")]
                for n in names}
        t0 = time.monotonic()
        for n in names:
            os.kill(self.hosts[n].proc.pid, signal.SIGKILL)
        for n in names:
            for pid in pids[n]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for n in names:
            self.hosts[n].proc.wait()
            self.killed.add(n)
        return t0

    def wait_failover(self, vms, t0, timeout=120, observer=None):
        """Each VM of vms runs on a live host: {vm: (host, seconds from t0
        to its first guest output there)} (cellad's CLOCK_MONOTONIC stamp of
        the first console byte, `first_output_monotonic_ns`). Raises with
        the VMs left at the deadline."""
        obs = observer or self.live()[0]
        left, got = set(vms), {}
        deadline = time.monotonic() + timeout
        while left:
            r = obs.get("/v1/vms")
            hosts_of = {v["name"]: v.get("host") for v in r.json["vms"]} if r.status == 200 \
                else {}
            for vm in list(left):
                h = hosts_of.get(vm)
                if not h or h in self.killed or h not in self.hosts:
                    continue
                m = self.hosts[h].get(f"/v1/vms/{vm}/metrics")
                if m.status == 200 and "first_output_monotonic_ns" in m.json:
                    got[vm] = (h, m.json["first_output_monotonic_ns"] / 1e9 - t0)
                    left.discard(vm)
            if not left:
                break
            if time.monotonic() > deadline:
                raise TestFailure(f"{len(left)} VMs not running elsewhere within {timeout} s: "
                                  f"{sorted(left)[:10]}")
            time.sleep(0.1)  # polling the survivors with a deadline
        return got

    # measurements -----------------------------------------------------------
    def etcd_counters(self):
        """etcd's request counters summed over the members: {grpc method:
        requests started}, from each member's /metrics (mutual TLS); and
        under "leader_changes" and "slow_applies" those members' counts."""
        c = self.cluster
        ctx = ssl.create_default_context(cafile=c.ca)
        ctx.check_hostname = False
        ctx.load_cert_chain(c.cert, c.key)
        out = {}
        for m in c.members:
            if not m.proc:
                continue
            with urllib.request.urlopen(m.endpoint + "/metrics", context=ctx, timeout=10) as r:
                text = r.read().decode()
            for line in text.splitlines():
                if line.startswith("grpc_server_started_total{"):
                    labels, value = line.rsplit(" ", 1)
                    meth = labels.split('grpc_method="')[1].split('"')[0]
                    out[meth] = out.get(meth, 0) + int(float(value))
                for metric, key in (("etcd_server_leader_changes_seen_total ", "leader_changes"),
                                    ("etcd_server_slow_apply_total ", "slow_applies")):
                    if line.startswith(metric):
                        out[key] = out.get(key, 0) + int(float(line.split()[1]))
        return out

    def cellad_rss_kib(self):
        """{host: VmRSS of its cellad} over the live hosts."""
        return {h.name: rss_kib(h.proc.pid) for h in self.live()}


def counter_delta(before, after, skip=("LeaseKeepAlive", "leader_changes", "slow_applies")):
    """after - before per method (those in skip left out: the hosts' lease
    renewals, which go on whatever else happens), and their sum."""
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after if k not in skip}
    d = {k: v for k, v in d.items() if v}
    return d, sum(d.values())
