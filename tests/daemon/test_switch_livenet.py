#!/usr/bin/env python3
"""test_switch_livenet.py: a VM's network through a cellad restart and a
live move, with a peer pinging it all along.

Two cellads in namespaces of their own (test_move.py's hosts A and B), each
with an external switch "lan" whose uplink is a veth into a third namespace,
the "wire": a plain Linux bridge with the peer's address on it, standing for
the physical network both hosts are on. The VM (the `net` test guest
answering pings; 2 vCPUs) has a NIC on lan with queues=2:

- A: a stale one-queue tap of the port's name is replaced at the start; its port is a multi_queue tap and its worker holds two descriptors of
  it (/proc/PID/fd -> /dev/net/tun, fdinfo iff: the tap);
- cellad A restarts: the worker runs on with both, the port is attached
  again, the peer's pings are answered;
- live move to B while the peer pings every 50 ms: the destination's
  announcement (RARP from the VM's MAC) is seen arriving from B's uplink,
  the wire's bridge then forwards to B (its FDB), the replies resume within
  the move's downtime and a little more, and at most a few pings are lost
  (bounded by the downtime: the figures are logged); B's port is a
  multi_queue tap with two descriptors in the worker too;
- A's port is gone after the move, B's after the VM is killed.

Everything the test makes (namespaces, veths, bridges, taps) goes with the
namespaces, also on failure."""
import ctypes
import math
import os
import subprocess
import sys
import threading
import time

import replutil
from cellad import TestFailure, check, log, main, poll
from test_move import SUB, move_cli, sh

WIRE = f"cella-t-lnw-{os.getpid()}"
PEER_IP, VM_IP = f"10.{SUB}.88.1", f"10.{SUB}.88.9"
VM_MAC = "52:54:00:ce:88:09"
INTERVAL_MS = 50


def tap_of(d, name):
    return "ct" + d.vm(name)["uuid"].replace("-", "")[:10] + ".0"


def link(ns, dev):
    return sh("ip", "-n", ns, "-d", "link", "show", "dev", dev, check_rc=False).stdout


