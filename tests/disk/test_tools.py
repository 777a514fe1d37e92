#!/usr/bin/env python3
"""Images cella writes (random writes, discards, zeroes, chains, commit,
rebase, resize, convert, repair) must pass `qemu-img check` with no errors and
no leaks, and hold exactly the expected content (`qemu-img compare` against
a raw reference written with the same operations)."""
import fcntl
import json
import os
import random
import struct

import diskutil as du

a = du.args()
du.need_qemu()
env = du.Env(a.cella)
SIZE = 8 << 20


def io(img, *cmds):
    return du.run(a.disk_io, img, *[str(c) for c in cmds])


def ops(seed, n, size=SIZE):
    """A random mix of writes, zeroes and discards as disk-io arguments."""
    rng = random.Random(seed)
    out = []
    for off, ln, b in du.random_writes(rng, size, n, 300000):
        kind = rng.random()
        if kind < 0.7:
            out += ['write', off, ln, b]
        elif kind < 0.85:
            out += ['zero', off, ln]
        else:
            out += ['discard', off, ln]
    return out


def new(name, *extra, size=SIZE):
    p = env.path(name)
    env.disk('create', *extra, p, str(size))
    return p


def random_io():
    for seed, cs in enumerate(('512', '4K', '64K', '2M')):
        img = new(f'rw{cs}.qcow2', '--cluster-size', cs)
        ref = new(f'rw{cs}.raw', '-f', 'raw')
        for rnd in range(3):  # several sessions: frees are reused after flushes
            o = ops(seed * 10 + rnd, 60)
            io(img, *o)
            io(ref, *o)
        env.qemu_check_clean(img)
        env.compare(img, ref)
        r = env.disk('check', img, check=False)
        assert r.returncode == 0, r.stdout


def chain_commit_rebase():
    base = new('base.qcow2')
    ref = new('chain.raw', '-f', 'raw')
    imgs = [base]
    for i in range(1, 4):
        p = env.path(f'c{i}.qcow2')
        env.disk('create', '--backing', os.path.basename(imgs[-1]), p)
        imgs.append(p)
    for i, img in enumerate(imgs):
        o = ops(100 + i, 15)
        io(img, *o)
        io(ref, *o)
        env.qemu_check_clean(img)
    top = imgs[-1]
    env.compare(top, ref)
    info = json.loads(env.disk('info', '--json', top).stdout)
    assert info['chain-depth'] == 4 and info['backing-filename'] == 'c2.qcow2', info
    # safe rebase of the top onto the base: same content
    env.disk('rebase', '-b', 'base.qcow2', top)
    env.qemu_check_clean(top)
    env.compare(top, ref)
    out = du.run('qemu-img', 'info', '--output=json', top).stdout
    assert json.loads(out)['backing-filename'] == 'base.qcow2', out
    # commit into the base: the base alone then holds everything
    env.disk('commit', top)
    env.qemu_check_clean(base)
    env.compare(base, ref)
    # rebase onto nothing: a standalone image with the same content
    env.disk('rebase', '-b', '', top)
    env.qemu_check_clean(top)
    env.compare(top, ref)
    # unsafe rebase only rewrites the header
    env.disk('rebase', '-u', '-b', 'c1.qcow2', top)
    out = json.loads(du.run('qemu-img', 'info', '--output=json', top).stdout)
    assert out['backing-filename'] == 'c1.qcow2', out


def resize():
    img = new('grow.qcow2', '--cluster-size', '512', size=1 << 20)
    io(img, 'write', 0, 4096, 5)
    env.disk('resize', img, '+63M')
    io(img, 'write', (64 << 20) - 8192, 8192, 6, 'verify', 0, 4096, 5)
    env.qemu_check_clean(img)
    assert json.loads(env.disk('info', '--json', img).stdout)['virtual-size'] == 64 << 20
    r = env.disk('resize', img, '1M', check=False)
    assert r.returncode == 2, 'shrinking without --shrink must be refused'
    r = env.disk('resize', '--shrink', img, '1M', check=False)
    assert r.returncode == 1 and '8192 bytes are allocated beyond' in r.stderr, r.stderr
    io(img, 'discard', (64 << 20) - 8192, 8192)
    env.disk('resize', '--shrink', img, '1M')
    env.qemu_check_clean(img)
    raw = new('grow.raw', '-f', 'raw', size=1 << 20)
    env.disk('resize', raw, '2M')
    assert os.path.getsize(raw) == 2 << 20


def refcount_growth():
    # 512-byte clusters: a refcount block covers 128 KiB, the first
    # refcount table 64 blocks; 16 MiB of data forces table growth
    img = new('many.qcow2', '--cluster-size', '512', size=32 << 20)
    ref = new('many.raw', '-f', 'raw', size=32 << 20)
    o = []
    for i in range(64):
        o += ['write', i * (256 << 10), 256 << 10, i + 1]
    io(img, *o)
    io(ref, *o)
    env.qemu_check_clean(img)
    env.compare(img, ref)


