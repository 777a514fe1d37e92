#!/usr/bin/env python3
"""export.py: live exports (disk-export, docs/storage.md "Live exports"):
their throughput, and what they cost the guest's writes.

1. Throughput: a raw image of --mib MiB, fully written, cbt=on; the VM is
   paused (nothing writes); full exports to a pipe that this script reads
   and discards, --runs times: MB/s of stream.
2. Guest impact: the test guest's blkbench (4 KiB random writes at queue
   depth 1 and 32 over the whole disk, then 1 MiB sequential writes) on the
   same kind of image: with no export; with incremental exports every
   --interval seconds (what replica does: each since the previous point,
   after a first full one); and, the worst case, with full exports back to
   back for the whole run (each starts when the previous ended, so nearly
   every guest write lands on a block still to send). IOPS / MB/s, mean
   time per request at depth 1, and how many requests waited for a
   copy-before-write read (and of those, with the copies at their cap).

3. Bandwidth caps (max_bandwidth): with --caps MB/s,... one full export
   of the paused VM per cap: the rate achieved against the cap.

Usage: bench/export.py [--build DIR] [--mib M] [--ops N] [--runs R] [--dir D]
                       [--caps 10,50,200] [--caps-only]
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

import common

harness = common.harness


def control(ctl, req, fds=()):
    return harness.control(ctl, req, fds=fds, timeout=120)


def wait_socket(ctl, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(ctl)
                return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"control socket {ctl} never opened")


def export_once(ctl, point, since=None, max_copies=None, max_bandwidth=None):
    """One export into a pipe read here; returns (bytes, seconds, status)."""
    req = {"cmd": "disk-export", "disk": "d", "fd": 0, "point": point}
    if since:
        req["since"] = since
    if max_copies:
        req["max_copies"] = max_copies
    if max_bandwidth:
        req["max_bandwidth"] = max_bandwidth
    r, w = os.pipe()
    t0 = time.perf_counter()
    try:
        rep = control(ctl, req, fds=[w])
    finally:
        os.close(w)
    if not rep.get("ok"):
        os.close(r)
        raise SystemExit(f"disk-export: {rep}")
    n = 0
    while True:
        chunk = os.read(r, 1 << 20)
        if not chunk:
            break
        n += len(chunk)
    os.close(r)
    dt = time.perf_counter() - t0
    st = control(ctl, {"cmd": "status"})["disks"][0]["export"]
    if st["state"] != "done":
        raise SystemExit(f"export ended as {st}")
    return n, dt, st


def make_image(path, mib):
    with open(path, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(mib):
            f.write(chunk)


def start_vm(build, kernel, cmdline, img, ctl):
    cmd = harness.build_command("cella", os.path.join(build, "cella-vm"),
                                common.guest(build, kernel), cmdline,
                                disks=[img + ",cbt=on,id=d"], extra=["--control", ctl])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, text=True)


def throughput(build, tmp, mib, runs, caps=()):
    """Uncapped rates (MB/s) of `runs` full exports, then (cap, rate,
    throttled) for each cap in MB/s."""
    img, ctl = os.path.join(tmp, "t.raw"), os.path.join(tmp, "t.sock")
    make_image(img, mib)
    p = start_vm(build, "blkverify", "mode=seq slots=16 batch=1 qd=1", img, ctl)
    try:
        wait_socket(ctl)
        control(ctl, {"cmd": "pause"})
        rates, capped = [], []
        for i in range(runs):
            n, dt, _ = export_once(ctl, f"t{i}")
            rates.append(n / dt / 1e6)
        for i, cap in enumerate(caps):
            n, dt, st = export_once(ctl, f"c{i}", max_bandwidth=int(cap * 1e6))
            capped.append((cap, n / dt / 1e6, st["throttled"]))
    finally:
        p.kill()
        p.wait()
    return rates, capped


def guest_run(build, tmp, mib, ops, mode, interval=1.0):
    img, ctl = os.path.join(tmp, "g.raw"), os.path.join(tmp, "g.sock")
    make_image(img, mib)
    tests = "randwrite-qd1,randwrite-qd32,seqwrite"
    p = start_vm(build, "blkbench", f"ops={ops} mib={min(mib, 256)} tests={tests}", img, ctl)
    t0 = time.perf_counter()
    stop = threading.Event()
    ex = {"n": 0, "bytes": 0, "s": 0.0, "copies": 0, "waits": 0, "cap_waits": 0}

    def exporter():
        i = 0
        while not stop.is_set():
            since = f"b{i - 1}" if mode == "interval" and i else None
            try:
                n, dt, st = export_once(ctl, f"b{i}", since=since)
            except (OSError, SystemExit, harness.TestFailure):
                return  # the guest finished and the worker went away
            ex["n"] += 1
            ex["bytes"] += n
            ex["s"] += dt
            for k in ("copies", "waits", "cap_waits"):
                ex[k] += st[k]
            i += 1
            if mode == "interval":
                stop.wait(interval)

    th = None
    wait_socket(ctl)
    if mode:
        th = threading.Thread(target=exporter, daemon=True)
        th.start()
    lines = []
    for line in p.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    p.wait()
    stop.set()
    if th:
        th.join(30)
    res = {}
    for test, v in common.phases(lines, "blkbench").items():
        if "ops" in v:
            res[test] = {"iops": v["ops"] / v["host_s"], "mbs": v["bytes"] / v["host_s"] / 1e6,
                         "us": v["host_s"] / v["ops"] * 1e6}
    return res, ex


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=None)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--caps", default="", help="MB/s caps to measure, comma-separated")
    ap.add_argument("--caps-only", action="store_true", help="skip the guest runs")
    a = ap.parse_args()
    build = common.build_dir(a.build)
    caps = [float(c) for c in a.caps.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="cella-bench-export-", dir=a.dir) as tmp:
        rates, capped = throughput(build, tmp, a.mib, a.runs, caps)
        if a.caps_only:
            if a.json:
                print(json.dumps({"throughput_mbs": rates, "caps": capped}, indent=1))
                return
            print(f"full export of a {a.mib} MiB raw disk, VM paused, uncapped: median "
                  f"{common.median(rates):.0f} MB/s")
            print("| cap MB/s | achieved MB/s | achieved / cap | throttle waits |")
            print("|---|---|---|---|")
            for cap, got, thr in capped:
                print(f"| {cap:g} | {got:.1f} | {got / cap:.3f} | {thr} |")
            return
        base, _ = guest_run(build, tmp, a.mib, a.ops, None)
        inter, ex_i = guest_run(build, tmp, a.mib, a.ops, "interval", a.interval)
        during, ex = guest_run(build, tmp, a.mib, a.ops, "full")
    out = {"throughput_mbs": rates, "without": base, "interval": inter, "exports_interval": ex_i,
           "back_to_back": during, "exports_back_to_back": ex}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"full export of a {a.mib} MiB raw disk, VM paused, to a pipe: "
          f"median {common.median(rates):.0f} MB/s over {len(rates)} runs "
          f"({', '.join(f'{r:.0f}' for r in rates)})")
    print()
    print(f"| guest test | no export | incremental every {a.interval:g} s | change "
          "| full exports back to back | change |")
    print("|---|---|---|---|---|---|")
    for t in ("randwrite-qd1", "randwrite-qd32", "seqwrite"):
        if t not in base or t not in during or t not in inter:
            continue
        unit, key = ("MB/s", "mbs") if t == "seqwrite" else ("IOPS", "iops")
        b = base[t][key]
        row = f"| {t} | {b:.0f} {unit}"
        for r in (inter, during):
            d = r[t][key]
            us = f" ({r[t]['us']:.0f} us/req)" if t == "randwrite-qd1" else ""
            row += f" | {d:.0f} {unit}{us} | {100 * (d / b - 1):+.0f} %"
        if t == "randwrite-qd1":
            row = row.replace(f"{b:.0f} {unit}", f"{b:.0f} {unit} ({base[t]['us']:.0f} us/req)", 1)
        print(row + " |")
    for name, e in (("incremental", ex_i), ("back to back", ex)):
        if e["n"]:
            print(f"\n{name}: {e['n']} exports, {e['bytes'] / 1e6:.0f} MB sent at "
                  f"{e['bytes'] / e['s'] / 1e6:.0f} MB/s while exporting, {e['copies']} blocks "
                  f"copied before a write, {e['waits']} requests waited "
                  f"({e['cap_waits']} at the cap)")


if __name__ == "__main__":
    main()
