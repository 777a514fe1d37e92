#!/usr/bin/env python3
"""gen_seeds.py: write the seed corpora of fuzz_virtq, fuzz_virtio_mmio, fuzz_balloon and fuzz_vmem
(run from this directory; the outputs are committed)."""
import struct

DESC, AVAIL, USED = 0x100, 0x400, 0x800


def desc(addr, length, flags=0, nxt=0):
    return struct.pack('<QIHH', addr, length, flags, nxt)


def put(mem, off, b):
    mem[off:off + len(b)] = b


def virtq_seed(num, feat, start, chains, extra=()):
    """chains: list of (head, [descriptor bytes at index...])"""
    mem = bytearray(0x1000)
    for idx, d in chains:
        put(mem, DESC + 16 * idx, d)
    heads = [h for h in extra] or [c[0] for c in chains if c[0] is not None]
    put(mem, AVAIL, struct.pack('<HH', 0, (start + len(heads)) & 0xffff))
    for i, h in enumerate(heads):
        put(mem, AVAIL + 4 + 2 * ((start + i) % num), struct.pack('<H', h))
    hdr = bytes([num.bit_length() - 1, feat]) + struct.pack('<HHHH', start, DESC // 2,
                                                             AVAIL // 2, USED // 2)
    return hdr + bytes(mem)


def seeds_virtq():
    out = {}
    # readable then writable, one chain
    out['direct'] = virtq_seed(8, 0, 0, [(0, desc(0xc00, 16, 1, 1)), (1, desc(0xd00, 64, 2))],
                               extra=[0])
    # indirect table at 0xe00 with three entries
    s = bytearray(virtq_seed(8, 2, 0, [(0, desc(0xe00, 48, 4))], extra=[0]))
    t = desc(0xc00, 16, 1, 1) + desc(0xd00, 32, 3, 2) + desc(0xd40, 32, 2)
    s[10 + 0xe00:10 + 0xe00 + 48] = t
    out['indirect'] = bytes(s)
    # event index, indices about to wrap, several chains
    out['event-wrap'] = virtq_seed(4, 1, 0xfffe, [(i, desc(0xc00 + 64 * i, 64, 2)) for i in range(4)],
                                   extra=[0, 1, 2, 3])
    # a loop
    out['loop'] = virtq_seed(8, 0, 0, [(0, desc(0xc00, 16, 3, 1)), (1, desc(0xc00, 16, 3, 0))],
                             extra=[0])
    return out


def mmio_seed(req_type, data_len, data_flag, console=False):
    """A blk request; console=True: the same chain's readable part as
    virtio-console output on its transmitq (queue 1)."""
    recs = []
    q = 1 if console else 0

    def w(reg, val):
        recs.append(struct.pack('<BBI', 1, reg // 4, val))
    w(0x070, 0)
    w(0x070, 1)
    w(0x070, 3)
    w(0x024, 1)
    w(0x020, 1)          # VERSION_1 (bit 32)
    w(0x024, 0)
    w(0x020, 0 if console else 1 << 9)  # FLUSH (blk)
    w(0x070, 11)         # FEATURES_OK
    recs.append(struct.pack('<BBI', 0, 0x070 // 4, 0))  # read status
    w(0x030, q)
    w(0x038, 8)
    w(0x080, DESC)
    w(0x090, AVAIL)
    w(0x0a0, USED)
    w(0x044, 1)
    w(0x070, 15)         # DRIVER_OK
    w(0x050, q)          # kick
    recs.append(struct.pack('<BBI', 0, 0x060 // 4, 0))
    recs.append(struct.pack('<BBI', 6, 0, 0))            # config byte 0
    mem = bytearray(0x2000)
    put(mem, 0xc00, struct.pack('<IIQ', req_type, 0, 1))  # header, sector 1
    put(mem, DESC, desc(0xc00, 16, 1, 1))
    if data_len:
        put(mem, DESC + 16, desc(0x1000, data_len, 1 | data_flag, 2))
        put(mem, DESC + 32, desc(0xd00, 1, 2))
    else:
        put(mem, DESC + 16, desc(0xd00, 1, 2))
    put(mem, AVAIL, struct.pack('<HHH', 0, 1, 0))
    return bytes([len(recs) | (0x80 if console else 0)]) + b''.join(recs) + bytes(mem)


def seeds_mmio():
    return {'read': mmio_seed(0, 512, 2), 'write': mmio_seed(1, 1024, 0),
            'flush': mmio_seed(4, 0, 0), 'get-id': mmio_seed(8, 20, 2),
            'console-tx': mmio_seed(0, 512, 0, console=True)}


for name, data in seeds_virtq().items():
    open('corpus-virtq/' + name, 'wb').write(data)
for name, data in seeds_mmio().items():
    open('corpus-virtio-mmio/' + name, 'wb').write(data)


# fuzz_balloon: [features][kicks][kick queues...] then memory from RING_BASE
# (0x10000): queue q's descriptors at q*0x1000, avail +0x400, used +0x800;
# data buffers from 0x4000 (guest address 0x14000).
def balloon_seed(features, kicks, queues):
    """queues: {q: [(addr, len, flags), ...]}, one chain of one descriptor each."""
    mem = bytearray(0x6000)
    for q, descs in queues.items():
        base = q * 0x1000
        for i, (a, l, f) in enumerate(descs):
            put(mem, base + 16 * i, desc(a, l, f))
        put(mem, base + 0x400, struct.pack('<HH', 0, len(descs)))
        for i in range(len(descs)):
            put(mem, base + 0x404 + 2 * i, struct.pack('<H', i))
    pfns = struct.pack('<8I', 0x100, 0x101, 0x101, 0x1ff, 0x200, 0xfffff, 0xC0000, 0x102)
    put(mem, 0x4000, pfns)
    stats = b''.join(struct.pack('<HQ', t, v) for t, v in ((4, 1 << 20), (5, 2 << 20), (99, 1)))
    put(mem, 0x4100, stats)
    return bytes([features, len(kicks)]) + bytes(kicks) + bytes(mem)


if True:  # fuzz_balloon's seeds
    data = 0x14000
    seeds = {
        'inflate-deflate': balloon_seed(0x26, [0, 1, 0x80 | 2],
                                        {0: [(data, 32, 0)], 1: [(data, 16, 0)],
                                         2: [(data + 0x100, 30, 0)]}),
        'report': balloon_seed(0x26, [3, 0x82, 2],
                               {3: [(0x100000, 0x100000, 2), (0x180064, 0x3000, 2)],
                                2: [(data + 0x100, 30, 0), (data + 0x100, 25, 0)]}),
        'report-no-stats': balloon_seed(0x20, [2, 3], {2: [(0x100000, 0x2000, 2)]}),
        'lying': balloon_seed(0x26, [0, 1], {0: [(0x1ffff8, 64, 0)], 1: [(data, 64, 2)]}),
    }
    import os
    os.makedirs('corpus-balloon', exist_ok=True)
    for name, b in seeds.items():
        with open(os.path.join('corpus-balloon', name), 'wb') as f:
            f.write(b)


def vmem_req(t, addr, n):
    return struct.pack('<HHHHQHHHH', t, 0, 0, 0, addr, n, 0, 0, 0)


if True:  # fuzz_vmem's seeds: RING_BASE 0x10000, the region at 4 GiB
    import os
    rb, region = 0x10000, 1 << 32
    mem = bytearray(0x3000)
    put(mem, 0, desc(rb + 0x2000, 24, 1, 1))
    put(mem, 16, desc(rb + 0x2100, 10, 2, 0))
    put(mem, 32, desc(rb + 0x2200, 24, 1, 3))
    put(mem, 48, desc(rb + 0x2300, 10, 2, 0))
    put(mem, 0x400, struct.pack('<HHHH', 0, 2, 0, 2))
    put(mem, 0x2000, vmem_req(0, region, 2))
    put(mem, 0x2200, vmem_req(3, region, 4))
    recs = b''.join(vmem_req(t, a, n)[:23] + bytes([24]) for t, a, n in
                    ((0, 2 << 21, 2), (0, 2 << 21, 1), (1, 2 << 21, 1), (3, 2 << 21, 4),
                     (2, 0, 0), (0, 1, 1)))
    seeds = {'empty': b'\x00', 'plug-state': bytes([0x42, 2, 1]) + bytes(mem),
             'sm': bytes([0x80]) + recs}
    os.makedirs('corpus-vmem', exist_ok=True)
    for name, b in seeds.items():
        with open(os.path.join('corpus-vmem', name), 'wb') as f:
            f.write(b)


# fuzz_net: [features][K] K x (LE u16 len, header + frame) then RAM from 0:
# queue q's descriptors at q*0x3000, avail +0x1000, used +0x2000 (16
# entries); buffers from 0x9000.
def vnet_hdr(flags=0, gso=0, hdr_len=0, gso_size=0, start=0, off=0, nbuf=0):
    return struct.pack('<BBHHHHH', flags, gso, hdr_len, gso_size, start, off, nbuf)


def eth(length, tag=None):
    f = b'\xff' * 6 + b'\x52\x54\x00\xab\xcd\xef'
    if tag is not None:
        f += struct.pack('>HH', 0x8100, tag)
    f += b'\x08\x00'
    return f + bytes((i * 7) & 0xff for i in range(length - len(f)))


def net_seed(features, frames, queues, extra=()):
    """queues: {q: [chain, ...]}, a chain a list of (addr, len, flags);
    extra: [(addr, bytes)] written into RAM."""
    mem = bytearray(0x20000)
    for q, chains in queues.items():
        base, i, heads = q * 0x3000, 0, []
        for chain in chains:
            heads.append(i)
            for j, (a, l, fl) in enumerate(chain):
                nxt = i + 1 if j + 1 < len(chain) else 0
                put(mem, base + 16 * i, desc(a, l, fl | (1 if j + 1 < len(chain) else 0), nxt))
                i += 1
        put(mem, base + 0x1000, struct.pack('<HH', 0, len(heads)))
        for n, h in enumerate(heads):
            put(mem, base + 0x1004 + 2 * n, struct.pack('<H', h))
    for a, b in extra:
        put(mem, a, b)
    out = bytes([features, len(frames)])
    for fr in frames:
        out += struct.pack('<H', len(fr)) + fr
    return out + bytes(mem)


if True:  # fuzz_net's seeds
    H, B0 = 0x9000, 0xa000
    tso = vnet_hdr(1, 1, 54, 1448, 34, 16)
    rx4 = [[(0x10000 + 0x800 * i, 0x800, 2)] for i in range(4)]
    seeds = {
        'tx-plain': net_seed(0x00, [], {1: [[(H, 12, 0), (B0, 100, 0)]]},
                             [(H, vnet_hdr()), (B0, eth(100))]),
        'tx-tso': net_seed(0x03, [], {1: [[(H, 12, 0), (B0, 3000, 0)]]},
                           [(H, tso), (B0, eth(3000))]),
        'tx-vlan-csum': net_seed(0x09, [], {1: [[(H, 12, 0), (B0, 300, 0)]]},
                                 [(H, vnet_hdr(1, 0, 0, 0, 34, 16)), (B0, eth(300))]),
        'tx-lying': net_seed(0x03, [], {1: [[(H, 12, 0), (0xffff0, 0x100000, 0)]]},
                             [(H, tso)]),
        'rx-mrg': net_seed(0x07, [vnet_hdr(2) + eth(1514), vnet_hdr() + eth(60)], {0: rx4}),
        'rx-gso': net_seed(0x07, [vnet_hdr(1, 1, 54, 1448, 34, 16) + eth(6000)], {0: rx4}),
        'rx-vlan': net_seed(0x0d, [vnet_hdr() + eth(200, 5), vnet_hdr() + eth(200, 6),
                                   vnet_hdr() + eth(200)], {0: rx4}),
        'rx-plain-small': net_seed(0x00, [vnet_hdr() + eth(1000), b'\x01\x02'],
                                   {0: [[(0x10000, 200, 2)]]}),
        'ctrl': net_seed(0x40, [], {2: [[(H, 2, 0), (H + 0x100, 1, 2)],
                                        [(H + 0x10, 4, 0), (H + 0x110, 1, 2)],
                                        [(H + 0x20, 1, 0)]]},
                         [(H, b'\x03\x00'), (H + 0x10, b'\x04\x00\x02\x00')]),
        # two pairs: enable pair 1 on control queue 4 (at 0xc000), tx on 3, rx on 2
        'mq': net_seed(0x87, [vnet_hdr() + eth(100), vnet_hdr() + eth(200)],
                       {4: [[(0x18000, 4, 0), (0x18100, 1, 2)]],
                        3: [[(0x18200, 12, 0), (0x18300, 100, 0)]],
                        2: [[(0x19000, 0x800, 2)]], 0: [[(0x1a000, 0x800, 2)]]},
                       [(0x18000, b'\x04\x00\x02\x00'), (0x18200, vnet_hdr()),
                        (0x18300, eth(100))]),
    }
    import os
    os.makedirs('corpus-net', exist_ok=True)
    for name, b in seeds.items():
        with open(os.path.join('corpus-net', name), 'wb') as f:
            f.write(b)
