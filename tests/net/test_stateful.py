#!/usr/bin/env python3
"""test_stateful.py: stateful ACLs (daemon/net/portpol_state.c) with real
TCP, UDP and ICMP between network namespaces this test makes: "the VM"
(namespace -vm, 10.9.0.1) and a peer (-peer, 10.9.0.2) on a bridge in a third
(-sw), whose port to the VM (pv) gets the policy from portpol-tool.

An outbound-only ACL (out: allow tcp 8080, udp 53, icmp; in: deny all):
stateless, the VM's own connection gets no answer; stateful, the answers
pass while new connections from the peer (TCP, UDP, ping) are refused and
counted. The reverse (in: allow tcp 2222; out: deny all) serves the peer's
connection and still keeps the VM from opening its own. Turning state off
forgets the flows. Nothing is left (nft, namespaces), also on failure.

Usage: test_stateful.py PORTPOL_TOOL"""
import json
import os
import subprocess
import sys
import time
import uuid

TOOL = None
RUN = uuid.uuid4().hex[:6]
NS = f"cella-t-sf-{RUN}"
SW, VM, PEER = NS + "-sw", NS + "-vm", NS + "-peer"
VM_IP, PEER_IP = "10.9.0.1", "10.9.0.2"
VM_MAC = "02:00:00:00:5f:01"
V6 = {"v": "fd00:9::1", "p": "fd00:9::2"}
FAILED = []
PROCS = []

SERVER = r"""
import socket, sys, threading
proto, port = sys.argv[1], int(sys.argv[2])
if proto == "tcp":  # IPv4 and IPv6
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(8); print("ready", flush=True)
    while True:
        c, _ = s.accept(); c.settimeout(5)
        try:
            c.sendall(b"ECHO:" + c.recv(100))
        except OSError:
            pass
        c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        d, a = s.recvfrom(100)
        print("got", d.decode(), flush=True)
        s.sendto(b"ECHO:" + d, a)
"""

CLIENT = r"""
import socket, struct, sys
proto, ip, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
try:
    if proto == "icmp":  # no ping(8) on every host: an echo request by hand
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(2)
        def csum(b):
            t = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))
            t = (t & 0xffff) + (t >> 16)
            return ~((t & 0xffff) + (t >> 16)) & 0xffff
        body = struct.pack("!BBHHH", 8, 0, 0, 0x5f5f, 1) + msg
        s.sendto(body[:2] + struct.pack("!H", csum(body)) + body[4:], (ip, 0))
        while True:
            d, a = s.recvfrom(200)
            h = (d[0] & 15) * 4
            if a[0] == ip and d[h] == 0 and d[h + 4:h + 6] == b"\x5f\x5f":
                print("ECHO:" + d[h + 8:].decode()); break
    elif proto == "tcp":
        s = socket.create_connection((ip, port), timeout=3); s.settimeout(3)
        s.sendall(msg); print(s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.sendto(msg, (ip, port)); print(s.recvfrom(100)[0].decode())
except OSError as e:
    print("ERR", e)
"""


def sh(cmd, ns=None, check=True, timeout=60):
    full = (["ip", "netns", "exec", ns] if ns else []) + cmd
    r = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(full)}: rc {r.returncode}: {r.stderr.strip()}")
    return r


def report(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        FAILED.append(what)


def tool(*args, check=True):
    r = sh([TOOL] + list(args), ns=SW, check=False)
    if check and r.returncode:
        raise RuntimeError(f"portpol-tool {' '.join(args)}: {r.stderr.strip()}")
    return r


def server(ns, proto, port):
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-u", "-c", SERVER, proto,
                          str(port)], stdout=subprocess.PIPE, text=True)
    PROCS.append(p)
    line = p.stdout.readline()
    if "ready" not in line:
        raise RuntimeError(f"{proto} server on {port} in {ns} did not start")
    return p


def client(ns, proto, ip, port, msg):
    """The echoed text, or "" when nothing came back."""
    out = sh([sys.executable, "-c", CLIENT, proto, ip, str(port), msg], ns=ns).stdout.strip()
    return out if out.startswith("ECHO:") else ""


def ping(ns, ip):
    return client(ns, "icmp", ip, 0, "ping") == "ECHO:ping"


def topology():
    for ns in (SW, VM, PEER):
        sh(["ip", "netns", "add", ns])
    sh(["ip", "link", "add", "br0", "type", "bridge"], ns=SW)
    for side, ns, ip in (("v", VM, VM_IP), ("p", PEER, PEER_IP)):
        sh(["ip", "link", "add", "p" + side, "type", "veth", "peer", "name", "x" + side], ns=SW)
        sh(["ip", "link", "set", "x" + side, "netns", ns], ns=SW)
        sh(["ip", "link", "set", "p" + side, "master", "br0", "up"], ns=SW)
        if side == "v":
            sh(["ip", "link", "set", "xv", "address", VM_MAC], ns=ns)
        sh(["ip", "addr", "add", ip + "/24", "dev", "x" + side], ns=ns)
        sh(["ip", "addr", "add", V6[side] + "/64", "dev", "x" + side, "nodad"], ns=ns)
        sh(["ip", "link", "set", "x" + side, "up"], ns=ns)
        sh(["ip", "link", "set", "lo", "up"], ns=ns)
    sh(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], ns=SW)
    sh(["ip", "link", "set", "br0", "up"], ns=SW)
    # Both sides know each other before the ACLs (ARP passes them anyway).
    deadline = time.time() + 30
    while not ping(VM, PEER_IP):
        if time.time() > deadline:
            raise RuntimeError("no connectivity between the namespaces without a policy")


