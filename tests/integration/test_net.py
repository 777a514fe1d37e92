#!/usr/bin/env python3
"""it-net: ARP and ICMP echo between the guest and a tap in a private
network namespace (no traffic leaves it); the namespace is always removed."""
import os
import shutil
import subprocess

import harness

HOST_IP, GUEST_IP, TAP = "192.168.100.1", "192.168.100.2", "ctap0"


def sh(*cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r.stdout


def test(args):
    if os.geteuid() != 0:
        harness.skip("it-net needs root (network namespace and tap)")
    if not os.path.exists("/dev/net/tun") or not shutil.which("ip"):
        harness.skip("it-net needs /dev/net/tun and iproute2")
    ns = f"cella-it-{os.getpid()}"
    try:
        sh("ip", "netns", "add", ns)
    except RuntimeError as e:
        harness.skip(f"cannot create a network namespace: {e}")
    try:
        try:
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "tuntap", "add", "dev", TAP, "mode", "tap")
            sh("ip", "-n", ns, "addr", "add", f"{HOST_IP}/24", "dev", TAP)
            sh("ip", "-n", ns, "link", "set", TAP, "up")
        except RuntimeError as e:
            harness.skip(f"cannot set up a tap in the namespace: {e}")
        with harness.run_guest(args["guests"]["net"], f"ip={GUEST_IP} peer={HOST_IP} count=3",
                               cella_vm=args["cella_vm"], net_tap=TAP,
                               wrapper=["ip", "netns", "exec", ns]) as g:
            g.wait_for(rf"^ok: ARP reply from {HOST_IP}$", timeout=60)
            g.wait_for(rf"^ok: ICMP echo reply 3 from {HOST_IP}$", timeout=60)
            g.expect_pass("net")
    finally:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


harness.main(test)
