#!/usr/bin/env python3
"""worker_exit.py: how long a worker's exit takes to be seen, with and
without a PID namespace of its own, for one or more builds.

Runs the smp guest on 4 vCPUs (`--sandbox --seccomp`, root only) and
measures from the worker's last log line ("exit: ...") to its parent
having reaped it: that is the part of a stop that the KVM VM's kernel-side
teardown can add to. "in a PID namespace" runs it under
`unshare --pid --fork` (the worker is PID 1 there, as under cellad; the
figure includes unshare's own wait).

Usage: bench/worker_exit.py [--runs N] BUILD_DIR...
"""
import argparse
import os
import statistics
import subprocess
import time


def exit_ms(build, prefix):
    cmd = prefix + [os.path.join(build, "cella-vm"), "--kernel",
                    os.path.join(build, "guest", "smp.elf"), "--cpus", "4", "--cmdline",
                    "cpus=4", "--sandbox", "--seccomp"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t_exit = None
    for line in p.stdout:
        if b"exit:" in line:
            t_exit = time.monotonic()
    p.wait()
    if t_exit is None:
        raise SystemExit(f"{build}: no exit line (status {p.returncode})")
    return (time.monotonic() - t_exit) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("builds", nargs="+")
    a = ap.parse_args()
    kinds = {"plain": [], "in a PID namespace": ["unshare", "--pid", "--fork"]}
    r = {(b, k): [] for b in a.builds for k in kinds}
    for _ in range(a.runs):  # interleaved: the host's load falls on all alike
        for b in a.builds:
            for k, prefix in kinds.items():
                r[(b, k)].append(exit_ms(b, prefix))
    print(f"\n| build | exit line -> reaped, plain (median of {a.runs}, p90) | "
          "in a PID namespace (median, p90) |")
    print("|---|---|---|")
    for b in a.builds:
        cells = []
        for k in kinds:
            x = sorted(r[(b, k)])
            cells.append(f"{statistics.median(x):.2f} ms, {x[int(len(x) * 0.9)]:.2f} ms")
        print(f"| {b} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
