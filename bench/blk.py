#!/usr/bin/env python3
"""blk.py: virtio-blk throughput from the test guest (blkbench) under
cella-vm and QEMU microvm on the same raw image, against the host's own
figure for the same file (fio, io_uring, buffered like both VMMs).

4 KiB random reads at queue depth 1 and 32, 1 MiB sequential write and read.
Usage: bench/blk.py [--build DIR] [--runs R] [--mib M] [--ops N] [--dir D]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import common

TESTS = ("randread-qd1", "randread-qd32", "seqwrite", "seqread")


def blkbench(vmm, build, img, ops, mib):
    cmd = common.harness.build_command(vmm, os.path.join(build, "cella-vm"),
                                       common.guest(build, "blkbench"),
                                       f"ops={ops} mib={mib}", disks=[img])
    lines, status = common.run_timed(cmd)
    if status != 1:
        raise SystemExit(f"blkbench under {vmm}: exit status {status}")
    res = {}
    for test, v in common.phases(lines, "blkbench").items():
        if "ops" in v:
            res[test] = {"iops": v["ops"] / v["host_s"], "mbs": v["bytes"] / v["host_s"] / 1e6}
    return res


def fio(img, test, ops, mib):
    rw, bs, qd = {"randread-qd1": ("randread", "4k", 1), "randread-qd32": ("randread", "4k", 32),
                  "seqwrite": ("write", "1m", 1), "seqread": ("read", "1m", 1)}[test]
    size = f"{mib}m" if bs == "1m" else None
    cmd = ["fio", "--name=b", f"--filename={img}", "--ioengine=io_uring", f"--rw={rw}",
           f"--bs={bs}", f"--iodepth={qd}", "--direct=0", "--output-format=json",
           # Both VMMs read through the page cache: so does the host figure (fio
           # drops the cache before a job by default).
           "--invalidate=0"]
    cmd += [f"--size={size}"] if size else [f"--number_ios={ops}"]
    if rw == "write":
        cmd += ["--end_fsync=0"]
    out = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    job = out["jobs"][0]["read" if "read" in rw else "write"]
    return {"iops": job["iops"], "mbs": job["bw_bytes"] / 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ops", type=int, default=4000)
    ap.add_argument("--mib", type=int, default=128)
    ap.add_argument("--dir", default=None, help="where to put the 256 MiB image (default: /var/tmp)")
    a = ap.parse_args()
    build = common.build_dir(a.build)
    res = {}
    with tempfile.TemporaryDirectory(dir=a.dir or "/var/tmp") as d:
        img = os.path.join(d, "bench.img")
        # A fully written image: reads of holes would measure nothing.
        with open(img, "wb") as f:
            for _ in range(256):
                f.write(os.urandom(1 << 20))
        for _ in range(a.runs):
            for vmm in ("cella", "qemu"):
                for t, v in blkbench(vmm, build, img, a.ops, a.mib).items():
                    res.setdefault((vmm, t), []).append(v)
            if shutil.which("fio"):
                for t in TESTS:
                    res.setdefault(("host", t), []).append(fio(img, t, a.ops, a.mib))

    def med(who, t, key):
        xs = [r[key] for r in res.get((who, t), [])]
        return common.median(xs) if xs else None

    print(f"virtio-blk from the test guest, raw image, median of {a.runs} runs "
          f"({a.ops} random ops, {a.mib} MiB sequential; host-timed)\n")
    print("| test | cella-vm | QEMU microvm | host (fio, io_uring) | cella / QEMU | cella / host |")
    print("|---|---|---|---|---|---|")
    for t in TESTS:
        key, unit = ("iops", "IOPS") if t.startswith("rand") else ("mbs", "MB/s")
        c, q, h = med("cella", t, key), med("qemu", t, key), med("host", t, key)
        fmt = lambda x: f"{x:,.0f} {unit}" if x else "n/a"
        print(f"| {t} | {fmt(c)} | {fmt(q)} | {fmt(h)} | "
              + (f"{c / q:.2f}" if c and q else "n/a") + " | "
              + (f"{c / h:.2f}" if c and h else "n/a") + " |")


if __name__ == "__main__":
    main()
