#!/usr/bin/env python3
"""Images made by qemu-img/qemu-io read by cella: `cella disk convert -O raw`
must give exactly what `qemu-img convert -O raw` gives, for every cluster
size, backing chains, zero clusters, compressed clusters, lazy refcounts with
the dirty bit, and version 2 images."""
import os
import random

import diskutil as du

a = du.args()
du.need_qemu()
env = du.Env(a.cella)
SIZE = 16 << 20


def fill(img, seed, n=12):
    rng = random.Random(seed)
    cmds = [f'write -P {b} {o} {ln}' for o, ln, b in du.random_writes(rng, SIZE, n)]
    env.qio(img, *cmds)


def same_as_qemu(img, tag):
    q = env.qemu_raw(img, tag + '.q.raw')
    c = env.cella_raw(img, tag + '.c.raw')
    assert env.same_file(q, c), f'{img}: content differs from qemu-img\'s'
    os.unlink(q)
    os.unlink(c)


def cluster_sizes():
    for cs in (512, 4096, 65536, 2 << 20):
        img = env.path(f'cs{cs}.qcow2')
        du.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', f'cluster_size={cs}', img,
               str(SIZE))
        fill(img, cs)
        env.qio(img, 'write -z 1M 64k', 'discard 3M 128k')
        same_as_qemu(img, f'cs{cs}')
        r = env.disk('check', img, check=False)
        assert r.returncode == 0, f'cella check of a qemu image: {r.stdout}{r.stderr}'


def chains():
    base = env.path('base.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', base, str(SIZE))
    fill(base, 1)
    prev = base
    for i in range(1, 4):
        img = env.path(f'ov{i}.qcow2')
        du.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', os.path.basename(prev),
               '-F', 'qcow2', img)
        fill(img, 10 + i, 5)
        env.qio(img, f'write -z {i}M 64k')  # zero flag over backing data
        prev = img
    same_as_qemu(prev, 'chain')
    info = env.disk('info', '--json', prev).stdout
    assert '"chain-depth": 4' in info, info


def raw_backing():
    base = env.path('base.raw')
    du.run('qemu-img', 'create', '-q', '-f', 'raw', base, str(SIZE))
    env.qio(base, 'write -P 7 0 3M', fmt='raw')
    img = env.path('over-raw.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', img)
    fill(img, 3, 4)
    same_as_qemu(img, 'rawb')


def compressed():
    src = env.path('plain.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', src, str(SIZE))
    fill(src, 5, 20)
    img = env.path('comp.qcow2')
    du.run('qemu-img', 'convert', '-c', '-O', 'qcow2', src, img)
    same_as_qemu(img, 'comp')
    # writing into a compressed cluster turns it into a normal one
    env.disk('convert', '-O', 'qcow2', img, env.path('comp-copy.qcow2'))
    env.compare(img, env.path('comp-copy.qcow2'))
    ref = env.qemu_raw(img, 'comp-w.raw')
    rng = random.Random(9)
    cmds = []
    for off, ln, b in du.random_writes(rng, SIZE, 30, 5000):
        cmds += ['write', str(off), str(ln), str(b)]
    cmds += ['discard', '0', str(1 << 20)]
    du.run(a.disk_io, img, *cmds)
    du.run(a.disk_io, ref, *cmds)
    env.qemu_check_clean(img)
    env.compare(img, ref)


def lazy_dirty():
    img = env.path('lazy.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', img,
           str(SIZE))
    # qemu-io killed without a flush leaves the dirty bit set
    du.run('qemu-io', '-c', 'write -P 9 0 2M', '-c', 'abort', img, check=False)
    info = env.disk('info', '--json', img).stdout
    assert '"dirty-flag": true' in info, info
    same_as_qemu(img, 'lazy')
    # opening read-write rebuilds the refcounts and clears the bit
    env.disk('resize', img, str(SIZE))
    info = env.disk('info', '--json', img).stdout
    assert '"dirty-flag": false' in info, info
    env.qemu_check_clean(img)


def version2():
    img = env.path('v2.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', img, str(SIZE))
    fill(img, 7)
    same_as_qemu(img, 'v2')
    r = env.disk('resize', img, '+1M', check=False)
    assert r.returncode == 1 and 'version 2' in r.stderr, r.stderr


def refcount_widths():
    # images qemu made with other refcount widths, written by cella
    for bits in (1, 2, 8, 32, 64):
        img = env.path(f'rc{bits}.qcow2')
        du.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
               f'refcount_bits={bits},cluster_size=4096', img, str(SIZE))
        fill(img, bits, 4)
        ref = env.qemu_raw(img, f'rc{bits}.raw')
        cmds = ['write', str(3 << 20), '300000', '77', 'discard', '0', str(1 << 20),
                'zero', str(5 << 20), '100000']
        du.run(a.disk_io, img, *cmds)
        du.run(a.disk_io, ref, *cmds)
        env.qemu_check_clean(img)
        env.compare(img, ref)


def written_overlay_of_qemu_chain():
    base = env.path('qbase.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', base, str(SIZE))
    fill(base, 21)
    top = env.path('qtop.qcow2')
    du.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'qbase.qcow2', '-F', 'qcow2',
           '-o', 'cluster_size=512', top)
    ref = env.qemu_raw(top, 'qtop.raw')
    cmds = ['write', '1000', '5000', '3', 'discard', str(2 << 20), str(1 << 20),
            'zero', '70000', '1000']
    du.run(a.disk_io, top, *cmds)
    du.run(a.disk_io, ref, *cmds)
    env.qemu_check_clean(top)
    env.compare(top, ref)


env.case('cluster sizes 512..2M, zero and discarded clusters', cluster_sizes)
env.case('refcount widths 1..64 bits written by cella', refcount_widths)
env.case('cella writes an overlay of a qemu chain', written_overlay_of_qemu_chain)
env.case('backing chain of depth 4 with zero clusters', chains)
env.case('raw backing file', raw_backing)
env.case('compressed clusters', compressed)
env.case('lazy refcounts with the dirty bit', lazy_dirty)
env.case('version 2 images read-only', version2)
env.finish()
