#!/usr/bin/env python3
"""replica.py: replication's achieved RPO (docs/replica.md). Two cellads in
network namespaces (the moves test's setup: tests/daemon/test_move.py); on
host a, a VM whose guest writes all the time: guest/tests/blkwriter.c,
random writes of --bs bytes (4 KiB, 64 KiB) over a --span-mib qcow2 disk
with changed-block tracking, paced by the guest itself to R MB/s, 32 in
flight, no flushes, every 4 KiB stamped with its write number and the
guest's clock. Replicated to host b every --interval, zstd or plain. Per
run (rate x write size x compression):

- the guest's achieved write rate (its progress lines);
- RPO, from the stamps: after the run, each recovery point the target made
  in the window is read (its layer, qemu-img convert -U) for the newest
  write it holds, whose guest time becomes host time through the offset
  min(arrival - guest clock) over the guest's progress lines (which the
  bench reads from the console stream as they come: a bound within a few
  ms). Point k, made (on b) at M_k, holds every write up to W_k; a write
  just after W_{k-1} is first on the target at M_k, so its lag is
  M_k - time(W_{k-1}): the RPO of that round. Reported: the worst and the
  median over the rounds, plus the source's own view (the largest lag_ms
  of `GET /v1/vms/NAME/replica`, sampled every 50 ms). The newest point
  of each run is also read whole: every stamped unit must be intact;
- bytes changed (the exports' data) and sent (the change sets on the wire)
  per byte the guest wrote;
- CPU seconds per second: the source's worker and cellad, the target's
  cellad (from /proc/PID/stat).

Last, the failover time: `cella replica failover` on b (the source killed)
to the VM's first output there.

Usage: bench/replica.py [--build DIR] [--rates 1,10,50] [--bs 4096,65536]
  [--compression zstd,none] [--interval S] [--seconds S] [--span-mib M]
Needs root, ip, openssl and qemu-img."""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from cellad import UnixHTTPConnection  # noqa: E402
from test_move import ADDR, PORT, Net, NsDaemon, make_certs  # noqa: E402
from wrtstamp import scan_image  # noqa: E402

SEED = 7
PROGRESS = re.compile(rb"blkwriter: t=(\d+) done=(\d+)")


