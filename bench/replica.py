#!/usr/bin/env python3
"""replica.py: replication's achieved RPO (docs/replica.md). Two cellads in
network namespaces (the moves test's setup: tests/daemon/test_move.py); on
host a, a VM whose guest writes all the time (blkverify mode=seq: 4 KiB
writes to pseudo-random slots of a 64 MiB qcow2 disk, a flush every 16),
its write rate held at R MB/s by the disk's QoS bandwidth limit, replicated
to host b every --interval. For each rate:

- achieved RPO: the largest age, over the run, of the newest point the
  target has confirmed (sampled every 50 ms from `cella replica status`:
  its lag since that point's cut, plus the round in flight), i.e. how much
  of the guest's writes a host failure at the worst instant would lose;
- the guest's achieved write rate (its own rounds), bytes changed (the
  exports' data) and sent (the change sets) per byte the guest wrote;
- CPU seconds per second on each side: the source's worker and cellad, the
  target's cellad (from /proc/PID/stat).

Last, the failover time: `cella replica failover` on b (the source killed)
to the VM's first output there.

Usage: bench/replica.py [--build DIR] [--rates 1,10,50] [--interval S] [--seconds S]
Needs root, ip, openssl and qemu-img."""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
from test_move import ADDR, PORT, Net, NsDaemon, make_certs  # noqa: E402

SEQ = "mode=seq batch=16 qd=8 seed=7 slots=2048 stride=32768"
SIZE = 64 << 20


def cpu_s(pid):
    """utime + stime of pid, seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def flushed(d, name):
    rounds = re.findall(r"^flushed (\d+)", d.console(name, history=1 << 22), re.M)
    return int(rounds[-1]) if rounds else 0


def one_rate(a, b, work, rate, interval, seconds):
    name = f"rb{int(rate * 10)}"
    img = os.path.join(work, name + ".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(SIZE)], check=True)
    a.define(name, "blkverify", SEQ, memory_mib=128,
             disks=[{"path": img, "id": "data", "cbt": True,
                     "qos": {"bps": int(rate * 1e6)}}])
    a.action(name, "start")
    deadline = time.monotonic() + 60
    while flushed(a, name) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the guest's first flushes
    a.cli("replica", "enable", name, "--to", "b", "--interval", f"{interval}s", "--keep", "8")
    # Wait for the first (full) point, then measure.
    while a.get(f"/v1/vms/{name}/replica").json.get("rounds", 0) < 1:
        time.sleep(0.1)  # polling with the run's own deadline below
    st0 = a.get(f"/v1/vms/{name}/replica").json
    wpid, apid, bpid = a.vm(name)["pid"], a.proc.pid, b.proc.pid
    c0 = (cpu_s(wpid), cpu_s(apid), cpu_s(bpid))
    f0, t0 = flushed(a, name), time.monotonic()
    worst = 0
    while time.monotonic() - t0 < seconds:
        st = a.get(f"/v1/vms/{name}/replica").json
        worst = max(worst, st["lag_ms"])
        time.sleep(0.05)  # sampling
    dt = time.monotonic() - t0
    st1 = a.get(f"/v1/vms/{name}/replica").json
    c1 = (cpu_s(wpid), cpu_s(apid), cpu_s(bpid))
    f1 = flushed(a, name)
    written = (f1 - f0) * 4096
    changed = st1["bytes_changed"] - st0["bytes_changed"]
    sent = st1["bytes_sent"] - st0["bytes_sent"]
    res = {"rate_mbs": rate, "guest_mbs": written / dt / 1e6, "rpo_ms": worst,
           "rounds": st1["rounds"] - st0["rounds"], "failures": st1["failures"] - st0["failures"],
           "changed_per_written": changed / written if written else 0,
           "sent_per_written": sent / written if written else 0,
           "cpu_source_worker": (c1[0] - c0[0]) / dt, "cpu_source_cellad": (c1[1] - c0[1]) / dt,
           "cpu_target_cellad": (c1[2] - c0[2]) / dt, "last_round_ms": st1["last_round_ms"]}
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


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--rates", default="1,10,50")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()
    if os.geteuid():
        raise SystemExit("needs root (network namespaces)")
    args = {"cellad": os.path.join(o.build, "daemon", "cellad"),
            "cella": os.path.join(o.build, "cli", "cella"),
            "cella_vm": os.path.join(o.build, "cella-vm"),
            "guests": {"blkverify": os.path.join(o.build, "guest", "blkverify.elf")}}
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
            last = None
            for rate in [float(r) for r in o.rates.split(",") if r]:
                name, res = one_rate(a, b, work, rate, o.interval, o.seconds)
                results.append(res)
                print(json.dumps(res), flush=True)
                if last:
                    a.cli("replica", "disable", last)
                    a.action(last, "kill")
                last = name
            fo = failover_time(a, b, last)
    finally:
        net.down()
        shutil.rmtree(certs, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if o.json:
        print(json.dumps({"rates": results, "failover_ms": fo}, indent=1))
        return
    print(f"\ninterval {o.interval:g} s, {o.seconds:g} s per rate")
    print("| guest writes (cap) | achieved | RPO (worst) | rounds | changed / written | "
          "sent / written | CPU: source worker, cellad; target cellad |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['rate_mbs']:g} MB/s | {r['guest_mbs']:.2f} MB/s | {r['rpo_ms'] / 1000:.2f} s "
              f"| {r['rounds']} ({r['failures']} failed) | {r['changed_per_written']:.1f} | "
              f"{r['sent_per_written']:.1f} | {r['cpu_source_worker']:.2f}, "
              f"{r['cpu_source_cellad']:.2f}; {r['cpu_target_cellad']:.2f} |")
    print(f"failover (command to first guest output on the target): {fo:.0f} ms")


if __name__ == "__main__":
    main()