def same_file(pid, fd1, fd2):
    """kcmp(KCMP_FILE): whether two of pid's descriptors are one open file
    (the worker keeps the numbers cellad passed and its own duplicates)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(312, pid, pid, 0, fd1, fd2) == 0  # SYS_kcmp on x86-64


def tun_fds(pid):
    """The worker's open files on /dev/net/tun (one per tap queue, however
    many descriptors point at each): [iff of each]."""
    out, seen = [], []
    for fd in sorted(int(x) for x in os.listdir(f"/proc/{pid}/fd")):
        try:
            # "/dev/net/tun", or "/net/tun" once the mount namespace cellad
            # opened it in (ip netns exec's) has gone with that cellad.
            if not os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/net/tun"):
                continue
            if any(same_file(pid, fd, other) for other in seen):
                out.append("duplicate")  # a passed number the worker did not close
                continue
            seen.append(fd)
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                iff = [l.split(":", 1)[1].strip() for l in f if l.startswith("iff:")]
            out.append(iff[0] if iff else "")
        except OSError as e:
            log(f"worker {pid} fd {fd}: {e}")
            continue
    return out


def check_mq(d, ns, name, where):
    tap, pid = tap_of(d, name), d.vm(name)["pid"]
    info = link(ns, tap)
    fds = tun_fds(pid)
    log(f"{where}: {tap}: {' '.join(info.split())[:200]}; worker {pid} tun fds: {fds}")
    check("multi_queue" in info, f"{where}: the port {tap} is a multi_queue tap")
    check(len(fds) == 2 and all(f == tap for f in fds),
          f"{where}: the worker holds two queues of {tap}, one descriptor each ({fds})")
    # The test guest's driver uses one pair: the worker keeps queue 1
    # detached (TUNSETQUEUE), so the kernel steers every flow to queue 0.
    q = sh("ip", "netns", "exec", ns, "ls", f"/sys/class/net/{tap}/queues").stdout.split()
    check(sorted(q) == ["rx-0", "tx-0"], f"{where}: one queue attached while the guest uses "
          f"one pair ({q})")
    return tap, pid


class Peer:
    """netpeer.py in the wire namespace: its events, read in a thread."""

    def __init__(self, ifaces):
        here = os.path.dirname(os.path.abspath(__file__))
        self.p = subprocess.Popen(["ip", "netns", "exec", WIRE, sys.executable, "-u",
                                   os.path.join(here, "netpeer.py"), VM_IP, str(INTERVAL_MS),
                                   VM_MAC] + list(ifaces), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.sent, self.replies, self.ann = {}, {}, []
        self.lock = threading.Lock()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.p.stdout:
            w = line.split()
            with self.lock:
                if w[0] == "s":
                    self.sent[int(w[1])] = float(w[2])
                elif w[0] == "r":
                    self.replies.setdefault(int(w[1]), float(w[2]))
                elif w[0] == "a":
                    self.ann.append((w[1], w[2], float(w[3])))

    def replied_since(self, t):
        with self.lock:
            return sum(1 for s, rt in self.replies.items() if self.sent.get(s, 0) >= t)

    def stop(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def wire_up(net):
    sh("ip", "netns", "add", WIRE)
    sh("ip", "-n", WIRE, "link", "set", "lo", "up")
    sh("ip", "-n", WIRE, "link", "add", "wbr", "type", "bridge")
    sh("ip", "-n", WIRE, "addr", "add", PEER_IP + "/24", "dev", "wbr")
    sh("ip", "-n", WIRE, "link", "set", "wbr", "up")
    up = {}
    for h in ("a", "b"):
        up[h] = f"lnu{h}{os.getpid() % 100000}"
        sh("ip", "link", "add", up[h], "netns", net.ns[h], "type", "veth", "peer", "name",
           "w" + h, "netns", WIRE)
        sh("ip", "-n", WIRE, "link", "set", "w" + h, "master", "wbr", "up")
        sh("ip", "-n", net.ns[h], "link", "set", up[h], "up")
    return up


def fdb_port(mac):
    for line in sh("bridge", "-n", WIRE, "fdb", "show", "br", "wbr").stdout.splitlines():
        w = line.split()
        if w and w[0] == mac and "dev" in w:
            return w[w.index("dev") + 1]
    return None


def scenario(a, b, net, work):
    up = wire_up(net)
    for h, d in (("a", a), ("b", b)):
        d.cli("switch", "create", "lan", "--type", "external", "--uplink", up[h])
    # queues: checked at definition (field named), and given by the CLI.
    for body, field in (({"cpus": 2, "nics": [{"switch": "lan", "queues": 3}]}, "nics[0].queues"),
                        ({"cpus": 4, "nics": [{"switch": "lan", "queues": 4}]}, "nics[0].queues"),
                        ({"cpus": 2, "nics": [{"switch": "lan", "queues": 0}]}, "nics[0].queues"),
                        ({"cpus": 2, "nics": [{"user": True, "queues": 2}]}, "nics[0].queues")):
        r = a.post("/v1/vms", dict(body, name="bad", kernel=a.args["guests"]["net"]))
        check(r.status == 400 and (r.json or {}).get("error", {}).get("field") == field,
              f"refused: {body['nics']} with {body['cpus']} vCPUs: {r.status} {r.body.strip()}")
    a.cli("vm", "create", "cq", "--kernel", a.args["guests"]["net"], "--cpus", "2", "--nic",
          "lan,queues=2")
    check(a.vm("cq")["nics"][0].get("queues") == 2, "cella vm create --nic lan,queues=2")
    check(a.request("DELETE", "/v1/vms/cq").status in (200, 204), "cq deleted")
    a.define("mv", "net", f"ip={VM_IP} serve=1000000 wait=900000", cpus=2,
             nics=[{"switch": "lan", "queues": 2, "mac": VM_MAC}])
    check(a.vm("mv")["nics"][0].get("queues") == 2, "the NIC keeps queues=2 in its definition")
    # A port left from an earlier run as a one-queue tap (cellad killed
    # while the VM stopped): the start makes it anew with multi_queue.
    sh("ip", "-n", net.ns["a"], "tuntap", "add", "dev", tap_of(a, "mv"), "mode", "tap",
       "vnet_hdr")
    check("multi_queue" not in link(net.ns["a"], tap_of(a, "mv")), "a stale one-queue tap is there")
    a.action("mv", "start")
    a.wait_console("mv", "net: serving", timeout=120)
    tap, pid = check_mq(a, net.ns["a"], "mv", "A")

    # cellad A restarts: the worker and its queues stay, the port is re-adopted.
    a.stop()
    a.args = dict(a.args, cellad=REAL_CELLAD[0])  # NsDaemon.start wraps it again
    a.start()
    check(a.vm("mv")["state"] == "running" and a.vm("mv")["pid"] == pid,
          "after cellad's restart the same worker runs the VM")
    check(f"master cbr-lan" in link(net.ns["a"], tap), "the port is on cbr-lan again")
    check_mq(a, net.ns["a"], "mv", "A after cellad's restart")

    peer = Peer(["wa", "wb"])
    try:
        t0 = time.monotonic()
        poll("the peer's pings to be answered", lambda: peer.replied_since(t0) >= 20,
             timeout=60)
        check(fdb_port(VM_MAC) == "wa", "the wire's bridge reaches the VM through A")
        t_move = time.monotonic()
        res = move_cli(a, "mv", "--to", "b")
        t_done = time.monotonic()
        down = int(res.get("downtime_ms") or 0)
        log(f"live move: {res.get('total_ms')} ms, downtime {down} ms")
        check(b.vm("mv")["state"] == "running", "the VM runs on B")
        poll("20 replies after the move", lambda: peer.replied_since(t_done) >= 20, timeout=60)
    finally:
        peer.stop()
    with peer.lock:
        sent, replies, ann = dict(peer.sent), dict(peer.replies), list(peer.ann)
    last = max(replies)
    window = [s for s in sent if sent[s] >= t_move and s <= last]
    lost = [s for s in window if s not in replies]
    # The longest silence: from the last reply before a gap to the next.
    times = sorted(replies[s] for s in replies if sent.get(s, 0) >= t_move - 1)
    gap = max((b2 - a2 for a2, b2 in zip(times, times[1:])), default=0) * 1000
    log(f"pings during the move: {len(window)} sent, {len(lost)} lost ({lost[:40]}), "
        f"longest silence {gap:.0f} ms, downtime {down} ms, interval {INTERVAL_MS} ms")
    log(f"announcements seen: {ann}")
    rarp_b = [t for i, k, t in ann if i == "wb" and k == "rarp" and t >= t_move]
    check(rarp_b, "B's announcement (RARP from the VM's MAC) arrived from B's uplink")
    check(fdb_port(VM_MAC) == "wb", "the wire's bridge now reaches the VM through B")
    after = [replies[s] for s in replies if replies[s] >= rarp_b[0]] if rarp_b else []
    check(after and min(after) - rarp_b[0] < 5,
          "replies come back through B right after the announcement")
    allowed = max(5, math.ceil(down / INTERVAL_MS) + 5)
    check(len(lost) <= allowed,
          f"at most a few pings lost: {len(lost)} (bound {allowed}: the downtime "
          f"{down} ms at one per {INTERVAL_MS} ms, plus 5)")
    check(gap <= down + 1500, f"the longest silence ({gap:.0f} ms) is the downtime ({down} ms) "
          "and at most 1.5 s more: the announcement, not an ARP timeout, turned traffic to B")
    check_mq(b, net.ns["b"], "mv", "B")
    poll("the port to leave A", lambda: tap not in link(net.ns["a"], tap))
    check(True, "A: the port is gone after the move")
    b.action("mv", "kill")
    poll("the port to leave B", lambda: tap not in link(net.ns["b"], tap))
    check(True, "B: the port is gone after kill")


REAL_CELLAD = []


def test(args):
    REAL_CELLAD.append(args["cellad"])
    try:
        replutil.two_hosts(args, "swln", scenario, tools=("ip", "bridge", "openssl"))
    finally:
        subprocess.run(["ip", "netns", "del", WIRE], capture_output=True)


if __name__ == "__main__":
    main(test)