def cpu_s(pid):
    """utime + stime of pid, seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def vcpu_s(pid):
    """CPU seconds of the worker's vCPU threads (the guest's own work)."""
    total = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                if not f.read().startswith("vcpu"):
                    continue
        except OSError:
            continue
        total += cpu_s(f"{pid}/task/{t}")
    return total


class Progress:
    """Follows the VM's console; for each "blkwriter: t=T done=D" line keeps
    (arrival CLOCK_REALTIME ns, T, D). offset(): host realtime minus guest
    clock, the smallest seen (the line's own travel time is never negative)."""

    def __init__(self, d, name):
        self.lines = []
        self.other = []  # the guest's other lines (a FAIL, ...)
        self.raw = []
        self.c = UnixHTTPConnection(d.sock, timeout=600)
        self.c.request("GET", f"/v1/vms/{name}/console?history={1 << 24}&follow=true")
        self.r = self.c.getresponse()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        buf = b""
        try:
            while True:
                chunk = self.r.read1(65536)
                if not chunk:
                    break
                now = time.time_ns()
                buf += chunk
                *whole, buf = buf.split(b"\n")
                for ln in whole:
                    m = PROGRESS.search(ln)
                    if m:
                        self.lines.append((now, int(m.group(1)), int(m.group(2))))
                        self.raw = (self.raw + [ln.decode()])[-10:]
                    elif len(self.other) < 50:
                        self.other.append(ln.decode(errors="replace"))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # the stream closed under the reader (close())

    def offset(self):
        return min(h - t for h, t, _ in self.lines)

    def skew_ms(self):
        """How far the offset moves from the first third of the lines to the
        last (a guest clock running at another rate than the host's)."""
        k = max(len(self.lines) // 3, 1)
        first = min(h - t for h, t, _ in self.lines[:k])
        return (min(h - t for h, t, _ in self.lines[-k:]) - first) / 1e6

    def done_at(self, host_ns):
        """The last progress line that arrived by host_ns."""
        seen = [x for x in self.lines if x[0] <= host_ns]
        return seen[-1] if seen else None

    def max_stall_ms(self, h0, h1):
        """The longest time in [h0, h1] the guest's done count stood still."""
        win = [x for x in self.lines if h0 <= x[0] <= h1]
        worst, since = 0, win[0] if win else None
        for x in win[1:]:
            if x[2] != since[2]:
                since = x
            worst = max(worst, x[1] - since[1])
        return worst / 1e6

    def close(self):
        try:
            self.c.sock.shutdown(2)
        except OSError:
            pass
        self.c.close()


def wait_for(what, fn, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"not within {timeout} s: {what}")
        time.sleep(0.1)  # polling with a deadline


def target_points(b, name):
    r = b.get(f"/v1/replicas/{name}")
    if r.status != 200 or not r.json.get("disks"):
        return []
    return r.json["disks"][0]["points"]


def layer_of(b, name, seq):
    d = os.path.join(b.state, "replicas", name, "disk-data")
    if seq == 0:
        return os.path.join(d, "base.qcow2")
    pre = f"p{seq:06d}-"
    for f in os.listdir(d):
        if f.startswith(pre) and f.endswith(".qcow2"):
            return os.path.join(d, f)
    raise SystemExit(f"{name}: no layer for point seq {seq} in {d} (merged? raise --keep)")


def rpo_from_points(b, name, pts, prog, offset, tmp, o):
    """Each point's newest write -> the rounds' lags (ms), and the newest
    point read whole, through its backing chain (stamped units, bad units)."""
    span = o.span_mib << 20
    newest = []
    for p in pts:  # the newest write of a point is in its own layer
        _, bad, n, t = scan_image(layer_of(b, name, p["seq"]), tmp, SEED, o.bs_now, span,
                                  backing=p["seq"] == 0)
        if bad:
            raise SystemExit(f"{name}: point {p['name']} has {bad} torn or foreign units")
        newest.append((p, n, t))
    # An empty layer (no write since the point before) holds what that
    # point held.
    for i in range(1, len(newest)):
        if newest[i][1] == 0:
            newest[i] = (newest[i][0], newest[i - 1][1], newest[i - 1][2])
    lags = []
    for (p0, n0, t0), (p1, n1, _) in zip(newest, newest[1:]):
        if n1 < n0:
            raise SystemExit(f"{name}: point {p1['name']} holds write {n1}, older than {n0}")
        # Every write the guest had completed when p0 was made was done
        # before p1's cut: p1 must hold it.
        seen = prog.done_at(p0["made_ns"])
        if seen and n1 < seen[2]:
            raise SystemExit(f"{name}: point {p1['name']} holds writes up to {n1}, the "
                             f"guest had completed {seen[2]} before {p0['name']} was made")
        if n1 > n0:  # writes n0+1..n1 are first on the target at p1
            lags.append((p1["made_ns"] - (t0 + offset)) / 1e6)
    whole = scan_image(layer_of(b, name, pts[-1]["seq"]), tmp, SEED, o.bs_now, span)
    if whole[1]:
        raise SystemExit(f"{name}: the newest point has {whole[1]} torn or foreign units")
    return lags, whole, [n for _, n, _ in newest]


def one_run(a, b, work, rate, bs, comp, o):
    name = f"r{bs // 1024}k{int(rate * 10)}{comp[0]}{getattr(o, 'run', '')}"
    img = os.path.join(work, name + ".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(o.span_mib << 20)],
                   check=True)
    o.bs_now = bs
    a.define(name, "blkwriter",
             f"mode=write bs={bs} kbs={int(rate * 1000)} qd=32 span_mib={o.span_mib} "
             f"seed={SEED} report_ms=100 {getattr(o, 'guest_args', '')}".strip(), memory_mib=128,
             disks=[{"path": img, "id": "data", "cbt": True}])
    a.action(name, "start")
    prog = Progress(a, name)
    wait_for("the guest's first writes", lambda: len(prog.lines) >= 3, 60)
    a.cli("replica", "enable", name, "--to", "b", "--interval", f"{o.interval:g}s",
          "--keep", "64", "--compression", comp)
    # The first (full) point, then one more, before measuring.
    wait_for("two points", lambda: len(target_points(b, name)) >= 2, 300)
    st0 = a.get(f"/v1/vms/{name}/replica").json
    wpid, apid, bpid = a.vm(name)["pid"], a.proc.pid, b.proc.pid
    c0 = (cpu_s(wpid), cpu_s(apid), cpu_s(bpid), vcpu_s(wpid))
    h0, t0 = time.time_ns(), time.monotonic()
    worst = 0
    while time.monotonic() - t0 < o.seconds:
        st = a.get(f"/v1/vms/{name}/replica").json
        worst = max(worst, st["lag_ms"])
        time.sleep(0.05)  # sampling
    dt = time.monotonic() - t0
    h1 = time.time_ns()
    st1 = a.get(f"/v1/vms/{name}/replica").json
    c1 = (cpu_s(wpid), cpu_s(apid), cpu_s(bpid), vcpu_s(wpid))
    load = os.getloadavg()[0]
    # Let the round in flight land, then stop this VM's load before reading.
    wait_for("a point after the window",
             lambda: any(p["made_ns"] > h1 for p in target_points(b, name)), 120)
    pts = target_points(b, name)
    last = o.failover_run
    if not last:
        a.cli("replica", "disable", name)
        a.action(name, "kill")
    p0, p1 = prog.done_at(h0), prog.done_at(h1)
    written = (p1[2] - p0[2]) * bs
    gdt = (p1[1] - p0[1]) / 1e9
    offset, skew = prog.offset(), prog.skew_ms()
    prog.close()
    if any("FAIL" in x for x in prog.other):
        raise SystemExit(f"{name}: the guest failed: {prog.other}")
    if p1[2] == p0[2] or h1 - p1[0] > 2e9:
        raise SystemExit(f"{name}: the guest stopped writing (its last progress line came "
                         f"{(h1 - p1[0]) / 1e9:.1f} s before the window's end; VM "
                         f"{a.vm(name).get('state')}): "
                         f"{prog.raw[-5:]} {prog.other}")
    # Rounds whose point was made in the window, with the point before them.
    inwin = [i for i, p in enumerate(pts) if h0 <= p["made_ns"] <= h1]
    if not inwin:
        raise SystemExit(f"{name}: no point made in the window")
    sel = pts[max(inwin[0] - 1, 0):inwin[-1] + 2]
    lags, whole, newest = rpo_from_points(b, name, sel, prog, offset, os.path.join(work, "flat.raw"),
                                          o)
    os.unlink(os.path.join(work, "flat.raw"))
    changed = st1["bytes_changed"] - st0["bytes_changed"]
    sent = st1["bytes_sent"] - st0["bytes_sent"]
    res = {"rate_mbs": rate, "bs": bs, "compression": comp,
           "guest_mbs": written / gdt / 1e6 if gdt else 0,
           "rpo_max_ms": max(lags), "rpo_p50_ms": statistics.median(lags),
           "rounds_measured": len(lags), "lag_source_max_ms": worst,
           "rounds": st1["rounds"] - st0["rounds"], "failures": st1["failures"] - st0["failures"],
           "changed_per_written": changed / written if written else 0,
           "sent_per_written": sent / written if written else 0,
           "cpu_source_worker": (c1[0] - c0[0]) / dt,
           "cpu_source_vcpu": (c1[3] - c0[3]) / dt, "cpu_source_cellad": (c1[1] - c0[1]) / dt,
           "cpu_target_cellad": (c1[2] - c0[2]) / dt, "last_round_ms": st1["last_round_ms"],
           "newest_point_units": whole[0], "newest_writes": newest, "load1": load,
           "clock_skew_ms": skew, "guest_max_stall_ms": prog.max_stall_ms(h0, h1), "lags_ms": [round(x) for x in lags],
           "guest_irq_before_hlt": int((re.findall(r"before_hlt=(\d+)", " ".join(prog.raw)) or
                                        ["0"])[-1])}
    return name, res


def failover_time(a, b, name):
    pid = a.vm(name)["pid"]
    a.kill9()
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    t0 = time.monotonic()
    b.cli("replica", "failover", name)
    while True:
        m = b.get(f"/v1/vms/{name}/metrics")
        if m.status == 200 and "first_output_monotonic_ns" in m.json:
            return (m.json["first_output_monotonic_ns"] / 1e9 - t0) * 1000
        if time.monotonic() - t0 > 60:
            raise SystemExit("no output after the failover")
        time.sleep(0.02)  # polling with a deadline


def table(results, o):
    print(f"\ninterval {o.interval:g} s, {o.seconds:g} s per run, span {o.span_mib} MiB, "
          f"grain {o.grain}")
    print("| guest writes | achieved | RPO worst / median (stamps) | source lag worst | rounds "
          "| changed / written | sent / written | CPU s/s: source worker (its vCPU), cellad; target "
          "cellad | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['rate_mbs']:g} MB/s, {r['bs'] // 1024} KiB, {r['compression']} "
              f"| {r['guest_mbs']:.2f} MB/s | {r['rpo_max_ms'] / 1000:.2f} / "
              f"{r['rpo_p50_ms'] / 1000:.2f} s | {r['lag_source_max_ms'] / 1000:.2f} s "
              f"| {r['rounds']} ({r['failures']} failed) | {r['changed_per_written']:.2f} | "
              f"{r['sent_per_written']:.2f} | {r['cpu_source_worker']:.2f} ({r['cpu_source_vcpu']:.2f}), "
              f"{r['cpu_source_cellad']:.2f}; {r['cpu_target_cellad']:.2f} | {r['load1']:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--rates", default="1,10,50")
    ap.add_argument("--bs", default="4096,65536")
    ap.add_argument("--compression", default="zstd")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--span-mib", type=int, default=256)
    ap.add_argument("--no-failover", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--grain", type=int, choices=(4096, 65536), default=4096,
                    help="the sets' unit: 4096 (cellad's own) or 65536 (the 64 KiB tracking "
                    "blocks, as before 4 KiB sets), through CELLA_TEST_REPLICA_GRAIN")
    ap.add_argument("--guest-args", default="",
                    help="more blkwriter parameters (e.g. 'nap=oneshot fixup=0': the lost "
                    "wake-up of docs/guest.md)")
    o = ap.parse_args()
    if os.geteuid():
        raise SystemExit("needs root (network namespaces)")
    os.environ["CELLA_TEST_REPLICA_GRAIN"] = str(o.grain)  # inherited by both cellads
    args = {"cellad": os.path.join(o.build, "daemon", "cellad"),
            "cella": os.path.join(o.build, "cli", "cella"),
            "cella_vm": os.path.join(o.build, "cella-vm"),
            "guests": {"blkwriter": os.path.join(o.build, "guest", "blkwriter.elf")}}
    runs = [(float(r), int(s), c) for c in o.compression.split(",") if c
            for s in o.bs.split(",") if s for r in o.rates.split(",") if r]
    certs = tempfile.mkdtemp(prefix="cella-bench-rep-certs-")
    work = tempfile.mkdtemp(prefix="cella-bench-rep-")
    net = Net()
    results, fo = [], None
    try:
        make_certs(certs)
        net.up()
        with NsDaemon(args, "a", net.ns["a"], certs) as a, \
                NsDaemon(args, "b", net.ns["b"], certs) as b:
            a.cli("host", "add", "b", "--url", f"https://{ADDR['b']}:{PORT}", "--token-file",
                  f"{certs}/b.token")
            for i, (rate, bs, comp) in enumerate(runs):
                o.failover_run = i == len(runs) - 1 and not o.no_failover
                o.run = i
                name, res = one_run(a, b, work, rate, bs, comp, o)
                results.append(res)
                print(json.dumps(res), flush=True)
            if not o.no_failover:
                fo = failover_time(a, b, name)
    finally:
        net.down()
        shutil.rmtree(certs, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if o.json:
        print(json.dumps({"runs": results, "failover_ms": fo}, indent=1))
        return
    table(results, o)
    if fo is not None:
        print(f"failover (command to first guest output on the target): {fo:.0f} ms")


if __name__ == "__main__":
    main()