OUT_ONLY = [
    {"direction": "out", "action": "allow", "protocol": "tcp", "port": 8080},
    {"direction": "out", "action": "allow", "protocol": "udp", "port": 53},
    {"direction": "out", "action": "allow", "protocol": "icmp"},
    {"direction": "in", "action": "deny"},
]
IN_ONLY = [
    {"direction": "in", "action": "allow", "protocol": "tcp", "port": 2222},
    {"direction": "out", "action": "deny"},
]


def apply(policy):
    return json.loads(tool("apply", "pv", VM_MAC, "-", json.dumps(policy)).stdout)


def flows():
    r = sh(["nft", "list", "set", "bridge", "cella", "p_pv_f4"], ns=SW, check=False)
    return r.stdout


def scenario():
    server(PEER, "tcp", 8080)
    server(PEER, "udp", 53)
    server(VM, "tcp", 2222)
    udp_vm = server(VM, "udp", 5353)

    got = apply({"acl": OUT_ONLY})
    report("stateful" not in got, f"policy without state: {got}")
    report(client(VM, "tcp", PEER_IP, 8080, "a") == "",
           "stateless outbound-only ACL: the VM's own TCP connection gets no answer")

    got = apply({"acl": OUT_ONLY, "stateful": True})
    report(got.get("stateful") is True, "the policy reads back stateful")
    report(client(VM, "tcp", PEER_IP, 8080, "b") == "ECHO:b",
           "stateful: the VM's TCP connection to the peer's 8080 is answered")
    report("10.9.0.1 . 10.9.0.2 . tcp" in flows(),
           "the flow is in the port's set, VM side first: " + flows().replace("\n", " ")[-160:])
    report(client(VM, "udp", PEER_IP, 53, "c") == "ECHO:c",
           "stateful: the answer to the VM's UDP datagram to port 53 comes back")
    report(ping(VM, PEER_IP), "stateful: the VM's ping is answered")
    before = json.loads(tool("counters", "pv").stdout)["drops"]["acl"]
    report(client(PEER, "tcp", VM_IP, 2222, "d") == "",
           "stateful: a new TCP connection from the peer to the VM is refused")
    report(client(PEER, "udp", VM_IP, 5353, "e") == "",
           "stateful: an unsolicited UDP datagram from the peer does not reach the VM")
    report(not ping(PEER, VM_IP), "stateful: the peer's ping does not reach the VM")
    after = json.loads(tool("counters", "pv").stdout)["drops"]["acl"]
    report(after > before, f"the refusals are counted as acl drops ({before} -> {after})")
    # IPv6: neighbour discovery passes the deny, the flow goes in the v6 set.
    report(client(VM, "tcp", V6["p"], 8080, "v6") == "ECHO:v6",
           "stateful over IPv6: the VM's connection is answered (ND passes the ACL)")
    report(client(PEER, "tcp", V6["v"], 2222, "v6in") == "",
           "stateful over IPv6: the peer's new connection to the VM is refused")
    # Flows of the VM's own go on after a refused inbound attempt.
    report(client(VM, "tcp", PEER_IP, 8080, "f") == "ECHO:f", "the VM's next connection works")

    apply({"acl": IN_ONLY, "stateful": True})
    report(client(PEER, "tcp", VM_IP, 2222, "g") == "ECHO:g",
           "stateful in-only ACL: the peer's connection to the VM's 2222 is served")
    report(client(VM, "tcp", PEER_IP, 8080, "h") == "",
           "stateful in-only ACL: the VM cannot open its own connection")

    apply({"acl": OUT_ONLY})
    report("elements" not in flows(), "turning state off empties the flow set")
    report(client(VM, "tcp", PEER_IP, 8080, "i") == "",
           "stateless again: the VM's connection gets no answer")
    udp_vm.kill()
    udp_vm.wait()
    seen = udp_vm.stdout.read()
    report("got e" not in seen, f"the VM's UDP listener never saw the peer's datagram ({seen!r})")

    tool("remove", "pv")
    rs = sh(["nft", "list", "ruleset"], ns=SW).stdout
    report("cella" not in rs, "removed: nothing of cella's in nft")


def main():
    global TOOL
    TOOL = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces, nftables)")
        return 77
    try:
        topology()
        scenario()
    except Exception as e:  # noqa: BLE001 - report, then clean up
        report(False, f"scenario: {e}")
    finally:
        for p in PROCS:
            p.kill()
            p.wait()
        for ns in (SW, VM, PEER):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    print(f"{len(FAILED)} failed" if FAILED else "all passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
