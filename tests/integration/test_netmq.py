#!/usr/bin/env python3
"""it-netmq: multiqueue virtio-net with traffic on every queue pair, proven
from outside cella-vm.

In a private namespace the test makes a multi-queue tap (`ip tuntap ...
multi_queue`) with per-queue counters (mqutil.py: tc ingress filters on
skb->queue_mapping for frames from the guest, the mq qdisc's per-queue
classes for frames to it) and boots the `netmq` guest with three vCPUs and
`--net tap=...,queues=3`. The guest negotiates MQ, sets three pairs with
VQ_PAIRS_SET, and then:
- the host sends 24 UDP flows to it (distinct source ports: the kernel
  spreads them over the tap's queues by flow hash); the guest echoes each
  on the pair it came on, and the host gets every echo back;
- on "go" the guest sends 9 flows of its own, round-robin over its three tx
  queues, and the host's echo server answers each (the tap steers a reply
  to the queue its flow came from);
- while the guest waits for "quit": the tap has three queues attached, and
  each queue counted frames in both directions;
- the guest's per-pair counters: every pair sent and received frames, and
  the host's flows arrived on more than one pair.
Then a guest that wants one pair on the same three-queue NIC: only one tap
queue is attached and traffic flows as without multiqueue.
The namespace goes at the end, with everything in it. CELLA_IT_VMM=qemu
runs the same guest on QEMU's virtio-net (`mq=on`, tap `queues=3`): the
guest's driver checked against another device."""
import os
import shutil
import subprocess

import harness
import mqutil

HOST_IP, GUEST_IP, TAP, PORT = "192.168.101.1", "192.168.101.2", "mq0", 7777
QUEUES, HOST_FLOWS, GUEST_FLOWS = 3, 24, 9


def check(cond, msg):
    if not cond:
        raise harness.TestFailure(msg)
    harness.log(f"ok: {msg}")


def say_until(g, peer, word, pattern, tries=5):
    """Sends word to the guest until a console line matches (UDP may be
    dropped while the host resolves the guest's address)."""
    for i in range(tries):
        peer.say(GUEST_IP, PORT, word)
        try:
            return g.wait_for(pattern, timeout=60 if word == "go" else 10)
        except harness.TestFailure:
            if i == tries - 1 or g.proc.poll() is not None:
                raise


def boot(args, ns, pairs, flows):
    vmm = harness.vmm_kind()
    if vmm == "qemu":  # QEMU's virtio-net on the same tap: the guest's driver cross-checked
        net = ["-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,queues={QUEUES}",
               "-device", "virtio-net-device,netdev=n0,mq=on"]
    else:
        net = ["--net", f"tap={TAP},queues={QUEUES}"]
    cmd = harness.build_command(vmm, args["cella_vm"], args["guests"]["netmq"],
                                f"ip={GUEST_IP} peer={HOST_IP} port={PORT} pairs={pairs} "
                                f"flows={flows}", cpus=QUEUES, extra=net)
    return harness.Guest(cmd, name=f"netmq{pairs}", wrapper=["ip", "netns", "exec", ns])


