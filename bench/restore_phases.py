#!/usr/bin/env python3
"""restore_phases.py: where a restore's milliseconds go. Saves one memwriter
guest (as bench/restore.py does), then restores it --runs times with each
given cella-vm (interleaved, so that all see the same load) under
CELLA_TRACE_RESTORE=1, whose log line holds every start-up step's
CLOCK_MONOTONIC time (vmm/core/phase_trace.h). Prints, per step, the median
and the minimum over the runs: "spawn_to_main" is from just before this
script spawns the worker to the worker's main() (the same clock), "host_to_*"
the host-clock time at which each log line was read here.

Usage: bench/restore_phases.py [--build DIR] [--vm CELLA_VM[,CELLA_VM...]]
                               [--mem MIB] [--runs N] [--pace S] [--sandbox]
                               [--standby]

--sandbox restores as cellad runs a worker (--sandbox --seccomp --control:
the decoder and TLS modules preloaded, namespaces, filters). --pace: seconds
between restores (0.05 default; on a host that is itself a VM, an idle pause
makes the next spawn slower: see docs/benchmarks.md). --standby restores
through `cella-vm --standby --mem MIB` (plain-pipe mode): each worker is
started and waited for ("standby: ready") first, and "spawn_to_main" is
then from the request written to the restore's main().
"""
import json
import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time

import common
import restore

TRACE_RE = re.compile(r"trace: start=(\d+) (.*) total=([0-9.]+) ms")


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def one(vm, kernel, mem, touch, state, sandbox, d, standby=False):
    cmd = restore.cella_cmd(vm, kernel, mem, touch) + ["--restore", state]
    if sandbox:
        ctl = os.path.join(d, "ctl.sock")
        if os.path.exists(ctl):
            os.unlink(ctl)
        cmd += ["--sandbox", "--seccomp", "--control", ctl]
    env = dict(os.environ, CELLA_TRACE_RESTORE="1")
    if standby:
        p = subprocess.Popen([vm, "--standby", "--mem", str(mem)], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=env)
        for line in p.stderr:
            if "standby: ready" in line:
                break
        t0 = mono_ns()
        p.stdin.write(json.dumps(cmd[1:]) + "\n")
        p.stdin.flush()
    else:
        t0 = mono_ns()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=env)
    vals, seen = {}, {}
    try:
        for line in p.stderr:
            now = (mono_ns() - t0) / 1e6
            for key, word in (("host_to_loaded_line", "state loaded"),
                              ("host_to_running_line", "vCPUs running")):
                if word in line and key not in seen:
                    seen[key] = now
            m = TRACE_RE.search(line)
            if m:
                vals["spawn_to_main"] = (int(m.group(1)) - t0) / 1e6
                for kv in m.group(2).split():
                    k, v = kv.split("=")
                    vals[k] = vals.get(k, 0.0) + float(v)
                vals["worker_total"] = float(m.group(3))
                break
    finally:
        p.kill()
        p.communicate()
    vals.update(seen)
    return vals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build")
    ap.add_argument("--vm", help="cella-vm binaries, comma-separated (default: the build's)")
    ap.add_argument("--mem", type=int, default=256)
    ap.add_argument("--touch", type=int, default=128)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--pace", type=float, default=0.05)
    ap.add_argument("--sandbox", action="store_true")
    ap.add_argument("--standby", action="store_true")
    a = ap.parse_args()
    b = common.build_dir(a.build)
    vms = a.vm.split(",") if a.vm else [os.path.join(b, "cella-vm")]
    kernel = common.guest(b, "memwriter")
    touch = min(a.touch, a.mem // 2)
    cols = [dict() for _ in vms]
    order = []
    load0 = open("/proc/loadavg").read().split()[:3]
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as d:
        state = restore.cella_save(vms[0], kernel, a.mem, touch, d)[0]
        for _ in range(a.runs):
            for i, vm in enumerate(vms):
                for k, v in one(vm, kernel, a.mem, touch, state, a.sandbox, d, a.standby).items():
                    if k not in order:
                        order.append(k)
                    cols[i].setdefault(k, []).append(v)
                time.sleep(a.pace)  # benchmark pacing, see --pace
    load1 = open("/proc/loadavg").read().split()[:3]
    print(f"{a.runs} restores of a {a.mem} MiB guest each{' (sandboxed)' if a.sandbox else ''}"
          f"{' through standby workers' if a.standby else ''}, "
          f"load {' '.join(load0)} -> {' '.join(load1)}; ms, median (min)\n")
    print("| step | " + " | ".join(vms) + " |")
    print("|---|" + "---|" * len(vms))
    for k in order:
        row = f"| {k} |"
        for c in cols:
            xs = c.get(k)
            row += f" {statistics.median(xs):.3f} ({min(xs):.3f}) |" if xs else " - |"
        print(row)


if __name__ == "__main__":
    main()