def convert():
    base = new('cv-base.qcow2')
    io(base, 'write', 0, 1 << 20, 1)
    top = env.path('cv-top.qcow2')
    env.disk('create', '--backing', 'cv-base.qcow2', top)
    io(top, 'write', 4 << 20, 1 << 20, 2, 'zero', 0, 65536)
    flat = env.path('cv-flat.qcow2')
    env.disk('convert', '-O', 'qcow2', top, flat)
    env.qemu_check_clean(flat)
    env.compare(top, flat)
    info = json.loads(env.disk('info', '--json', flat).stdout)
    assert 'backing-filename' not in info
    # zero ranges stay unallocated: 1 MiB - 64 KiB + 1 MiB of data
    assert info['allocated'] == (2 << 20) - 65536, info
    raw = env.path('cv.raw')
    env.disk('convert', '-O', 'raw', top, raw)
    env.compare(top, raw)
    assert os.stat(raw).st_blocks * 512 < (3 << 20), 'raw output must stay sparse'


def check_and_repair():
    img = new('leak.qcow2', '--cluster-size', '4K')
    io(img, 'write', 0, 65536, 3)
    # drop one L2 reference by hand: its cluster leaks
    with open(img, 'r+b') as f:
        hdr = f.read(104)
        l1_off = struct.unpack('>Q', hdr[40:48])[0]
        f.seek(l1_off)
        l2_off = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2_off + 8)
        f.write(b'\0' * 8)
    r = env.disk('check', img, check=False)
    assert r.returncode == 3 and 'leaked' in r.stdout, (r.returncode, r.stdout)
    j = json.loads(env.disk('check', '--json', img, check=False).stdout)
    assert j['leaks'] == 1 and j['corruptions'] == 0, j
    env.disk('check', '-r', 'leaks', img)
    env.qemu_check_clean(img)
    # a referenced cluster with refcount 0: a corruption
    img2 = new('corrupt.qcow2', '--cluster-size', '4K')
    io(img2, 'write', 0, 4096, 3)
    with open(img2, 'r+b') as f:
        hdr = f.read(104)
        l1_off = struct.unpack('>Q', hdr[40:48])[0]
        rt_off = struct.unpack('>Q', hdr[48:56])[0]
        f.seek(l1_off)
        l2_off = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2_off)
        data = (struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00) // 4096
        f.seek(rt_off)
        rb = struct.unpack('>Q', f.read(8))[0]
        f.seek(rb + 2 * data)
        f.write(b'\0\0')
    r = env.disk('check', img2, check=False)
    assert r.returncode == 2, (r.returncode, r.stdout)
    env.disk('check', '-r', 'all', img2)
    env.qemu_check_clean(img2)


def in_use():
    img = new('busy.qcow2')
    with open(img, 'rb') as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running VM holds
        r = env.disk('resize', img, '+1M', check=False)
        assert r.returncode == 1 and 'in use by another process' in r.stderr, r.stderr
        r = env.disk('info', img, check=False)
        assert r.returncode == 1 and 'in use' in r.stderr, r.stderr
        env.disk('info', '--force-share', img)
        r = env.disk('create', '--force', img, '1M', check=False)
        assert r.returncode == 1 and 'in use' in r.stderr, r.stderr


def preallocation():
    img = env.path('pre.qcow2')
    env.disk('create', '--preallocation', 'metadata', '--cluster-size', '4K', img, '64M')
    env.qemu_check_clean(img)
    io(img, 'write', 0, 1 << 20, 4)
    env.qemu_check_clean(img)


def usage_errors():
    assert env.disk('create', check=False).returncode == 2
    assert env.disk('create', env.path('x.qcow2'), '10Q', check=False).returncode == 2
    assert env.disk('frobnicate', check=False).returncode == 2
    r = env.disk('info', env.path('missing.qcow2'), check=False)
    assert r.returncode == 1 and 'cannot open' in r.stderr, r.stderr
    existing = new('exists.qcow2')
    r = env.disk('create', existing, '1M', check=False)
    assert r.returncode == 1 and 'exists' in r.stderr, r.stderr


env.case('random writes, zeroes and discards (512, 64K, 2M clusters)', random_io)
env.case('chain of 4: rebase, commit, rebase onto nothing, unsafe rebase', chain_commit_rebase)
env.case('resize: grow across L1 growth, shrink', resize)
env.case('refcount table growth', refcount_growth)
env.case('convert flattens and keeps holes', convert)
env.case('check: leaks and corruptions, repair', check_and_repair)
env.case('an image in use is refused', in_use)
env.case('preallocated metadata', preallocation)
env.case('usage errors', usage_errors)
env.finish()
