#!/usr/bin/env python3
"""disk.py: the disk library's request path, raw against qcow2, and QEMU's
(qemu-img bench) on the same files. Each request is resolved with disk_map
and its data moved with pread/pwrite on the returned fd, as cella-vm's I/O
thread does (through io_uring there); the page cache serves the data, so the
figures isolate the per-request cost of the format.

Reproduce: python3 bench/disk.py [--build build] [--count 200000]

With --convert: `cella disk convert` against `qemu-img convert` on a 1 GiB
image holding 512 MiB of random data (1 MiB data, 1 MiB hole), qcow2 to raw
and raw to qcow2, median of --reps (5) alternating runs; outputs compared.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

import common


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def ours(io, img, op, bs, count, reps):
    rates, maps = [], []
    for _ in range(reps):
        out = run([io, img, 'bench', op, str(bs), str(count)])
        m = re.search(r'([\d.]+) req/s .* map (\d+) ns/req', out)
        rates.append(float(m.group(1)))
        maps.append(int(m.group(2)))
    return statistics.median(rates), statistics.median(maps)


def qemu(fmt, img, op, bs, count, reps):
    if not shutil.which('qemu-img'):
        return None
    rates = []
    for _ in range(reps):
        out = run(['qemu-img', 'bench', '-f', fmt, '-c', str(count), '-d', '1', '-s', str(bs)]
                  + (['-w'] if op == 'write' else []) + [img])
        secs = float(re.search(r'completed in ([\d.]+) seconds', out).group(1))
        rates.append(count / secs)
    return statistics.median(rates)


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - t


def convert_bench(cella, reps):
    d = tempfile.mkdtemp(prefix='cella-convert-bench-')
    try:
        raw, q2 = os.path.join(d, 'src.raw'), os.path.join(d, 'src.qcow2')
        with open(raw, 'wb') as f:
            f.truncate(1 << 30)
            for i in range(0, 1024, 2):
                f.seek(i << 20)
                f.write(os.urandom(1 << 20))
        run(['qemu-img', 'convert', '-O', 'qcow2', raw, q2])
        print(f'{"convert, 1 GiB (512 MiB data)":32} {"cella s":>8} {"qemu-img s":>10} '
              f'{"cella/qemu-img":>14}')
        for name, src, fmt in (('qcow2 -> raw', q2, 'raw'), ('raw -> qcow2', raw, 'qcow2')):
            ours_t, theirs_t = [], []
            a_out, b_out = os.path.join(d, 'a.' + fmt), os.path.join(d, 'b.' + fmt)
            for _ in range(reps):
                for out in (a_out, b_out):
                    if os.path.exists(out):
                        os.unlink(out)
                ours_t.append(timed([cella, 'disk', 'convert', '-O', fmt, src, a_out]))
                theirs_t.append(timed(['qemu-img', 'convert', '-O', fmt, src, b_out]))
            run(['qemu-img', 'compare', a_out, b_out])
            o, t = statistics.median(ours_t), statistics.median(theirs_t)
            print(f'{name:32} {o:8.3f} {t:10.3f} {o / t:14.2f}')
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--build', default=None)
    p.add_argument('--count', type=int, default=200000)
    p.add_argument('--reps', type=int, default=3)
    p.add_argument('--convert', action='store_true')
    a = p.parse_args()
    build = common.build_dir(a.build)
    cella = os.path.join(build, 'cli', 'cella')
    if a.convert:
        convert_bench(cella, max(a.reps, 5))
        return
    io = os.path.join(build, 'tests', 'disk', 'disk-io')
    d = tempfile.mkdtemp(prefix='cella-disk-bench-')
    try:
        raw, q2 = os.path.join(d, 'a.raw'), os.path.join(d, 'a.qcow2')
        run([cella, 'disk', 'create', '-f', 'raw', raw, '1G'])
        run([cella, 'disk', 'create', q2, '1G'])
        # allocate everything first (the qcow2 write row below is then the
        # allocated-cluster path; first-write allocation is measured apart)
        alloc = ours(io, q2, 'write', 65536, 16384, 1)
        ours(io, raw, 'write', 65536, 16384, 1)
        rows = []
        for op in ('read', 'write'):
            r_raw, m_raw = ours(io, raw, op, 4096, a.count, a.reps)
            r_q2, m_q2 = ours(io, q2, op, 4096, a.count, a.reps)
            qr = qemu('raw', raw, op, 4096, a.count // 2, a.reps)
            qq = qemu('qcow2', q2, op, 4096, a.count // 2, a.reps)
            rows.append((op, r_raw, r_q2, m_raw, m_q2, qr, qq))
        print(f'{"4 KiB sequential":18} {"raw req/s":>10} {"qcow2 req/s":>12} {"qcow2/raw":>9} '
              f'{"map ns raw":>10} {"map ns qcow2":>12} {"QEMU raw":>9} {"QEMU qcow2":>10} '
              f'{"ours/QEMU qcow2":>15}')
        for op, r_raw, r_q2, m_raw, m_q2, qr, qq in rows:
            print(f'{op:18} {r_raw:10.0f} {r_q2:12.0f} {r_q2 / r_raw:9.2f} {m_raw:10d} {m_q2:12d} '
                  f'{qr or 0:9.0f} {qq or 0:10.0f} {(r_q2 / qq) if qq else 0:15.2f}')
        print(f'first write of 64 KiB clusters (allocation): {alloc[0]:.0f} req/s, '
              f'map {alloc[1]} ns/req')
        print('(QEMU: qemu-img bench -d 1, same files; ours: disk-io bench, one request at a time)')
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