def all_pairs(args, ns, peer):
    with boot(args, ns, QUEUES, GUEST_FLOWS) as g:
        g.wait_for(rf"^netmq: ready pairs={QUEUES} max={QUEUES} ", timeout=60)
        check(mqutil.attached_queues(ns, TAP) == QUEUES,
              f"{QUEUES} tap queues attached after the guest's VQ_PAIRS_SET")
        back = peer.flows(GUEST_IP, PORT, HOST_FLOWS)
        check(back == HOST_FLOWS, f"the guest echoed {back} of the host's {HOST_FLOWS} flows")
        say_until(g, peer, "go", rf"^netmq: flows done echoed={GUEST_FLOWS}/{GUEST_FLOWS}$")
        check(True, f"the host echoed the guest's {GUEST_FLOWS} flows")
        rx, tx = mqutil.queue_counters(ns, TAP, QUEUES)
        harness.log(f"tap queues: frames from the guest {rx}, to the guest {tx}")
        check(all(rx), f"every tap queue carried frames from the guest: {rx}")
        check(all(tx), f"every tap queue carried frames to the guest: {tx}")
        check(mqutil.attached_queues(ns, TAP) == QUEUES, f"still {QUEUES} queues attached")
        say_until(g, peer, "quit", rf"^netmq: pair {QUEUES - 1} tx=")
        g.expect_pass("netmq")
    pairs = mqutil.pair_lines(g.lines)
    harness.log(f"guest pairs: {pairs}")
    check(sorted(pairs) == list(range(QUEUES)), "the guest reported every pair")
    check(all(p["tx"] > 0 and p["rx"] > 0 for p in pairs.values()),
          "every pair sent and received frames in the guest")
    check(all(p["echoes"] > 0 for p in pairs.values()),
          "echoes of the guest's flows arrived on every pair")
    spread = [p for p in pairs.values() if p["served"]]
    check(sum(p["served"] for p in pairs.values()) >= HOST_FLOWS and len(spread) >= 2,
          f"the host's flows arrived on {len(spread)} of {QUEUES} pairs")


def one_pair(args, ns, peer):
    """A driver that uses one pair of three: one queue attached, traffic as usual."""
    with boot(args, ns, 1, 2) as g:
        g.wait_for(rf"^netmq: ready pairs=1 max={QUEUES} ", timeout=60)
        before = mqutil.queue_counters(ns, TAP, QUEUES)
        check(mqutil.attached_queues(ns, TAP) == 1, "one tap queue attached for one pair")
        check(peer.flows(GUEST_IP, PORT, 4) == 4, "the host's flows are echoed on one pair")
        say_until(g, peer, "go", r"^netmq: flows done echoed=2/2$")
        say_until(g, peer, "quit", r"^netmq: pair 0 tx=")
        g.expect_pass("netmq")
    after = mqutil.queue_counters(ns, TAP, QUEUES)
    moved = [[a - b for a, b in zip(after[d], before[d])] for d in (0, 1)]
    harness.log(f"tap queues during the one-pair run: from the guest {moved[0]}, "
                f"to the guest {moved[1]}")
    check(moved[0][0] > 0 and moved[1][0] > 0 and not any(moved[0][1:] + moved[1][1:]),
          "only tap queue 0 carried frames")


def test(args):
    if os.geteuid() != 0:
        harness.skip("it-netmq needs root (network namespace and tap)")
    if not os.path.exists("/dev/net/tun") or not shutil.which("ip") or not shutil.which("tc"):
        harness.skip("it-netmq needs /dev/net/tun, iproute2 and tc")
    ns = f"cella-it-mq-{os.getpid()}"
    try:
        mqutil.sh("ip", "netns", "add", ns)
    except RuntimeError as e:
        harness.skip(f"cannot create a network namespace: {e}")
    peer = None
    try:
        try:
            mqutil.sh("ip", "-n", ns, "link", "set", "lo", "up")
            mqutil.sh("ip", "-n", ns, "tuntap", "add", "dev", TAP, "mode", "tap", "multi_queue",
                      "vnet_hdr")
            # No IPv6 on the tap: nothing the host sends unasked (DAD,
            # router solicitations) lands on a queue while it is attached.
            mqutil.sh("ip", "netns", "exec", ns, "sysctl", "-qw",
                      f"net.ipv6.conf.{TAP}.disable_ipv6=1")
            mqutil.sh("ip", "-n", ns, "addr", "add", f"{HOST_IP}/24", "dev", TAP)
            mqutil.sh("ip", "-n", ns, "link", "set", TAP, "up")
            mqutil.install_queue_counters(ns, TAP, QUEUES)
        except RuntimeError as e:
            harness.skip(f"cannot set up a multi-queue tap with tc counters: {e}")
        peer = mqutil.Peer(ns, HOST_IP, PORT)
        all_pairs(args, ns, peer)
        one_pair(args, ns, peer)
    finally:
        if peer:
            peer.close()
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


harness.main(test)
