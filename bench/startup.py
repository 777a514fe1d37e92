#!/usr/bin/env python3
"""startup.py: start time, CPU time and peak RSS of cella-vm against QEMU microvm.

Runs a trivial PVH guest (prints one line, exits through port 0xf4) RUNS times
under each VMM with bench-launch, which measures spawn -> first serial byte,
spawn -> exit, CPU time and peak RSS. Prints medians and ratios as a Markdown
table.

Usage: bench/startup.py [--build DIR] [--runs N] [--guest ELF]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QEMU = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off,rtc=off,isa-serial=on",
        "-enable-kvm", "-cpu", "kvm64", "-m", "128", "-nodefaults", "-no-reboot",
        "-display", "none", "-serial", "stdio",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]


def measure(launcher, cmd, runs):
    out = subprocess.run([launcher, str(runs), "--"] + cmd, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    rows = [list(map(float, l.split())) for l in out.strip().splitlines()]
    bad = [r for r in rows if int(r[4]) != 1]
    if bad:
        sys.exit(f"{cmd[0]}: unexpected exit status {int(bad[0][4])} (the guest must exit with 0 via port 0xf4)")
    cols = list(zip(*rows))
    return {"first": statistics.median(cols[0]), "exit": statistics.median(cols[1]),
            "cpu": statistics.median(cols[2]), "rss": statistics.median(cols[3]) / 1024.0,
            "first_min": min(cols[0]), "exit_min": min(cols[1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--guest", default=None)
    args = ap.parse_args()
    # The trivial guest prints one line from its 32-bit entry and exits, as the
    # reference QEMU figure in HOST.md does; --guest picks another image (e.g.
    # the test guest's hello, which sets up long mode and ring 3 first).
    guest = args.guest or os.path.join(args.build, "guest", "tiny.elf")
    launcher = os.path.join(args.build, "bench", "bench-launch")
    cella = [os.path.join(args.build, "cella-vm"), "--kernel", guest, "--mem", "128"]
    qemu = QEMU + ["-kernel", guest]
    # Warm the page cache for both binaries and the guest.
    measure(launcher, cella, 2)
    measure(launcher, qemu, 1)
    c = measure(launcher, cella, args.runs)
    q = measure(launcher, qemu, args.runs)
    print(f"Start time, trivial PVH guest ({os.path.basename(guest)}), 128 MiB, median of {args.runs} runs\n")
    print("| metric | cella-vm | QEMU microvm | cella / QEMU |")
    print("|---|---|---|---|")
    for key, name, unit in (("first", "spawn to first serial byte", "ms"),
                            ("exit", "spawn to exit", "ms"),
                            ("cpu", "CPU time (user+sys)", "ms"),
                            ("rss", "peak RSS", "MiB")):
        print(f"| {name} | {c[key]:.2f} {unit} | {q[key]:.2f} {unit} | {c[key] / q[key]:.3f} |")
    print(f"\n(min first byte: cella {c['first_min']:.2f} ms, QEMU {q['first_min']:.2f} ms; "
          f"min exit: cella {c['exit_min']:.2f} ms, QEMU {q['exit_min']:.2f} ms)")
    print("\nVMM memory beyond the guest RAM the guest touched (peak RSS minus shared guest pages):\n")
    print("| guest | peak RSS | guest pages (RssShmem) | VMM's own |")
    print("|---|---|---|---|")
    memwriter = os.path.join(args.build, "guest", "memwriter.elf")
    hello = os.path.join(args.build, "guest", "hello.elf")
    for name, kernel, cmdline, extra in (
            ("tiny", guest, "", []),
            ("test guest hello", hello, "", []),
            ("test guest hello, --no-emulation-fallback (no decoder loaded)", hello, "",
             ["--no-emulation-fallback"]),
            ("memwriter, 64 MiB written", memwriter, "mib=64 rounds=1", [])):
        hwm, shm = vmm_memory(os.path.join(args.build, "cella-vm"), kernel, cmdline, extra)
        print(f"| {name} | {hwm / 1024:.2f} MiB | {shm / 1024:.2f} MiB | {(hwm - shm) / 1024:.2f} MiB |")


def vmm_memory(cella, kernel, cmdline, extra):
    """VmHWM and RssShmem (KiB) from cella-vm --stats."""
    err = subprocess.run([cella, "--kernel", kernel, "--cmdline", cmdline, "--stats",
                          "--console", "none"] + extra, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True).stderr
    vals = dict(re.findall(r"(VmHWM|RssShmem):(\d+)", err))
    return int(vals["VmHWM"]), int(vals["RssShmem"])


if __name__ == "__main__":
    main()
