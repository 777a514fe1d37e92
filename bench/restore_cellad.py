#!/usr/bin/env python3
"""restore_cellad.py: restores under cellad, through a standby worker
(standby_workers 1) and cold (standby_workers 0), side by side: a memwriter
VM saved and restored --runs times by each, with the two figures of each
restore's started event (docs/cellad.md, "Standby workers"): cellad's, from
spawning (or taking) the worker to its "status" answered, and the worker's
own, from its restore's start to its vCPUs ready ("restore: vCPUs ...").

Usage: bench/restore_cellad.py [--build DIR] [--runs N] [--mib MIB]
Run as root (cellad's sandbox).
"""
import argparse
import os
import re
import statistics
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
from cellad import ConsoleTail, Daemon, memwriter_rounds, poll  # noqa: E402

FIG = re.compile(r"vCPUs ready ([0-9.]+) ms after the restore began, ([0-9.]+) ms after cellad")


def runs(args, standby, n, mib):
    cfg = {"console_history_kib": 4096, "standby_workers": 1 if standby else 0}
    out = []
    with Daemon(args, name="cellad-standby" if standby else "cellad-cold", config=cfg) as d:
        d.define("r", "memwriter", cmdline="mib=4 rounds=0 pause_ms=50", memory_mib=mib)
        d.action("r", "start")
        for _ in range(n):
            if standby:  # a ready standby, as a host between restores has
                poll("a ready standby", lambda: d.get("/v1/host").json["standby_workers"]["ready"],
                     timeout=30)
            t = ConsoleTail(d, "r", len(d.console("r", history=1 << 30).encode()))
            memwriter_rounds(t, 0)
            t.close()
            d.cli("vm", "save", "r")
            since = max([e["seq"] for e in d.events(vm="r")] + [0])
            d.cli("vm", "restore", "r")
            ev = d.wait_event("r", "started", since=since + 1)
            m = FIG.search(ev["detail"])
            if m:
                out.append((float(m.group(2)), float(m.group(1))))
        d.action("r", "kill")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--mib", type=int, default=256)
    a = ap.parse_args()
    b = a.build
    args = {"cellad": f"{b}/daemon/cellad", "cella": f"{b}/cli/cella", "cella_vm": f"{b}/cella-vm",
            "guests": {"memwriter": f"{b}/guest/memwriter.elf"}}
    res = {k: runs(args, k == "standby", a.runs, a.mib) for k in ("cold", "standby")}
    print(f"\n## Restore under cellad ({a.mib} MiB memwriter, {a.runs} runs, median [min-max])\n")
    print("| worker | cellad: spawn/take to status answered | worker: restore to vCPUs ready |")
    print("|---|---|---|")
    for k, v in res.items():
        def col(i):
            xs = [x[i] for x in v]
            return f"{statistics.median(xs):.2f} ms [{min(xs):.2f}-{max(xs):.2f}]" if xs else "-"
        print(f"| {k} | {col(0)} | {col(1)} |")


if __name__ == "__main__":
    main()
