#!/usr/bin/env python3
"""test_switch_mq.py: a VM with a two-queue NIC on a switch, under cellad,
uses both queue pairs (docs/networking.md, "Multiqueue").

cellad runs in a network namespace of its own, with an internal switch (the
host has the bridge's address). The VM (2 vCPUs, `"queues": 2`) boots the
`netmq` guest, whose driver negotiates MQ and sets two pairs. Checked from
outside the worker, on the port's tap (mqutil.py, tests/integration):
- the port is a multi_queue tap on the switch's bridge, with both queues
  attached once the guest set two pairs (the worker keeps the second
  detached until the driver asks for it: it-netmq checks a one-pair guest);
- the host's 16 UDP flows to the guest are all echoed, its 6 flows (three
  per pair, round-robin) all echoed by the host;
- both tap queues carried frames both ways (tc per-queue counters: ingress
  filters on the queue a frame came from, the mq qdisc's per-queue
  classes), and the guest's own counters say both pairs sent and received;
- the port goes when the VM stops."""
import os
import shutil
import sys

from cellad import Daemon, TestFailure, check, log, main, poll, sh, skip

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import mqutil  # noqa: E402

HOST_IP, GUEST_IP, PORT = "10.79.0.1", "10.79.0.2", 7777


def tap_of(d, name):
    return "ct" + d.vm(name)["uuid"].replace("-", "")[:10] + ".0"


def say_until(d, peer, word, text, tries=5):
    """Sends word to the guest until text is on its console (a datagram
    may be lost while the host resolves the guest's address)."""
    for attempt in range(tries):
        peer.say(GUEST_IP, PORT, word)
        try:
            return d.wait_console("mq", text, timeout=30)
        except TestFailure:
            if attempt == tries - 1:
                raise


def scenario(d, ns, args):
    r = d.post("/v1/switches", {"name": "mqsw", "type": "internal", "address": f"{HOST_IP}/24"})
    check(r.status == 201, f"internal switch mqsw created: {r}")
    d.define("mq", "netmq", f"ip={GUEST_IP} peer={HOST_IP} port={PORT} pairs=2 flows=6",
             cpus=2, nics=[{"switch": "mqsw", "queues": 2}])
    check(d.vm("mq")["nics"][0].get("queues") == 2, "the NIC has queues=2")
    peer = mqutil.Peer(ns, HOST_IP, PORT)
    try:
        d.action("mq", "start")
        # The whole phrase: the console may stop mid-line (a failure shows
        # what the guest said instead).
        d.wait_console("mq", "netmq: ready pairs=2 max=2", timeout=120)
        check(True, "the guest set two pairs (VQ_PAIRS_SET)")
        tap = tap_of(d, "mq")
        info = sh("ip", "-n", ns, "-d", "link", "show", "dev", tap)
        check("multi_queue" in info and "master cbr-mqsw" in info,
              f"the port {tap} is a multi_queue tap on cbr-mqsw")
        check(mqutil.attached_queues(ns, tap) == 2, "both tap queues attached")
        # Counters from here on: nothing moved before the guest was ready.
        mqutil.install_queue_counters(ns, tap, 2)
        back = peer.flows(GUEST_IP, PORT, 16)
        check(back == 16, f"the guest echoed {back} of the host's 16 flows")
        # The report after it: the "flows done" line is whole by then.
        out = say_until(d, peer, "go", "flows echoed by")
        check("netmq: flows done echoed=6/6" in out, "the host echoed the guest's 6 flows")
        rx, tx = mqutil.queue_counters(ns, tap, 2)
        log(f"{tap} queues: frames from the guest {rx}, to the guest {tx}")
        check(all(rx) and all(tx), f"both tap queues carried frames both ways: from the "
              f"guest {rx}, to it {tx}")
        out = say_until(d, peer, "quit", "SUMMARY: ")
        check("PASS netmq" in d.wait_console("mq", "PASS netmq", timeout=30), "PASS netmq")
        pairs = mqutil.pair_lines(out.replace("\r", "").splitlines())
        log(f"guest pairs: {pairs}")
        check(sorted(pairs) == [0, 1] and all(p["tx"] and p["rx"] for p in pairs.values()),
              "the guest's counters: both pairs sent and received")
        d.wait_state("mq", ("stopped", "crashed"), timeout=60)
        poll("the port to go", lambda: tap not in sh("ip", "-n", ns, "link", "show"))
        check(True, "the port is gone after the VM stopped")
    finally:
        peer.close()


def test(args):
    if os.geteuid() != 0:
        skip("switches need root (network namespaces, bridges, taps)")
    if not all(shutil.which(t) for t in ("ip", "tc")) or not os.path.exists("/dev/net/tun"):
        skip("needs iproute2 (ip, tc) and /dev/net/tun")
    ns = f"cella-t-swmq-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # The per-queue counters need cls_bpf and act_mirred: find out before
        # any VM runs, on a throwaway multi-queue tap.
        try:
            sh("ip", "-n", ns, "tuntap", "add", "dev", "mqprobe", "mode", "tap", "multi_queue")
            mqutil.install_queue_counters(ns, "mqprobe", 2)
        except (RuntimeError, TestFailure) as e:
            skip(f"cannot count frames per tap queue here (cls_bpf, act_mirred): {e}")
        finally:
            sh("ip", "-n", ns, "link", "del", "mqprobe", check_rc=False)
        with Daemon(args, wrapper=["ip", "netns", "exec", ns]) as d:
            scenario(d, ns, args)
    finally:
        sh("ip", "netns", "del", ns, check_rc=False)


main(test, need_root=True)
