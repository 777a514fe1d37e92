#!/usr/bin/env python3
"""daemon_density.py: how many 64 MiB VMs this host runs at once under
cellad, and cellad's own memory and CPU use at idle with them running.

Each VM runs `memwriter rounds=0 mib=M pause_ms=1000` (touches M MiB of its
64 MiB, then keeps checking and rewriting it) with `cpu_max` capped (default
5 % of its vCPU) so that the run leaves this shared host usable. VMs are
started one by one until --max is reached, a start fails, or the host's
MemAvailable would fall under --reserve-mib. Then, with all of them running,
cellad's CPU time is sampled over --idle seconds (no API calls meanwhile)
and its RSS read. Prints a Markdown table; the per-VM footprint also gives
the count the host's memory would allow beyond the cap.

Usage: bench/daemon_density.py [--build DIR] [--max N] [--touch-mib M]
                               [--cpu-max PCT] [--idle S] [--reserve-mib R]
"""
import argparse
import os
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
from cellad import Daemon  # noqa: E402


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return 0


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--max", type=int, default=32)
    ap.add_argument("--touch-mib", type=int, default=32)
    ap.add_argument("--cpu-max", type=int, default=5)
    ap.add_argument("--idle", type=float, default=10)
    ap.add_argument("--reserve-mib", type=int, default=4096)
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    args = {"cellad": os.path.join(a.build, "daemon", "cellad"),
            "cella": os.path.join(a.build, "cli", "cella"),
            "cella_vm": os.path.join(a.build, "cella-vm"),
            "guests": {"memwriter": os.path.join(a.build, "guest", "memwriter.elf")}}
    avail0 = meminfo("MemAvailable")
    started, stop_reason, t_start = 0, f"--max {a.max} reached", []
    with Daemon(args, config={"test_probe": False}) as d:
        idle_rss0 = proc_rss_mib(d.proc.pid)
        for i in range(a.max):
            if meminfo("MemAvailable") < a.reserve_mib + 64 + 64:
                stop_reason = f"MemAvailable under the {a.reserve_mib} MiB reserve"
                break
            d.define(f"d{i}", "memwriter", f"rounds=0 mib={a.touch_mib} pause_ms=1000",
                     memory_mib=64, cpu_max=a.cpu_max)
            t0 = time.monotonic()
            r = d.post(f"/v1/vms/d{i}/start")
            if r.status != 200:
                stop_reason = f"start {i} failed: {r.json}"
                break
            t_start.append((time.monotonic() - t0) * 1000)
            started += 1
        # Every guest has touched its memory once it printed its first round.
        for i in range(started):
            d.wait_console(f"d{i}", "round 1", timeout=120)
        running = sum(1 for v in d.get("/v1/vms").json["vms"] if v["state"] == "running")
        avail1 = meminfo("MemAvailable")
        cpu0 = proc_cpu_s(d.proc.pid)
        time.sleep(a.idle)  # measuring idle CPU: nothing else to wait for
        cpu1 = proc_cpu_s(d.proc.pid)
        rss = proc_rss_mib(d.proc.pid)
        metrics = d.get("/v1/vms/d0/metrics").json
        worker_rss = metrics["memory"].get("VmRSS_kib", 0) / 1024
        per_vm = (avail0 - avail1) / max(1, running)
    fits = int((avail0 - a.reserve_mib) / per_vm) if per_vm > 0 else 0
    t_start.sort()
    print(f"\n## VM density under cellad ({running} x 64 MiB VMs, memwriter touching "
          f"{a.touch_mib} MiB, cpu_max {a.cpu_max} %)\n")
    print("| figure | value |")
    print("|---|---|")
    print(f"| VMs running at once | {running} (stopped because: {stop_reason}) |")
    print(f"| start latency (API, median / max) | {t_start[len(t_start) // 2]:.1f} ms / "
          f"{t_start[-1]:.1f} ms |")
    print(f"| host memory per VM (MemAvailable drop / VMs) | {per_vm:.1f} MiB |")
    print(f"| worker RSS (one VM, incl. touched guest RAM) | {worker_rss:.1f} MiB |")
    print(f"| VMs this host's memory allows (MemAvailable {avail0} MiB - reserve) | ~{fits} |")
    print(f"| cellad RSS: no VMs / {running} VMs | {idle_rss0:.1f} MiB / {rss:.1f} MiB |")
    print(f"| cellad CPU at idle with {running} VMs | {100 * (cpu1 - cpu0) / a.idle:.2f} % of "
          f"one CPU ({cpu1 - cpu0:.3f} s over {a.idle:.0f} s) |")


if __name__ == "__main__":
    main()
