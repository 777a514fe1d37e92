#!/usr/bin/env python3
"""exits.py: port-I/O and MMIO exit round trips per second from the test
guest's ring 3 (iobench), under cella-vm and QEMU microvm, against a bare
KVM_RUN loop on the same host (kvm-floor: the floor).

Usage: bench/exits.py [--build DIR] [--ops N] [--runs R]
"""
import argparse
import os
import subprocess

import common

# A port no device claims in either VMM, so every access exits to user space.
# (Port 0x80 would not do: QEMU coalesces writes to it in the kernel.)
PORT = 0x5e0


def floor(build, mode, ops):
    out = subprocess.run([os.path.join(build, "bench", "kvm-floor"), mode, str(ops)],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return float(out.split("exits/s")[0].split()[-1])


def iobench(vmm, build, ops):
    cmd = common.harness.build_command(vmm, os.path.join(build, "cella-vm"),
                                       common.guest(build, "iobench"),
                                       f"ops={ops} port={PORT:#x}", rng=True)
    lines, status = common.run_timed(cmd)
    if status != 1:
        raise SystemExit(f"iobench under {vmm}: exit status {status}")
    ph = common.phases(lines, "iobench")
    # Host-timed rate: operations over the wall time between the markers.
    return {t: v["ops"] / v["host_s"] for t, v in ph.items() if "ops" in v}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=None)
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    build = common.build_dir(a.build)
    rows = {}
    for r in range(a.runs):
        for mode in ("pio0", "mmio0", "pio3", "mmio3"):
            rows.setdefault(("floor", mode), []).append(floor(build, mode, a.ops))
        for vmm in ("cella", "qemu"):
            for test, rate in iobench(vmm, build, a.ops).items():
                rows.setdefault((vmm, test), []).append(rate)
    med = {k: common.median(v) for k, v in rows.items()}
    print(f"Exit round trips, median of {a.runs} runs of {a.ops} operations (host-timed)\n")
    print("| path | bare KVM_RUN loop (floor) | cella-vm | QEMU microvm | cella / floor | cella / QEMU |")
    print("|---|---|---|---|---|---|")
    for test, fmode in (("pio-out", "pio3"), ("pio-in", "pio3"), ("mmio-read", "mmio3")):
        f, c, q = med.get(("floor", fmode)), med.get(("cella", test)), med.get(("qemu", test))
        if not c:
            continue
        print(f"| {test}, guest ring 3 | {f:,.0f}/s ({1e6 / f:.1f} µs) | {c:,.0f}/s ({1e6 / c:.1f} µs) | "
              + (f"{q:,.0f}/s ({1e6 / q:.1f} µs)" if q else "n/a")
              + f" | {c / f:.2f} | " + (f"{c / q:.2f}" if q else "n/a") + " |")
    for mode in ("pio0", "mmio0"):
        f = med[("floor", mode)]
        print(f"| floor {mode} (real mode, CPL0, emulated here) | {f:,.0f}/s ({1e6 / f:.1f} µs) | | | | |")
    c = med.get(("cella", "ring0-call"))
    if c:
        print(f"\nGuest ring 3 -> ring 0 -> ring 3 (ud2 request) under cella-vm: {c:,.0f}/s ({1e6 / c:.1f} µs)")


if __name__ == "__main__":
    main()
