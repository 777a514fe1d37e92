#!/usr/bin/env python3
"""test_density.py: the density bench's code path, small (nothing timed).

Runs bench/density.py with 20 VMs whose guests report the 32 MiB they
touched (free page reporting) and 6 that keep it, under a soft
RLIMIT_NOFILE of 32 (cellad holds about two descriptors per VM: it must
raise its soft limit to the hard one, or a start past the tenth or so
fails), and checks from the bench's JSON that every VM ran and went idle,
that reported pages left the host (the workers' RssShmem) while kept ones
did not, that the cella CLI listed every VM, and that a restarted cellad
re-adopted them all. The bench stops every VM and cellad itself; this test
checks that no worker is left.
"""
import json
import os
import subprocess
import sys
import tempfile

from cellad import TestFailure, check, log, main

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def workers_of(build):
    """Pids of cella-vm processes started from this build."""
    exe = os.path.realpath(os.path.join(build, "cella-vm"))
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.path.realpath(f"/proc/{p}/exe") == exe:
                    out.append(int(p))
            except OSError:
                pass
    return out


def test(args):
    build = os.path.dirname(os.path.dirname(os.path.abspath(args["cellad"])))
    before = set(workers_of(build))
    with tempfile.TemporaryDirectory(prefix="cella-density-") as tmp:
        jpath = os.path.join(tmp, "density.json")
        results = []
        bench_pids = set()
        for mode, n in (("report", 20), ("plain", 4)):
            cmd = ["prlimit", "--nofile=32:", "--", sys.executable,
                   os.path.join(TOP, "bench", "density.py"), "--build", build,
                   "--mode", mode, "--max", str(n), "--idle", "1", "--parallel", "3",
                   "--floor-mib", "1024", "--idle-timeout", "180", "--json", jpath]
            if mode == "report":
                cmd.append("--restart")
            log("$ " + " ".join(cmd))
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            bench_pids.add(p.pid)  # prlimit execs python: the bench's own pid
            stdout, stderr = p.communicate(timeout=600)
            print(stdout[-4000:], stderr[-4000:], flush=True)
            check(p.returncode == 0, f"density.py --mode {mode} exits 0")
            with open(jpath) as f:
                results.append((n, json.load(f)["results"][0]))
    for n, r in results:
        mode = r["mode"]
        if r["started"] < n and "MemAvailable" in r["stop_reason"]:
            raise TestFailure(f"{mode}: the host is short of memory: {r['stop_reason']}")
        check(r["started"] == n and r["running"] == n,
              f"{mode}: {n} VMs started and running ({r['stop_reason']})")
        check(not r["not_idle"] and not r["guest_failed"],
              f"{mode}: every guest touched its memory and went idle ({r['guest_failed']})")
        check(r["cli_list_lines"] >= n + 1, f"{mode}: cella vm list shows all {n}")
        shmem = r["worker_avg_kib"]["RssShmem"]
        if mode == "report":
            check(shmem < 4096, f"report: reported pages left the host "
                  f"(worker RssShmem {shmem:.0f} KiB on average)")
            check(r["restart_running"] == n, f"report: a restarted cellad re-adopted all {n}")
        else:
            check(shmem >= 32 * 1024, f"plain: touched pages stay (RssShmem {shmem:.0f} KiB)")
        check(r["worker_avg_kib"]["Threads"] <= 4, f"{mode}: workers run at most 4 threads")
    left = set(workers_of(build)) - before
    check(not left, f"no worker left behind ({sorted(left)})")
    # The bench's cellad used cgroup parent cella-test-<the bench's pid>:
    # none of the benches' parents may remain.
    for ctl in ("cpu", "memory", "pids"):
        base = f"/sys/fs/cgroup/{ctl}"
        for n in os.listdir(base) if os.path.isdir(base) else []:
            suffix = n[len("cella-test-"):]
            if n.startswith("cella-test-") and suffix.isdigit() and int(suffix) in bench_pids:
                raise TestFailure(f"the bench left cgroup {base}/{n}")
    log("ok: the benches removed their cgroups")


if __name__ == "__main__":
    main(test, need_root=True)
