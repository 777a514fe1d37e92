#!/usr/bin/env python3
"""linux_boot.py: time the microVM guest kernel's boot milestones on cella-vm
(host clock from spawn, and the kernel's own printk time), count the
emulation failures cella-vm handled on the way (--stats), and run the same
kernel on QEMU microvm for the record (on an emulating KVM it stops at the
first instruction KVM cannot emulate).

The setup is the integration test's (tests/integration/linux): ext4 root on
virtio-blk, virtio-net on a tap in a private network namespace with dnsmasq
serving DHCP, virtio-rng. Needs root.

With --keep-features, one more boot where the command line carries its own
"noxsave" (so cella-vm adds no clearcpuid=): the kernel then uses popcnt,
clac/stac and cmpxchg16b, and each use is an emulation failure cella-vm
handles.

Usage: bench/linux_boot.py [--build DIR] [--kernel BZIMAGE] [--runs N]
                           [--keep-features] [--no-qemu] [--json FILE]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

import common

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(common.TOP, "tests", "integration", "linux"))
import test_linux_boot as lb  # noqa: E402

MILESTONES = [
    ("first console line", r"."),
    ("virtio probed (blk)", r"virtio_blk virtio\d+: \[vda\]"),
    ("root mounted", r"VFS: Mounted root \(ext4"),
    ("network up (DHCP)", r"IP-Config: Complete:"),
    ("/init started", r"Run /init as init process"),
]
KTIME = re.compile(r"^\[\s*(\d+\.\d+)\]")
TIMEOUT = 600


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def run_cella(cella_vm, kernel, env):
    """One boot; returns {milestone: (host_s, guest_s, cpu_s)}, the emulation
    summary and the features hidden. cpu_s is cella-vm's own CPU time (ip
    netns exec execs it, same pid): on a shared host it says what the boot
    costs whatever the other load."""
    cmd = env.wrapper() + lb.cella_command(cella_vm, kernel, env)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []
    t = threading.Thread(target=lambda: err.extend(p.stderr), daemon=True)
    t.start()
    got = {}
    pending = list(MILESTONES)
    deadline = t0 + TIMEOUT
    for line in p.stdout:
        now = time.perf_counter() - t0
        for name, pat in list(pending):
            if re.search(pat, line):
                m = KTIME.match(line)
                got[name] = (now, float(m.group(1)) if m else None, cpu_seconds(p.pid))
                pending.remove((name, pat))
        if not pending or time.perf_counter() > deadline:
            break
    p.terminate()
    p.wait()
    t.join(timeout=10)
    stats = "".join(err)
    m = re.search(r"stats: emulation failures handled=(\d+)(.*)", stats)
    emul = (int(m.group(1)), m.group(2).strip()) if m else (None, "")
    hide = re.search(r'hiding features from the Linux guest with "([^"]*)"', stats)
    return got, emul, hide.group(1) if hide else ""


def run_qemu(kernel, env, hide):
    """QEMU microvm, same kernel, devices and command line, including the
    feature hiding cella-vm added (hide), so that it gets as far as it can.
    Returns the last console line, the first lines of its error report, and
    the time it stopped (QEMU pauses the VM on a KVM internal error; it is
    killed then)."""
    cmd = env.wrapper() + common.harness.build_command(
        "qemu", None, kernel, (lb.linux_cmdline() + " " + hide).strip(), mem=256,
        disks=[env.img], net_tap=lb.TAP, rng=True)
    # The harness's -cpu kvm64 (-cpu host fails here: QEMU cannot set
    # MSR_IA32_ARCH_CAPABILITIES on this KVM). CPUID is the host's either way.
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last_console, report, stopped = "", [], None
    deadline = t0 + TIMEOUT
    for line in p.stdout:
        line = line.rstrip("\n")
        if KTIME.match(line) or line.startswith("Linux"):
            last_console = line
        if "KVM internal error" in line or report:
            report.append(line)
            if stopped is None:
                stopped = time.perf_counter() - t0
            if line.startswith("RIP=") or len(report) >= 16:
                break
        if re.search(r"Run /init as init process", line) or time.perf_counter() > deadline:
            stopped = time.perf_counter() - t0
            break
    p.kill()
    p.wait()
    return last_console, report, stopped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=None)
    ap.add_argument("--kernel", default=None)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--keep-features", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cella_vm = os.path.join(common.build_dir(a.build), "cella-vm")
    kernel = a.kernel or lb.build_kernel()
    init_src = os.path.join(common.TOP, "guest", "linux", "init", "init.c")
    results = {"kernel": kernel, "cella": [], "qemu": None}
    with lb.LinuxEnv(init_src) as env:
        for i in range(a.runs):
            got, emul, hide = run_cella(cella_vm, kernel, env)
            results["cella"].append({"milestones": got, "emulated": emul[0],
                                     "by_kind": emul[1], "hidden": hide})
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[0]:.1f} s" for k, v in got.items())
                  + f"; emulated {emul[0]} ({emul[1]})", flush=True)
        if a.keep_features:
            os.environ["CELLA_LINUX_CMDLINE_EXTRA"] = "noxsave"
            got, emul, hide = run_cella(cella_vm, kernel, env)
            del os.environ["CELLA_LINUX_CMDLINE_EXTRA"]
            results["keep_features"] = {"milestones": got, "emulated": emul[0],
                                        "by_kind": emul[1]}
            print("features kept: " + ", ".join(f"{k} {v[0]:.1f} s" for k, v in got.items())
                  + f"; emulated {emul[0]} ({emul[1]})", flush=True)
        if not a.no_qemu:
            hide = results["cella"][0]["hidden"] if results["cella"] else ""
            results["qemu"] = dict(zip(("last_console", "report", "stopped_s"),
                                       run_qemu(kernel, env, hide)))

    print(f"\nmicroVM kernel {kernel}\n")
    print("| milestone | host time from spawn (s) | guest printk time (s) | cella-vm CPU time (s) |")
    print("|---|---|---|---|")
    for name, _ in MILESTONES:
        rs = [r["milestones"][name] for r in results["cella"] if name in r["milestones"]]
        if not rs:
            print(f"| {name} | not reached | | |")
            continue
        gs = [x[1] for x in rs if x[1] is not None]
        print(f"| {name} | {common.median([x[0] for x in rs]):.1f} | "
              f"{common.median(gs):.1f} | {common.median([x[2] for x in rs]):.1f} |")
    for r in results["cella"]:
        print(f"\nemulation failures handled: {r['emulated']} ({r['by_kind']}); "
              f"features hidden: {r['hidden'] or 'none'}")
    k = results.get("keep_features")
    if k:
        print("\nfeatures kept (own 'noxsave', no clearcpuid=): "
              + ", ".join(f"{n} {v[0]:.1f} s" for n, v in k["milestones"].items())
              + f"; emulation failures handled: {k['emulated']} ({k['by_kind']})")
    q = results["qemu"]
    if q:
        print(f"\nQEMU microvm: stopped after {q['stopped_s'] or float('nan'):.1f} s; "
              f"last console line: {q['last_console']!r}")
        for line in q["report"]:
            print(f"  qemu| {line}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
