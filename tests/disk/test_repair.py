#!/usr/bin/env python3
"""Issue 12: damaged images and what `cella disk check -r` does with them,
qemu-img's verdict on the same image recorded beside cella's: repairs keep
every guest byte (`qemu-img compare` against the undamaged image), a cluster
reachable in two roles is never written, persistent bitmaps are counted and
kept, sizes are never cut, and exit statuses match qemu-img check."""
import os
import shutil
import stat
import struct
import subprocess

import diskutil as du

a = du.args()
du.need_qemu()
env = du.Env(a.cella)
MiB = 1 << 20


def hdr(p):
    with open(p, 'rb') as f:
        h = f.read(112)
    return {'l1': struct.unpack('>Q', h[40:48])[0], 'rt': struct.unpack('>Q', h[48:56])[0]}


def r64(p, off):
    with open(p, 'rb') as f:
        f.seek(off)
        return struct.unpack('>Q', f.read(8))[0]


def w64(p, off, v):
    with open(p, 'r+b') as f:
        f.seek(off)
        f.write(struct.pack('>Q', v))


def qcheck(p, *extra):
    return du.run('qemu-img', 'check', *extra, p, check=False)


def same(a_, b_):
    return du.run('qemu-img', 'compare', a_, b_, check=False).returncode == 0


def base(name):
    """16 MiB qcow2 made by qemu-img, 4 MiB of data; and its raw content."""
    p = env.path(name + '.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', p, '16M')
    env.qio(p, 'write -P 0x5a 0 3M', 'write -P 0x33 8M 1M')
    return p, env.qemu_raw(p, name + '.raw')


def damaged(name, damage):
    """The same damage on two copies: one for qemu-img, one for cella."""
    p, raw = base(name)
    h = hdr(p)
    damage(p, h)
    q = env.path(name + '-qemu.qcow2')
    shutil.copy(p, q)
    return p, q, raw


def repair_keeps_data(name, damage):
    img, qimg, raw = damaged(name, damage)
    assert qcheck(qimg).returncode == 2
    rq = qcheck(qimg, '-r', 'all')
    r0 = env.disk('check', img, check=False)
    assert r0.returncode == 2, f'cella check before repair: {r0.returncode}\n{r0.stdout}'
    r = env.disk('check', '-r', 'all', img, check=False)
    print(f'  {name}: qemu-img check -r all exit {rq.returncode}, compare '
          f'{same(raw, qimg)}; cella check -r all exit {r.returncode}, compare '
          f'{same(raw, img)}')
    assert r.returncode == 0, r.stdout + r.stderr
    env.qemu_check_clean(img)
    env.compare(raw, img)
    return img, raw


def refblock_over_l1():
    # Refcount table entry 0 points at the L1 table's cluster.
    repair_keeps_data('rb-l1', lambda p, h: w64(p, h['rt'], h['l1']))


def refblock_over_data():
    # Refcount table entry 0 points at a cluster holding guest data; before
    # any repair, a commit into that image must not write refcounts over it.
    def dmg(p, h):
        l2 = r64(p, h['l1']) & 0x00fffffffffffe00
        w64(p, h['rt'], r64(p, l2) & 0x00fffffffffffe00)
    img, qimg, raw = damaged('rb-data', dmg)
    top = env.path('rb-data-top.qcow2')
    env.disk('create', '--backing', os.path.basename(img), '--backing-format', 'qcow2', top)
    du.run(a.disk_io, top, 'write', str(12 * MiB), str(MiB), '7')
    r = env.disk('commit', top, check=False)
    assert r.returncode == 1 and 'overlap' in r.stderr, f'{r.returncode} {r.stderr}'
    env.compare(raw, img)
    img2, raw2 = repair_keeps_data('rb-data2', dmg)
    top2 = env.path('rb-data2-top.qcow2')
    env.disk('create', '--backing', os.path.basename(img2), '--backing-format', 'qcow2', top2)
    du.run(a.disk_io, top2, 'write', str(12 * MiB), str(MiB), '7')
    env.disk('commit', top2)
    env.qemu_check_clean(img2)
    data = env.qemu_raw(img2, 'rb-data2-after.raw')
    with open(raw2, 'rb') as f, open(data, 'rb') as g:
        x, y = f.read(), g.read()
    assert x[:12 * MiB] == y[:12 * MiB] and y[12 * MiB:13 * MiB] == bytes([7]) * MiB


