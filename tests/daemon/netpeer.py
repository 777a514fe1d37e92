#!/usr/bin/env python3
"""netpeer.py: a ping peer for switch tests, run inside a network namespace:
  netpeer.py DST_IP INTERVAL_MS VM_MAC [IFNAME...]
sends ICMP echo requests to DST_IP every INTERVAL_MS with increasing
sequence numbers and watches IFNAMEs (AF_PACKET) for announcement frames
from VM_MAC (RARP 0x8035, gratuitous ARP) arriving on them. One line per event, flushed:
  s SEQ T        request SEQ sent at T (monotonic seconds)
  r SEQ T        its reply arrived
  a IFNAME KIND T  an announcement from VM_MAC seen on IFNAME (rarp|garp)
until stdin closes. Needs CAP_NET_RAW."""
import os
import select
import socket
import struct
import sys
import time


def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    t = (t & 0xffff) + (t >> 16)
    return ~((t & 0xffff) + (t >> 16)) & 0xffff


def main():
    dst, interval, mac = sys.argv[1], int(sys.argv[2]) / 1000.0, sys.argv[3]
    vm_mac = bytes(int(x, 16) for x in mac.split(":"))
    ident = os.getpid() & 0xffff
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    caps = {}
    for ifn in sys.argv[4:]:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((ifn, 0))
        caps[s.fileno()] = (s, ifn)
    seq, nxt = 0, time.monotonic()
    out = sys.stdout
    while True:
        now = time.monotonic()
        if now >= nxt:
            seq += 1
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xffff) + b"cella-netpeer".ljust(48, b".")
            icmp.sendto(body[:2] + struct.pack("!H", csum(body)) + body[4:], (dst, 0))
            out.write(f"s {seq} {time.monotonic():.4f}\n")
            out.flush()
            nxt += interval
            continue
        r, _, _ = select.select([sys.stdin, icmp] + [c[0] for c in caps.values()], [], [],
                                max(0.0, nxt - now))
        for f in r:
            if f is sys.stdin:
                if not sys.stdin.readline():
                    return 0
            elif f is icmp:
                d, a = icmp.recvfrom(2048)
                h = (d[0] & 15) * 4
                if a[0] == dst and len(d) >= h + 8 and d[h] == 0:
                    rid, rseq = struct.unpack("!HH", d[h + 4:h + 8])
                    if rid == ident:
                        out.write(f"r {rseq} {time.monotonic():.4f}\n")
                        out.flush()
            else:
                s, ifn = caps[f.fileno()]
                fr, addr = s.recvfrom(2048)
                # Only frames arriving on IFNAME, not those the bridge floods out of it.
                if addr[2] == socket.PACKET_OUTGOING or len(fr) < 42 or fr[6:12] != vm_mac:
                    continue
                et = struct.unpack("!H", fr[12:14])[0]
                kind = None
                if et == 0x8035:
                    kind = "rarp"
                elif et == 0x0806 and fr[28:32] == fr[38:42] and fr[0:6] == b"\xff" * 6:
                    kind = "garp"
                if kind:
                    out.write(f"a {ifn} {kind} {time.monotonic():.4f}\n")
                    out.flush()


if __name__ == "__main__":
    sys.exit(main())
