#!/usr/bin/env python3
"""blk.py: virtio-blk throughput from the test guest (blkbench) under
cella-vm and QEMU microvm on the same images, against the host's own figure
(fio, io_uring, buffered like both VMMs) on the raw file.

Images: raw (fully written), qcow2 fully allocated (converted from the raw
one), qcow2 thin (created empty for every run; the tests then run in the
order below, so seqwrite allocates the first MiBs and random I/O partly hits
unallocated clusters). Tests: 4 KiB random read and write at queue depth 1
and 32, 1 MiB sequential write and read.
Then the storage QoS table: measured IOPS / bandwidth under cella-vm against
the configured limit (disk options iops=, bps=, default bursts: 100 ms worth
of the rate, which the first 100 ms of each run may use at once; runs last
about 4 s, so that adds at most 2.5 %).

Usage: bench/blk.py [--build DIR] [--runs R] [--mib M] [--ops N] [--dir D]
                    [--no-qos] [--only-qos] [--nice N]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import common

TESTS = ("randread-qd1", "randread-qd32", "randwrite-qd1", "randwrite-qd32", "seqwrite",
         "seqread")
IMAGES = ("raw", "qcow2", "qcow2-thin")


def blkbench(vmm, build, img, fmt, ops, mib, tests=TESTS, disk_opts=""):
    cmd = common.harness.build_command(vmm, os.path.join(build, "cella-vm"),
                                       common.guest(build, "blkbench"),
                                       f"ops={ops} mib={mib} tests={','.join(tests)}",
                                       disks=[img + disk_opts])
    if vmm == "qemu":
        cmd = [a.replace("format=raw", f"format={fmt}") for a in cmd]
    lines, status = common.run_timed(cmd)
    if status != 1:
        raise SystemExit(f"blkbench under {vmm} on {img}: exit status {status}")
    res = {}
    for test, v in common.phases(lines, "blkbench").items():
        if "ops" in v:
            res[test] = {"iops": v["ops"] / v["host_s"], "mbs": v["bytes"] / v["host_s"] / 1e6}
    return res


def fio(img, test, ops, mib):
    rw, bs, qd = {"randread-qd1": ("randread", "4k", 1), "randread-qd32": ("randread", "4k", 32),
                  "randwrite-qd1": ("randwrite", "4k", 1),
                  "randwrite-qd32": ("randwrite", "4k", 32),
                  "seqwrite": ("write", "1m", 1), "seqread": ("read", "1m", 1)}[test]
    size = f"{mib}m" if bs == "1m" else None
    cmd = ["fio", "--name=b", f"--filename={img}", "--ioengine=io_uring", f"--rw={rw}",
           f"--bs={bs}", f"--iodepth={qd}", "--direct=0", "--output-format=json",
           # Both VMMs go through the page cache: so does the host figure (fio
           # drops the cache before a job by default).
           "--invalidate=0"]
    cmd += [f"--size={size}"] if size else [f"--number_ios={ops}"]
    if "write" in rw:
        cmd += ["--end_fsync=0"]
    out = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    job = out["jobs"][0]["read" if "read" in rw else "write"]
    return {"iops": job["iops"], "mbs": job["bw_bytes"] / 1e6}


def make_images(d):
    raw = os.path.join(d, "bench.img")
    # A fully written image: reads of holes would measure nothing.
    with open(raw, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    full = os.path.join(d, "bench.qcow2")
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, full], check=True)
    return {"raw": raw, "qcow2": full}


def thin_image(d):
    thin = os.path.join(d, "thin.qcow2")
    if os.path.exists(thin):
        os.unlink(thin)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", thin, "256M"], check=True)
    return thin


def throughput(a, build, d):
    imgs = make_images(d)
    res = {}
    for _ in range(a.runs):
        for kind in IMAGES:
            for vmm in ("cella", "qemu"):
                img = imgs.get(kind) or thin_image(d)
                fmt = "raw" if kind == "raw" else "qcow2"
                for t, v in blkbench(vmm, build, img, fmt, a.ops, a.mib).items():
                    res.setdefault((vmm, kind, t), []).append(v)
        if shutil.which("fio"):
            for t in TESTS:
                res.setdefault(("host", "raw", t), []).append(fio(imgs["raw"], t, a.ops, a.mib))

    def med(who, kind, t, key):
        xs = [r[key] for r in res.get((who, kind, t), [])]
        return common.median(xs) if xs else None

    print(f"virtio-blk from the test guest, median of {a.runs} runs ({a.ops} random ops, "
          f"{a.mib} MiB sequential; host-timed)\n")
    print("| test | image | cella-vm | QEMU microvm | host fio (raw file) | cella / QEMU | "
          "cella qcow2 / cella raw |")
    print("|---|---|---|---|---|---|---|")
    for t in TESTS:
        key, unit = ("iops", "IOPS") if t.startswith("rand") else ("mbs", "MB/s")
        for kind in IMAGES:
            c, q = med("cella", kind, t, key), med("qemu", kind, t, key)
            h = med("host", "raw", t, key) if kind == "raw" else None
            r = med("cella", "raw", t, key)
            fmt = lambda x: f"{x:,.0f} {unit}" if x else ""
            print(f"| {t} | {kind} | {fmt(c)} | {fmt(q)} | {fmt(h)} | "
                  + (f"{c / q:.2f}" if c and q else "n/a") + " | "
                  + (f"{c / r:.2f}" if c and r and kind != "raw" else "") + " |")


def qos(a, build, d):
    img = os.path.join(d, "qos.img")
    with open(img, "wb") as f:  # sparse: reads go through the page cache all the same
        f.truncate(512 << 20)
    print("\nstorage QoS under cella-vm: measured vs configured (raw image, host-timed)\n")
    print("| limit | test | configured | measured | measured / configured |")
    print("|---|---|---|---|---|")
    for iops in (500, 2000, 5000):
        ops = iops * 4  # about 4 s
        r = blkbench("cella", build, img, "raw", ops, 16, tests=("randread-qd32",),
                     disk_opts=f",iops={iops}")["randread-qd32"]
        print(f"| iops={iops} | 4 KiB randread QD32 | {iops:,} IOPS | {r['iops']:,.0f} IOPS | "
              f"{r['iops'] / iops:.3f} |")
    for iops in (1000,):
        # 1 MiB requests count 128 normalized operations: 7.8 requests/s, 4 s
        r = blkbench("cella", build, img, "raw", 400, 32, tests=("seqread",),
                     disk_opts=f",iops={iops}")["seqread"]
        want = iops * 8192 / 1e6
        print(f"| iops={iops} (8 KiB-normalized) | 1 MiB seqread | {want:,.1f} MB/s | "
              f"{r['mbs']:,.1f} MB/s | {r['mbs'] / want:.3f} |")
    for mbs in (20, 50):
        bps = mbs * 1000000
        r = blkbench("cella", build, img, "raw", 400, mbs * 4, tests=("seqread",),
                     disk_opts=f",bps={bps}")["seqread"]  # about 4 s
        print(f"| bps={bps} | 1 MiB seqread | {mbs} MB/s | {r['mbs']:,.1f} MB/s | "
              f"{r['mbs'] / mbs:.3f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ops", type=int, default=4000)
    ap.add_argument("--mib", type=int, default=128)
    ap.add_argument("--dir", default=None, help="where to put the images (default: /var/tmp)")
    ap.add_argument("--no-qos", action="store_true")
    ap.add_argument("--only-qos", action="store_true")
    ap.add_argument("--nice", type=int, default=-15,
                    help="niceness for this script and what it runs (root only; default "
                         "-15: on a shared host, other users' jobs add run-to-run noise of "
                         "several times otherwise)")
    a = ap.parse_args()
    build = common.build_dir(a.build)
    if os.geteuid() == 0 and a.nice:
        os.nice(a.nice)  # both VMMs and fio inherit it
    with tempfile.TemporaryDirectory(dir=a.dir or "/var/tmp") as d:
        if not a.only_qos:
            throughput(a, build, d)
        if not a.no_qos:
            qos(a, build, d)
    print(f"\nreproduce: bench/blk.py --build {build} --runs {a.runs} --ops {a.ops} "
          f"--mib {a.mib}")


if __name__ == "__main__":
    main()