def l1_over_reftable():
    # An L1 entry points at the refcount table's cluster: the guest data of
    # that range is gone whatever repairs it; cella must end where qemu-img
    # ends (same content, clean check), not report a clean image over it.
    img, qimg, raw = damaged('l1-rt', lambda p, h: w64(p, h['l1'], h['rt'] | (1 << 63)))
    assert qcheck(qimg).returncode == 2
    r0 = env.disk('check', img, check=False)
    assert r0.returncode == 2 and 'refcount table' in r0.stdout, r0.stdout
    rq = qcheck(qimg, '-r', 'all')
    r = env.disk('check', '-r', 'all', img, check=False)
    print(f'  l1-rt: qemu-img -r all exit {rq.returncode}, cella exit {r.returncode}')
    assert r.returncode == rq.returncode == 0, r.stdout
    env.qemu_check_clean(img)
    env.compare(qimg, img)


def l2_over_l1():
    # An L1 entry points at the L1 table itself: no repair can tell which
    # role is right; cella reports it, changes nothing and refuses writes.
    img, qimg, raw = damaged('l2-l1', lambda p, h: w64(p, h['l1'], h['l1'] | (1 << 63)))
    before = open(img, 'rb').read()
    rq = qcheck(qimg)
    r = env.disk('check', '-r', 'all', img, check=False)
    print(f'  l2-l1: qemu-img check exit {rq.returncode}, cella -r all exit {r.returncode}')
    assert r.returncode == 2 and 'used both as' in r.stdout, r.stdout
    assert open(img, 'rb').read() == before
    r = du.run(a.disk_io, img, 'write', '0', '512', '1', check=False)
    assert r.returncode != 0 and 'overlap' in r.stderr, r.stderr


def odd_sizes():
    for n in (1000, 64 * MiB + 57):
        src = env.path(f'odd{n}.raw')
        with open(src, 'wb') as f:
            f.write(os.urandom(4096)[:min(n, 4096)])
            f.truncate(n)
            f.seek(n - 57)
            f.write(b'\x55' * 57)
        dst = env.path(f'odd{n}.qcow2')
        qdst = env.path(f'odd{n}-qemu.qcow2')
        du.run('qemu-img', 'convert', '-O', 'qcow2', src, qdst)
        env.disk('convert', '-O', 'qcow2', src, dst)
        env.compare(src, dst)
        back = env.qemu_raw(dst, f'odd{n}-back.raw')
        assert open(back, 'rb').read()[:n] == open(src, 'rb').read()
        vs = lambda p: int(du.run('qemu-img', 'info', '--output=json', p).stdout
                           .split('"virtual-size":')[1].split(',')[0])
        assert vs(dst) == vs(qdst) == (n + 511) // 512 * 512, (vs(dst), vs(qdst))
    p = env.path('c1000.qcow2')
    env.disk('create', '-f', 'qcow2', p, '1000')
    info = du.run('qemu-img', 'info', p).stdout
    assert '1024 bytes' in info, info


def bitmaps():
    p = env.path('bm.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', p, '16M')
    du.run('qemu-img', 'bitmap', '--add', p, 'bm0')
    env.qio(p, 'write -P 1 0 1M', 'write -P 2 9M 64k')
    assert qcheck(p).returncode == 0
    r = env.disk('check', p, check=False)
    assert r.returncode == 0, r.stdout
    r = env.disk('check', '-r', 'leaks', p, check=False)
    assert r.returncode == 0, r.stdout
    r = env.disk('check', '-r', 'all', p, check=False)
    assert r.returncode == 0, r.stdout
    info = du.run('qemu-img', 'info', '--output=json', p).stdout
    assert '"bm0"' in info, info
    assert qcheck(p).returncode == 0
    # A writer that does not update them refuses instead of dropping them.
    r = du.run(a.disk_io, p, 'write', '0', '512', '1', check=False)
    assert r.returncode != 0 and 'bitmap' in r.stderr, r.stderr
    assert '"bm0"' in du.run('qemu-img', 'info', '--output=json', p).stdout


