"""mqutil.py: multiqueue virtio-net seen from the host, for the netmq guest
(it-netmq, daemon-switch_mq).

Per-queue counters of a multi-queue tap, read with tc from outside the VMM:
- guest to host: a frame the worker writes on tap queue q enters the host
  with skb->queue_mapping q + 1 (tun records the queue it came from); an
  ingress filter per queue, classic BPF `ld #queue; jeq #q+1` (cls_bpf),
  counts them with a mirred action that mirrors to lo (lo drops them: ARP
  is off there and no unicast MAC matches), so `tc -s filter` shows the
  frames of each queue;
- host to guest: a multi-queue tap has the mq qdisc, one child per tx
  queue, and tun hands tx queue q to the descriptor of queue q: `tc -s class`
  shows what went to each queue.

A queue's index is its place among the attached queues (tun renumbers on
attach and detach): N attached queues are 0..N-1 in some order, so "every
index counted frames" means every descriptor did, whichever is which.

Peer: UDP sockets in a network namespace (setns on this thread around
their creation only): an echo server for the guest's flows, the host's own
flows to the guest (distinct source ports, so the kernel's flow hash
spreads them over the queues), and the "go" and "quit" words."""
import ctypes
import os
import re
import select
import socket
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
SKF_AD_QUEUE = 0xFFFFF000 + 24  # SKF_AD_OFF + SKF_AD_QUEUE: skb->queue_mapping


def sh(*cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r.stdout


def install_queue_counters(ns, dev, queues):
    """An ingress qdisc on dev with one counting filter per queue."""
    sh("tc", "-n", ns, "qdisc", "add", "dev", dev, "ingress")
    for q in range(queues):
        code = f"4,32 0 0 {SKF_AD_QUEUE},21 0 1 {q + 1},6 0 0 4294967295,6 0 0 0"
        sh("tc", "-n", ns, "filter", "add", "dev", dev, "ingress", "pref", str(100 + q),
           "bpf", "bytecode", code, "action", "mirred", "egress", "mirror", "dev", "lo")


def queue_counters(ns, dev, queues):
    """([frames from the guest per queue], [frames to the guest per queue])."""
    rx = [0] * queues
    out = sh("tc", "-n", ns, "-s", "filter", "show", "dev", dev, "ingress")
    for block in re.split(r"\n(?=filter )", out):
        m = re.search(r"pref (\d+) bpf.*?Sent \d+ bytes (\d+) pkt", block, re.S)
        if m and 0 <= int(m.group(1)) - 100 < queues:
            rx[int(m.group(1)) - 100] = int(m.group(2))
    tx = [0] * queues
    out = sh("tc", "-n", ns, "-s", "class", "show", "dev", dev)
    for m in re.finditer(r"class mq :([0-9a-f]+) root.*?\n\s*Sent \d+ bytes (\d+) pkt", out):
        q = int(m.group(1), 16) - 1
        if 0 <= q < queues:
            tx[q] = int(m.group(2))
    return rx, tx


def attached_queues(ns, dev):
    """How many of the tap's queues are attached (its rx-N entries)."""
    out = sh("ip", "netns", "exec", ns, "ls", f"/sys/class/net/{dev}/queues")
    return sum(1 for w in out.split() if w.startswith("rx-"))


def pair_lines(lines):
    """{pair: {tx, rx, served, echoes}} from the guest's closing lines."""
    pairs = {}
    for line in lines:
        m = re.match(r"netmq: pair (\d+) tx=(\d+) rx=(\d+) served=(\d+) echoes=(\d+)$", line)
        if m:
            pairs[int(m.group(1))] = dict(zip(("tx", "rx", "served", "echoes"),
                                              map(int, m.groups()[1:])))
    return pairs


class Peer:
    """The guest's UDP peer at ip:port inside namespace ns."""

    def __init__(self, ns, ip, port):
        self.ns, self.ip, self.port = ns, ip, port
        self.echoed = 0
        self.echo = self.socket((ip, port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def socket(self, bind):
        libc = ctypes.CDLL(None, use_errno=True)
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
        try:
            if libc.setns(there, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), f"setns into {self.ns}")
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(bind)
            finally:
                if libc.setns(here, CLONE_NEWNET):
                    raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(here)
            os.close(there)
        return s

    def _serve(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.echo], [], [], 0.2)
            if r:
                data, addr = self.echo.recvfrom(2048)
                self.echo.sendto(data, addr)
                self.echoed += 1

    def flows(self, guest_ip, guest_port, n, timeout=60):
        """n flows to the guest, one datagram each from its own source port,
        sent until echoed; returns how many came back."""
        socks = [self.socket((self.ip, 0)) for _ in range(n)]
        back = set()
        deadline = time.monotonic() + timeout
        try:
            while len(back) < n and time.monotonic() < deadline:
                for i, s in enumerate(socks):
                    if i not in back:
                        s.sendto(f"host flow {i}".encode(), (guest_ip, guest_port))
                end = min(deadline, time.monotonic() + 1.0)
                while len(back) < n and time.monotonic() < end:
                    r, _, _ = select.select([s for i, s in enumerate(socks) if i not in back],
                                            [], [], max(0, end - time.monotonic()))
                    for s in r:
                        data = s.recv(2048)
                        i = socks.index(s)
                        if data == f"host flow {i}".encode():
                            back.add(i)
        finally:
            for s in socks:
                s.close()
        return len(back)

    def say(self, guest_ip, guest_port, word):
        s = self.socket((self.ip, 0))
        try:
            s.sendto(word.encode(), (guest_ip, guest_port))
        finally:
            s.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.echo.close()
