#!/usr/bin/env python3
"""sandbox_cost.py: what the worker's sandbox costs, one build against
another (e.g. the commit before a sandbox change), measured interleaved so
that the host's load falls on both alike. Root only.

- bare: spawn cella-vm (hello guest) -> first byte on its stdout, without
  and with `--sandbox=nobody --seccomp` (a user name: every version takes it);
- through cellad: POST start -> cellad's stamp of the first console byte,
  and a running worker's VmRSS (memwriter guest rewriting 1 MiB, read once
  it printed its first round), each build under its own private cellad with
  its default sandbox.

Usage: bench/sandbox_cost.py --base DIR [--build DIR] [--runs N]
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


def spawn_ms(build, extra):
    t0 = time.monotonic()
    p = subprocess.Popen([os.path.join(build, "cella-vm"), "--kernel",
                          os.path.join(build, "guest", "hello.elf"), "--cmdline", "", "--mem",
                          "64", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdout.read(1)
    ms = (time.monotonic() - t0) * 1000
    p.stdout.read()
    p.wait()
    return ms


def daemon_args(b):
    return {"cellad": os.path.join(b, "daemon", "cellad"), "cella": os.path.join(b, "cli", "cella"),
            "cella_vm": os.path.join(b, "cella-vm"),
            "guests": {"hello": os.path.join(b, "guest", "hello.elf"),
                       "memwriter": os.path.join(b, "guest", "memwriter.elf")}}


def one_start(d):
    t0 = time.monotonic()
    d.action("bench", "start")
    m = d.get("/v1/vms/bench/metrics").json
    deadline = time.monotonic() + 10
    while "first_output_monotonic_ns" not in m and time.monotonic() < deadline:
        time.sleep(0.005)  # the stamp is cellad's; only fetching it waits
        m = d.get("/v1/vms/bench/metrics").json
    ms = (m["first_output_monotonic_ns"] / 1e9 - t0) * 1000
    d.wait_state("bench", ("stopped", "crashed"))
    vm = d.action("mem", "start")
    d.wait_console("mem", "round 1")
    with open(f"/proc/{vm['pid']}/status") as f:
        rss = next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
    d.action("mem", "kill")
    d.wait_state("mem", ("stopped", "crashed"))
    return ms, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    builds = {"base": os.path.abspath(a.base), "this": os.path.abspath(a.build)}
    r = {k: {"plain": [], "sandbox": [], "start": [], "rss": []} for k in builds}
    for _ in range(a.runs * 5):
        for k, b in builds.items():
            r[k]["plain"].append(spawn_ms(b, ()))
            r[k]["sandbox"].append(spawn_ms(b, ("--sandbox=nobody", "--seccomp")))
    ds = {k: Daemon(daemon_args(b), name=f"cellad-{k}", config={"test_probe": False}).start()
          for k, b in builds.items()}
    try:
        for d in ds.values():
            d.define("bench", "hello")
            d.define("mem", "memwriter", "rounds=0 mib=1")
        for _ in range(a.runs):
            for k, d in ds.items():
                ms, rss = one_start(d)
                r[k]["start"].append(ms)
                r[k]["rss"].append(rss)
    finally:
        for d in ds.values():
            d.cleanup()
    med = statistics.median
    print(f"\n| build | bare spawn -> first byte (median of {a.runs * 5}) | with --sandbox "
          f"--seccomp | sandbox cost | API start -> first byte (median of {a.runs}) | "
          "worker VmRSS |")
    print("|---|---|---|---|---|---|")
    for k in builds:
        x = r[k]
        print(f"| {k} | {med(x['plain']):.2f} ms | {med(x['sandbox']):.2f} ms | "
              f"{med(x['sandbox']) - med(x['plain']):+.2f} ms | {med(x['start']):.2f} ms | "
              f"{med(x['rss']):.2f} MiB |")


if __name__ == "__main__":
    main()