def shrink_and_zero_size():
    for fmt in ('raw', 'qcow2'):
        p = env.path(f'shrink.{fmt}')
        env.disk('create', '-f', fmt, p, '8M')
        du.run(a.disk_io, p, 'write', str(5 * MiB), str(MiB + 4096), '9')
        ref = env.path(f'shrink-ref.{fmt}')
        shutil.copy(p, ref)
        r = env.disk('resize', p, '4M', '--shrink', check=False)
        assert r.returncode == 1 and 'bytes are allocated beyond the new end' in r.stderr, \
            r.stderr
        env.compare(ref, p)
        env.disk('resize', p, '7M', '--shrink')  # beyond the data: fine
        r = env.disk('resize', p, '6M', '--shrink', check=False)  # cuts 4 KiB of data
        assert r.returncode == 1 and 'allocated beyond' in r.stderr, r.stderr
        env.disk('resize', p, '5M', '--shrink', '--force')
        if fmt == 'qcow2':
            env.qemu_check_clean(p)
        env.disk('resize', p, '8M')
        back = env.qemu_raw(p, f'shrink-back-{fmt}.raw')
        assert open(back, 'rb').read() == bytes(8 * MiB)  # the cut part does not reappear
        z = env.path(f'zero.{fmt}')
        env.disk('create', '-f', fmt, z, '0')
        assert '"virtual-size": 0' in du.run('qemu-img', 'info', '--output=json', z).stdout


def fifo():
    f = env.path('fifo')
    os.mkfifo(f)
    for argv in (('info', f), ('check', f), ('convert', '-O', 'raw', f, env.path('x.raw')),
                 ('resize', f, '1M'), ('create', '--force', '-f', 'raw', f, '1M'),
                 ('create', '--force', f, '1M'), ('convert', '-O', 'qcow2', env.path('c1000.qcow2'), f)):
        try:
            r = du.run(a.cella, 'disk', *argv, check=False, timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f'cella disk {" ".join(argv)} blocked on a FIFO')
        assert r.returncode == 1, f'{argv}: {r.returncode} {r.stderr}'
    assert stat.S_ISFIFO(os.stat(f).st_mode)


def exit_statuses():
    # qemu-img check's exit status on the same damage, cella's beside it.
    cases = {
        'l1-past-end': (40, '>Q', 1 << 40),
        'l1-entry-past-end': ('l1', '>Q', (1 << 40) | (1 << 63)),
        'l1-entry-unaligned': ('l1', '>Q', (0x40000 + 512) | (1 << 63)),
        'rt-offset-0': (48, '>Q', 0),
        'rt-past-end': (48, '>Q', 1 << 40),
        'rt-entry-past-end': ('rt', '>Q', 1 << 40),
        'rt-own-cluster-free': ('rb2', '>H', 0),
    }
    for name, (where, fmt, v) in cases.items():
        p, raw = base('st-' + name)
        h = hdr(p)
        off = {'l1': h['l1'], 'rt': h['rt'], 'rb2': r64(p, h['rt']) + 2}.get(where, where)
        with open(p, 'r+b') as f:
            f.seek(off)
            f.write(struct.pack(fmt, v))
        q = env.path(f'st-{name}-qemu.qcow2')
        shutil.copy(p, q)
        verdict = []
        for args in ((), ('-r', 'all')):
            rq = qcheck(q, *args)
            rc = env.disk('check', *args, p, check=False)
            verdict.append((rq.returncode, rc.returncode))
            assert rc.returncode == rq.returncode, f'{name} {args}: qemu-img {rq.returncode}, ' \
                f'cella {rc.returncode}\n{rc.stdout}{rc.stderr}'
        print(f'  {name}: (qemu-img, cella) check {verdict[0]}, -r all {verdict[1]}')
        if verdict[1][0] == 0:  # repaired: same content as qemu-img's repair
            env.qemu_check_clean(p)
            env.compare(raw, p)
    r = env.disk('check', env.path('shrink.raw'), check=False)
    rq = qcheck(env.path('shrink.raw'))
    assert r.returncode == rq.returncode == 63, (r.returncode, rq.returncode)


env.case('1: refcount block over the L1 table: rebuilt, data kept', refblock_over_l1)
env.case('2: refcount block over guest data: commit refused, rebuilt', refblock_over_data)
env.case('2: L1 entry over the refcount table: as qemu-img repairs it', l1_over_reftable)
env.case('2: L2 table over the L1 table: reported, nothing written', l2_over_l1)
env.case('3: sizes not a multiple of 512 round up', odd_sizes)
env.case('4: persistent dirty bitmaps are counted and kept', bitmaps)
env.case('7: shrink over data needs --force; size 0', shrink_and_zero_size)
env.case('6: a FIFO given as an image does not block', fifo)
env.case('5: exit statuses and repairs as qemu-img check', exit_statuses)
env.finish()
