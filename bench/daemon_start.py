#!/usr/bin/env python3
"""daemon_start.py: time from `cella vm start` to the guest's first serial
byte through cellad, against the bare worker (cella-vm spawned directly,
spawn -> first byte on its stdout).

Through cellad: t0 is taken just before the `cella vm start` process is
spawned; the first byte's time is cellad's CLOCK_MONOTONIC stamp of the first
console byte it read (`first_output_monotonic_ns` in the VM's metrics), the
same clock as Python's time.monotonic(). Also reported: the CLI's own wall
time (`cella vm start` returns once the guest runs). The guest is `hello`
(prints a line, exits through port 0xf4). Sandbox and seccomp as configured
by default (on as root).

Worker memory: a memwriter guest (rewriting 1 MiB) is started through cellad
N times; once it printed its first round, the worker's VmRSS, RssAnon (the
VMM's own heap; guest RAM is RssShmem) and its memory cgroup's usage (v1:
memory.usage_in_bytes, which also counts kernel memory charged to it, such
as namespaces) are read, then the VM is killed.

Usage: bench/daemon_start.py [--build DIR] [--runs N]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
from cellad import Daemon  # noqa: E402


def bare(build, guest, runs, extra=()):
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        p = subprocess.Popen([os.path.join(build, "cella-vm"), "--kernel", guest, "--cmdline",
                              "", "--mem", "64", *extra], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        p.stdout.read(1)
        out.append((time.monotonic() - t0) * 1000)
        p.stdout.read()
        p.wait()
    return out


def through_cellad(build, guest, runs):
    args = {"cellad": os.path.join(build, "daemon", "cellad"),
            "cella": os.path.join(build, "cli", "cella"),
            "cella_vm": os.path.join(build, "cella-vm"), "guests": {"hello": guest}}
    first, cli = [], []
    with Daemon(args, config={"test_probe": False}) as d:
        d.define("bench", "hello")
        for _ in range(runs):
            t0 = time.monotonic()
            subprocess.run([args["cella"], "--socket", d.sock, "vm", "start", "bench"],
                           check=True, stdout=subprocess.DEVNULL)
            cli.append((time.monotonic() - t0) * 1000)
            m = d.get("/v1/vms/bench/metrics").json
            deadline = time.monotonic() + 10
            while "first_output_monotonic_ns" not in m and time.monotonic() < deadline:
                time.sleep(0.005)  # the stamp is taken by cellad; only fetching it waits
                m = d.get("/v1/vms/bench/metrics").json
            if "first_output_monotonic_ns" not in m:
                sys.exit(f"no console output: {d.vm('bench')}")
            first.append((m["first_output_monotonic_ns"] / 1e9 - t0) * 1000)
            d.wait_state("bench", ("stopped", "crashed"))
        host = d.get("/v1/host").json
    return first, cli, host


def read_kib(pid, keys):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out


def worker_memory(build, runs):
    args = {"cellad": os.path.join(build, "daemon", "cellad"),
            "cella": os.path.join(build, "cli", "cella"),
            "cella_vm": os.path.join(build, "cella-vm"),
            "guests": {"memwriter": os.path.join(build, "guest", "memwriter.elf")}}
    rss, anon, cg = [], [], []
    with Daemon(args, config={"test_probe": False}) as d:
        d.define("mem", "memwriter", "rounds=0 mib=1")
        for _ in range(runs):
            vm = d.action("mem", "start")
            d.wait_console("mem", "round 1")
            m = read_kib(vm["pid"], ("VmRSS", "RssAnon"))
            rss.append(m["VmRSS"] / 1024)
            anon.append(m["RssAnon"] / 1024)
            usage = f"/sys/fs/cgroup/memory/{d.cgroup_parent}/{vm['uuid']}/memory.usage_in_bytes"
            if os.path.exists(usage):
                cg.append(int(open(usage).read()) / (1 << 20))
            d.action("mem", "kill")
            d.wait_state("mem", ("stopped", "crashed"))
    return rss, anon, cg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    guest = os.path.join(a.build, "guest", "hello.elf")
    b = bare(a.build, guest, a.runs)
    # The sandbox alone: the same worker confined as cellad confines it
    # (a user name, which every version accepts), root only.
    sb = bare(a.build, guest, a.runs, ("--sandbox=nobody", "--seccomp")) \
        if os.geteuid() == 0 else None
    first, cli, host = through_cellad(a.build, guest, a.runs)
    med = statistics.median
    print(f"\n## Start to first serial byte (hello guest, 64 MiB, median of {a.runs}; "
          f"sandbox {host['sandbox']}, seccomp {host['seccomp']}, cgroups {host['cgroups']})\n")
    print("| path | median ms | min ms |")
    print("|---|---|---|")
    print(f"| bare worker: spawn cella-vm -> first byte | {med(b):.1f} | {min(b):.1f} |")
    if sb:
        print(f"| bare worker with --sandbox=nobody --seccomp | {med(sb):.1f} | {min(sb):.1f} |")
    print(f"| `cella vm start` -> first byte (through cellad) | {med(first):.1f} | "
          f"{min(first):.1f} |")
    print(f"| `cella vm start` process wall time | {med(cli):.1f} | {min(cli):.1f} |")
    print(f"\ncellad overhead (median): {med(first) - med(b):+.1f} ms")
    rss, anon, cg = worker_memory(a.build, a.runs)
    print(f"\n## Worker memory (memwriter guest, 1 MiB rewritten, median of {a.runs})\n")
    print("| figure | median MiB | max MiB |")
    print("|---|---|---|")
    print(f"| worker VmRSS | {med(rss):.2f} | {max(rss):.2f} |")
    print(f"| worker RssAnon (the VMM's heap) | {med(anon):.2f} | {max(anon):.2f} |")
    if cg:
        print(f"| its memory cgroup's usage | {med(cg):.2f} | {max(cg):.2f} |")


if __name__ == "__main__":
    main()
