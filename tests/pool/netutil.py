"""netutil.py: network namespaces for pool tests: a bridge in this
namespace and one namespace per host on it, joined by a veth pair each
(test_pool_hosts.py, test_pool_ha.py). Needs root."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from cellad import TestFailure  # noqa: E402


def sh(*cmd, check_rc=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check_rc and p.returncode:
        raise TestFailure(f"{' '.join(cmd)}: {p.returncode}: {p.stderr}")
    return p


def subnet(salt=0):
    """A /24 of 10/8 picked from the pid (and salt), for one test run."""
    pid = os.getpid() + salt
    return f"10.{200 + pid % 50}.{pid % 250}"


class Net:
    """A bridge (address NET.1) and one namespace per host of addr
    (host -> address on the bridge's /24)."""

    def __init__(self, addr, bridge_ip, tag="cp"):
        n = os.getpid() % 100000
        self.addr = addr
        self.bridge_ip = bridge_ip
        self.br = f"{tag}br{n}"
        self.ns = {h: f"cella-{tag}-{h}-{os.getpid()}" for h in addr}
        self.veth = {h: (f"{tag}{h}{n}", f"{tag}{h}{n}p") for h in addr}

    def up(self):
        sh("ip", "link", "add", self.br, "type", "bridge")
        sh("ip", "addr", "add", self.bridge_ip + "/24", "dev", self.br)
        sh("ip", "link", "set", self.br, "up")
        for h, ns in self.ns.items():
            inside, outside = self.veth[h]
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
            sh("ip", "link", "set", outside, "master", self.br)
            sh("ip", "link", "set", outside, "up")
            sh("ip", "-n", ns, "addr", "add", self.addr[h] + "/24", "dev", inside)
            sh("ip", "-n", ns, "link", "set", inside, "up")

    def cut(self, h, up=False):
        """Take host h's link to the bridge down (or up again)."""
        sh("ip", "link", "set", self.veth[h][1], "up" if up else "down")

    def down(self):
        for h, ns in self.ns.items():
            sh("ip", "netns", "del", ns, check_rc=False)
            sh("ip", "link", "del", self.veth[h][1], check_rc=False)
        sh("ip", "link", "del", self.br, check_rc=False)


def ns_wrapper(path, ns, real):
    """A script that runs real in namespace ns (Daemon wants one program)."""
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexec ip netns exec {ns} {real} \"$@\"\n")
    os.chmod(path, 0o755)
    return path
