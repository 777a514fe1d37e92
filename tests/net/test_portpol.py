#!/usr/bin/env python3
"""test_portpol.py: port policies (daemon/net/portpol*.c) on the host's own
nftables and tc, driven by portpol-tool in network namespaces this test
makes. veth pairs stand in for taps: the bridge side (pX) is the port, the
other side (vX) is "the VM", where raw sockets send crafted frames (spoofed
MACs, rogue DHCP offers, router advertisements, 802.1Q tags) and watch what
arrives. A negative ("this frame is not delivered") is shown by a sentinel
frame sent after it on the same path arriving alone.

Usage: test_portpol.py PORTPOL_TOOL"""
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import uuid

TOOL = None
RUN = uuid.uuid4().hex[:6]
NS = f"cella-t-pp-{RUN}"
NS_A, NS_B, NS_U = NS + "-a", NS + "-b", NS + "-u"
FAILED = []


def sh(cmd, ns=None, check=True, capture=True, timeout=120):
    full = (["ip", "netns", "exec", ns] if ns else []) + cmd
    r = subprocess.run(full, capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(full)}: rc {r.returncode}: {r.stderr.strip()}")
    return r


def tool(*args, check=True):
    r = sh([TOOL] + list(args), check=False)
    if check and r.returncode:
        raise RuntimeError(f"portpol-tool {' '.join(args)}: {r.stderr.strip()}")
    return r


def apply(port, mac, policy, uplink="-", check=True):
    return tool("apply", port, mac, uplink, json.dumps(policy), check=check)


def counters(port):
    return json.loads(tool("counters", port).stdout)


def report(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok and os.environ.get("PP_DEBUG"):
        import traceback; traceback.print_stack(limit=2)
    if not ok:
        FAILED.append(what)


def mac_b(m):
    return bytes(int(x, 16) for x in m.split(":"))


def eth(dst, src, etype, payload, vid=None):
    tag = struct.pack("!HH", 0x8100, vid) if vid else b""
    return mac_b(dst) + mac_b(src) + tag + struct.pack("!H", etype) + payload


def ipv4(src, dst, proto, l4):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    # A valid header checksum: with br_netfilter loaded, the bridge drops
    # IPv4 frames whose header does not check.
    c = sum(struct.unpack("!10H", h))
    c = (c & 0xffff) + (c >> 16)
    c = ~((c & 0xffff) + (c >> 16)) & 0xffff
    return h[:10] + struct.pack("!H", c) + h[12:] + l4


def udp(sport, dport, data):
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def tcp(sport, dport, data):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 8192, 0, 0) + data


def ipv6(src, dst, nh, l4):
    return (struct.pack("!IHBB", 0x60000000, len(l4), nh, 255) + socket.inet_pton(socket.AF_INET6, src)
            + socket.inet_pton(socket.AF_INET6, dst) + l4)


def arp(smac, sip, tip):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac_b(smac), socket.inet_aton(sip),
                       b"\0" * 6, socket.inet_aton(tip))


BCAST = "ff:ff:ff:ff:ff:ff"
MAC = {"a": "02:00:00:00:00:0a", "b": "02:00:00:00:00:0b", "c": "02:00:00:00:00:0c",
       "m": "02:00:00:00:00:0d", "u": "02:00:00:00:00:0e"}


class Wire:
    """Raw sockets on the VM sides (vX), opened inside NS."""

    def __init__(self, names):
        self.s = {}
        for n in names:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
            s.bind(("v" + n, 0))
            s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA: the VLAN tag the kernel took off
            s.setblocking(False)
            self.s[n] = s

    def send(self, n, frame):
        self.s[n].send(frame)

    def drain(self):
        for s in self.s.values():
            while True:
                try:
                    s.recv(65536)
                except BlockingIOError:
                    break

    def seen(self, n, markers, until, deadline=15.0):
        """Frames carrying each marker that reach vN, read until the frame
        with marker `until` arrives (or the deadline passes)."""
        got = {m: [] for m in markers}
        end = time.monotonic() + deadline
        s = self.s[n]
        done = False
        while not done and time.monotonic() < end:
            r, _, _ = select.select([s], [], [], 0.2)
            if not r:
                continue
            while True:
                try:
                    data, anc, _, addr = s.recvmsg(65536, 256)
                except BlockingIOError:
                    break
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                for lvl, typ, val in anc:
                    if lvl == 263 and typ == 8 and len(val) >= 20:
                        status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", val[:20])
                        if status & 0x10:  # TP_STATUS_VLAN_VALID: put the tag back
                            data = data[:12] + struct.pack("!HH", tpid or 0x8100, tci) + data[12:]
                for m in markers:
                    if m in data:
                        got[m].append(data)
                        if m == until:
                            done = True
        return got


def check_sent(w, src, frames, dst, sentinel):
    """Send frames (marker, bytes) from src, then sentinel=(marker, bytes);
    return {marker: [frames that reached dst]}."""
    w.drain()
    for _, f in frames:
        w.send(src, f)
    w.send(src, sentinel[1])
    got = w.seen(dst, [m for m, _ in frames] + [sentinel[0]], sentinel[0])
    if os.environ.get("PP_DEBUG"):
        print("  seen on", dst, {k.decode(): len(v) for k, v in got.items()})
    return got


def enter(ns):
    """Move this process (and so its raw sockets and children) into ns."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)


def topology():
    sh(["ip", "netns", "add", NS])
    enter(NS)
    sh(["ip", "link", "add", "br0", "type", "bridge"])
    for n in "abcmu":
        sh(["ip", "link", "add", "v" + n, "type", "veth", "peer", "name", "p" + n])
        sh(["ip", "link", "set", "v" + n, "address", MAC[n]])
        sh(["ip", "link", "set", "p" + n, "master", "br0"])
        sh(["ip", "link", "set", "p" + n, "up"])
        sh(["ip", "link", "set", "v" + n, "up"])
        sh(["sysctl", "-qw", f"net.ipv6.conf.v{n}.disable_ipv6=1"])
    sh(["ip", "link", "set", "br0", "up"])


def leftovers():
    """What of cella's is on the host: nft tables, qdiscs, IFBs."""
    out = []
    rs = sh(["nft", "list", "ruleset"]).stdout
    if "cella" in rs:
        out.append("nft: " + rs.strip())
    qd = sh(["tc", "qdisc", "show"]).stdout
    for line in qd.splitlines():
        if " htb " in line or "ingress" in line:
            out.append("tc: " + line)
    links = sh(["ip", "-o", "link", "show"]).stdout
    for line in links.splitlines():
        if ": cif" in line:
            out.append("link: " + line)
    return out


def test_guards(w):
    a, b = MAC["a"], MAC["b"]
    apply("pa", a, {"ip_guard": ["10.0.0.1", "fd00::/64"], "dhcp_guard": True, "router_guard": True})
    apply("pb", b, {})
    ok = lambda m: (m, eth(b, a, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, m))))
    # mac_guard (on by default)
    spoof = eth(b, "02:00:00:00:00:99", 0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"MACSPOOF")))
    got = check_sent(w, "a", [(b"MACSPOOF", spoof)], "b", ok(b"SENT1"))
    report(got[b"SENT1"] and not got[b"MACSPOOF"], "mac_guard: a frame with another source MAC is dropped")
    # ip_guard: IPv4 source, ARP sender, IPv6 source
    f1 = eth(b, a, 0x0800, ipv4("10.0.0.9", "10.0.0.2", 17, udp(1, 2, b"IPSPOOF4")))
    f2 = eth(BCAST, a, 0x0806, arp(a, "10.0.0.9", "10.0.0.2") + b"ARPSPOOF")
    f3 = eth(b, a, 0x86DD, ipv6("fd01::1", "fd00::2", 17, udp(1, 2, b"IPSPOOF6")))
    f4 = eth(b, a, 0x86DD, ipv6("fd00::1", "fd00::2", 17, udp(1, 2, b"IPOK6")))
    f5 = eth(BCAST, a, 0x0806, arp(a, "10.0.0.1", "10.0.0.2") + b"ARPOK")
    got = check_sent(w, "a", [(b"IPSPOOF4", f1), (b"ARPSPOOF", f2), (b"IPSPOOF6", f3), (b"IPOK6", f4),
                              (b"ARPOK", f5)], "b", ok(b"SENT2"))
    report(got[b"SENT2"] and not got[b"IPSPOOF4"] and not got[b"ARPSPOOF"] and not got[b"IPSPOOF6"],
           "ip_guard: IPv4, ARP and IPv6 from addresses not allowed are dropped")
    report(bool(got[b"IPOK6"]) and bool(got[b"ARPOK"]), "ip_guard: allowed IPv6 and ARP pass")
    # ND spoofing: a neighbour advertisement for an address not allowed
    na = lambda tgt, m: eth(BCAST, a, 0x86DD, ipv6("fe80::a", "ff02::1", 58, struct.pack(
        "!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, tgt) + m))
    got = check_sent(w, "a", [(b"NASPOOF", na("fd05::7", b"NASPOOF")), (b"NAOK", na("fd00::1", b"NAOK"))],
                     "b", ok(b"SENT3"))
    report(got[b"SENT3"] and not got[b"NASPOOF"] and got[b"NAOK"],
           "ip_guard: a neighbour advertisement for another's address is dropped, its own passes")
    # dhcp_guard: a DHCP offer (UDP 67 -> 68) and a DHCPv6 reply (547 -> 546) from the VM
    offer = eth(BCAST, a, 0x0800, ipv4("10.0.0.1", "255.255.255.255", 17, udp(67, 68, b"\x02DHCPOFFER")))
    v6rep = eth(b, a, 0x86DD, ipv6("fd00::1", "fd00::2", 17, udp(547, 546, b"DHCP6REPLY")))
    got = check_sent(w, "a", [(b"DHCPOFFER", offer), (b"DHCP6REPLY", v6rep)], "b", ok(b"SENT4"))
    report(got[b"SENT4"] and not got[b"DHCPOFFER"] and not got[b"DHCP6REPLY"],
           "dhcp_guard: a rogue DHCP offer and DHCPv6 reply are dropped")
    # router_guard: an RA and an ICMPv4 redirect
    ra = eth("33:33:00:00:00:01", a, 0x86DD, ipv6("fe80::a", "ff02::1", 58,
                                                  struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + b"RTADV"))
    redir = eth(b, a, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 1, struct.pack("!BBHI", 5, 1, 0, 0) + b"REDIR4"))
    got = check_sent(w, "a", [(b"RTADV", ra), (b"REDIR4", redir)], "b", ok(b"SENT5"))
    report(got[b"SENT5"] and not got[b"RTADV"] and not got[b"REDIR4"],
           "router_guard: a router advertisement and an ICMP redirect are dropped")
    c = counters("pa")
    d = c["drops"]
    report(d["mac_spoof"] >= 1 and d["ip_spoof"] >= 4 and d["dhcp_guard"] >= 2 and d["router_guard"] >= 2
           and c["rx_packets"] >= 10, f"counters by reason: {c}")
    # Without the guards the same frames pass (the rules did it).
    apply("pa", a, {"mac_guard": False})
    got = check_sent(w, "a", [(b"MACSPOOF", spoof), (b"DHCPOFFER", offer), (b"RTADV", ra)], "b", ok(b"SENT6"))
    report(all(got[k] for k in (b"MACSPOOF", b"DHCPOFFER", b"RTADV", b"SENT6")),
           "a changed policy (guards off) on the running port lets them through")


def test_acl(w):
    a, b = MAC["a"], MAC["b"]
    apply("pa", a, {"acl": [
        {"direction": "out", "action": "deny", "remote": "10.0.0.2/32", "protocol": "tcp", "port": 80},
        {"direction": "in", "action": "allow", "protocol": "udp", "port": "5000-5001"},
        {"direction": "in", "action": "allow", "protocol": "icmp", "remote": "10.0.0.0/24"}]})
    apply("pb", b, {})
    t80 = eth(b, a, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1000, 80, b"TCP80")))
    t81 = eth(b, a, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1000, 81, b"TCP81")))
    t80o = eth(b, a, 0x0800, ipv4("10.0.0.1", "10.0.0.3", 6, tcp(1000, 80, b"OTHERHOST")))
    sent = (b"SENT7", eth(b, a, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"SENT7"))))
    got = check_sent(w, "a", [(b"TCP80", t80), (b"TCP81", t81), (b"OTHERHOST", t80o)], "b", sent)
    report(got[b"SENT7"] and not got[b"TCP80"] and got[b"TCP81"] and got[b"OTHERHOST"],
           "acl out deny tcp 10.0.0.2:80: that is dropped, port 81 and another host pass")
    u5000 = eth(a, b, 0x0800, ipv4("10.0.0.2", "10.0.0.1", 17, udp(9, 5000, b"UDP5000")))
    u5002 = eth(a, b, 0x0800, ipv4("10.0.0.2", "10.0.0.1", 17, udp(9, 5002, b"UDP5002")))
    icmp_in = eth(a, b, 0x0800, ipv4("10.0.0.2", "10.0.0.1", 1, struct.pack("!BBHI", 8, 0, 0, 0) + b"PING1"))
    icmp_far = eth(a, b, 0x0800, ipv4("10.1.0.2", "10.0.0.1", 1, struct.pack("!BBHI", 8, 0, 0, 0) + b"PING2"))
    arp_in = eth(BCAST, b, 0x0806, arp(b, "10.0.0.2", "10.0.0.1") + b"ARPIN")
    sent = (b"SENT8", eth(a, b, 0x0800, ipv4("10.0.0.2", "10.0.0.1", 17, udp(9, 5001, b"SENT8"))))
    got = check_sent(w, "b", [(b"UDP5000", u5000), (b"UDP5002", u5002), (b"PING1", icmp_in),
                              (b"PING2", icmp_far), (b"ARPIN", arp_in)], "a", sent)
    report(got[b"SENT8"] and got[b"UDP5000"] and not got[b"UDP5002"] and got[b"PING1"] and not got[b"PING2"]
           and got[b"ARPIN"], "acl in allow udp 5000-5001 + icmp from 10.0.0.0/24: the rest of IP dropped, "
           "ARP passes")
    report(counters("pa")["drops"]["acl"] >= 3, "acl drops counted")


def test_vlan(w):
    a, b, c = MAC["a"], MAC["b"], MAC["c"]
    apply("pa", a, {"vlan": 10})
    apply("pb", b, {"vlan": {"access": 20}})
    apply("pc", c, {"vlan": {"trunk": [10, 20]}})
    data = lambda m: ipv4("10.0.0.1", "10.0.0.255", 17, udp(1, 2, m))
    f10 = eth(BCAST, a, 0x0800, data(b"A10"), vid=10)
    f20 = eth(BCAST, a, 0x0800, data(b"A20"), vid=20)
    fut = eth(BCAST, a, 0x0800, data(b"AUNTAG"))
    sent_c = (b"SENTC", eth(BCAST, a, 0x0800, data(b"SENTC"), vid=10))
    got = check_sent(w, "a", [(b"A10", f10), (b"A20", f20), (b"AUNTAG", fut)], "c", sent_c)
    tagged = got[b"A10"] and struct.unpack("!HH", got[b"A10"][0][12:16]) == (0x8100, 10)
    report(bool(tagged) and not got[b"A20"] and not got[b"AUNTAG"],
           "access port 10: its tagged frame reaches the trunk with tag 10; tag 20 and untagged are dropped")
    # B (VLAN 20) must not see A's VLAN 10 frame: sentinel from the trunk on VLAN 20.
    w.drain()
    w.send("a", f10)
    w.send("c", eth(BCAST, c, 0x0800, data(b"C20"), vid=20))
    got = w.seen("b", [b"A10", b"C20"], b"C20")
    report(got[b"C20"] and not got[b"A10"], "VLAN 10 and 20 do not meet: B sees the trunk's VLAN 20 frame, "
           "not A's VLAN 10 one")
    w.drain()
    w.send("b", eth(BCAST, b, 0x0800, data(b"B20"), vid=20))
    w.send("c", eth(BCAST, c, 0x0800, data(b"C10"), vid=10))
    got_a = w.seen("a", [b"B20", b"C10"], b"C10")
    got_c = w.seen("c", [b"B20"], b"B20")
    report(got_a[b"C10"] and not got_a[b"B20"] and got_c[b"B20"],
           "the trunk sees VLAN 20 from B; A (VLAN 10) gets the trunk's VLAN 10 only")
    # A port without a VLAN neither sends nor receives tagged frames.
    apply("pb", b, {})
    w.drain()
    w.send("b", eth(BCAST, b, 0x0800, data(b"BTAG10"), vid=10))
    w.send("c", eth(BCAST, c, 0x0800, data(b"C10B"), vid=10))
    got = w.seen("a", [b"BTAG10", b"C10B"], b"C10B")
    report(got[b"C10B"] and not got[b"BTAG10"], "an untagged port cannot inject into VLAN 10")
    report(counters("pa")["drops"]["vlan"] >= 2 and counters("pb")["drops"]["vlan"] >= 1, "vlan drops counted")


def test_mirror(w):
    a, b = MAC["a"], MAC["b"]
    # Alone (nft dup both ways), then with limits both ways (the VM's frames
    # are copied by tc before the redirect to the IFB).
    for pol, what in (({"mirror_to": "pm"}, "nft dup"),
                      ({"mirror_to": "pm", "bandwidth": {"max_in": "10M", "max_out": "10M"}},
                       "with max_in/max_out")):
        apply("pa", a, pol)
        apply("pb", b, {})
        w.drain()
        w.send("a", eth(b, a, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"MIRA2B"))))
        w.send("b", eth(a, b, 0x0800, ipv4("10.0.0.2", "10.0.0.1", 17, udp(1, 2, b"MIRB2A"))))
        got = w.seen("m", [b"MIRA2B", b"MIRB2A"], b"MIRB2A")
        if not got[b"MIRA2B"]:
            got.update({k: v for k, v in w.seen("m", [b"MIRA2B"], b"MIRA2B", 3).items() if v})
        report(got[b"MIRA2B"] and got[b"MIRB2A"], f"mirroring ({what}): the monitor port gets copies both ways")
    apply("pa", a, {})
    nd = sh(["nft", "list", "table", "netdev", "cella"], check=False)
    qd = sh(["tc", "filter", "show", "dev", "pa", "ingress"]).stdout
    report(nd.returncode != 0 and "mirred" not in qd, "mirroring off: its netdev table and tc actions are gone")


def test_remove_and_rollback():
    a = MAC["a"]
    apply("pa", a, {"dhcp_guard": True, "bandwidth": {"max_in": "20M"}})
    r = apply("pa", a, {"bandwidth": {"max_in": "10M", "max_out": "10M"}, "mirror_to": "nosuch0"}, check=False)
    report(r.returncode == 1 and r.stderr.startswith("policy.mirror_to:"),
           f"a policy nftables refuses is refused with its field: {r.stderr.strip()}")
    rules = sh(["nft", "list", "chain", "bridge", "cella", "p_pa_in"]).stdout
    qd = sh(["tc", "qdisc", "show", "dev", "pa"]).stdout
    links = sh(["ip", "-o", "link", "show"]).stdout
    report("udp sport 67" in rules and " htb " not in qd and "ingress" not in qd and ": cif" not in links,
           "after the failed change (refused on the tc side): the old nft rules stay, nothing of the new tc")
    # Refused by nftables itself, after tc was put on: tc is taken off again.
    r = apply("pa", a, {"bandwidth": {"max_in": "10M"}, "mirror_to": "nosuch0"}, check=False)
    rules = sh(["nft", "list", "chain", "bridge", "cella", "p_pa_in"]).stdout
    qd = sh(["tc", "qdisc", "show", "dev", "pa"]).stdout
    report(r.returncode == 1 and "policy.mirror_to" in r.stderr and "udp sport 67" in rules and
           " htb " not in qd, "after the failed change (refused by nftables): the old nft rules stay, "
           "the new HTB is gone")
    for p in "abc":
        tool("remove", "p" + p, "pu")
    left = leftovers()
    report(not left, f"after portpol_remove nothing is left: {left}")
    # A first apply that fails leaves nothing either.
    r = apply("pa", a, {"bandwidth": {"max_in": "10M", "max_out": "10M", "min": "5M", "link": "100M"},
                        "mirror_to": "nosuch0"}, uplink="pu", check=False)
    left = leftovers()
    report(r.returncode == 1 and not left, f"a failed first apply leaves nothing: {left}")
    r = apply("pa", a, {"bandwidth": {"min": "5M"}}, check=False)
    report(r.returncode == 1 and r.stderr.startswith("policy.bandwidth.min:") and not leftovers(),
           f"a reservation without an uplink is refused: {r.stderr.strip()}")
    r = apply("pa", a, {"bandwidth": {"min": "50G"}}, uplink="pu", check=False)
    report(r.returncode == 1 and "policy.bandwidth.min" in r.stderr, f"past the link: {r.stderr.strip()}")
    r = apply("pa", a, {"bandwidth": {"max_out": "12G"}}, uplink="pu", check=False)
    report(r.returncode == 1 and "policy.bandwidth.max_out" in r.stderr and not leftovers(),
           f"a maximum past the uplink's speed (veth: 10G): {r.stderr.strip()}")


def tcp_rate(src_ns, dst_ip, seconds, port, extra=()):
    """Run iperf3 from src_ns; return its JSON."""
    r = sh(["iperf3", "-c", dst_ip, "-p", str(port), "-t", str(seconds), "-J", "-O", "2"] + list(extra),
           ns=src_ns, check=False, timeout=seconds + 60)
    return json.loads(r.stdout) if r.stdout.strip().startswith("{") else {"error": r.stderr}


def start_iperf(ns, port):
    p = subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-s", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p


def wait_listen(ns, port, deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if f":{port} " in sh(["ss", "-ltn"], ns=ns).stdout:
            return True
        time.sleep(0.1)
    return False


def link_bytes(dev, what):
    """rx_bytes/tx_bytes of dev (this netns: /sys shows the one it was mounted in)."""
    st = json.loads(sh(["ip", "-j", "-s", "link", "show", "dev", dev]).stdout)[0]["stats64"]
    return int(st[what[:2]]["bytes"])


def measure(dev, what, src_ns, dst_ip, port, window=6.0):
    """L2 bits/s through dev over a window of an iperf3 run's steady part
    (after 2 s of warm-up; the sleeps time the window, they wait for nothing)."""
    import threading
    out = {}
    th = threading.Thread(target=lambda: out.update(r=tcp_rate(src_ns, dst_ip, int(window) + 4, port)))
    th.start()
    time.sleep(2.5)
    b0, t0 = link_bytes(dev, what), time.monotonic()
    time.sleep(window)
    b1, t1 = link_bytes(dev, what), time.monotonic()
    th.join()
    return (b1 - b0) * 8 / (t1 - t0), out.get("r", {})


def contend(window=6.0):
    """A (1 stream) and B (4 streams) to U through the uplink at once: their
    L2 rates (bits/s sent from the ports) over a window of the steady part."""
    import threading
    th = [threading.Thread(target=tcp_rate, args=(NS_A, "10.0.0.100", int(window) + 5, 5202)),
          threading.Thread(target=tcp_rate, args=(NS_B, "10.0.0.100", int(window) + 5, 5203, ["-P", "4"]))]
    for t in th:
        t.start()
    time.sleep(3)
    a0, b0, t0 = link_bytes("pa", "rx_bytes"), link_bytes("pb", "rx_bytes"), time.monotonic()
    time.sleep(window)
    a1, b1, t1 = link_bytes("pa", "rx_bytes"), link_bytes("pb", "rx_bytes"), time.monotonic()
    for t in th:
        t.join()
    return (a1 - a0) * 8 / (t1 - t0), (b1 - b0) * 8 / (t1 - t0)


def test_bandwidth():
    """A (10.0.0.1) and B (10.0.0.2) in namespaces of their own; U
    (10.0.0.100) behind the uplink pu."""
    for n, ns, ip in (("a", NS_A, "10.0.0.1"), ("b", NS_B, "10.0.0.2"), ("u", NS_U, "10.0.0.100")):
        sh(["ip", "netns", "add", ns])
        sh(["ip", "link", "set", "v" + n, "netns", ns])
        sh(["ip", "addr", "add", ip + "/24", "dev", "v" + n], ns=ns)
        sh(["ip", "link", "set", "v" + n, "up"], ns=ns)
        sh(["ip", "link", "set", "lo", "up"], ns=ns)
        # No segmentation offloads: the link counters then count the frames
        # HTB shapes (a GSO frame counts its headers once there, on the wire
        # once per segment).
        sh(["ethtool", "-K", "v" + n, "tso", "off", "gso", "off"], ns=ns)
    servers = [start_iperf(NS_B, 5201), start_iperf(NS_U, 5202), start_iperf(NS_U, 5203)]
    try:
        for ns, port in ((NS_B, 5201), (NS_U, 5202), (NS_U, 5203)):
            if not wait_listen(ns, port):
                raise RuntimeError("iperf3 did not start")
        # max_out on A (the tap's ingress, via the IFB): A -> B
        apply("pa", MAC["a"], {"bandwidth": {"max_out": "40M"}})
        apply("pb", MAC["b"], {})
        rate, res = measure("pb", "tx_bytes", NS_A, "10.0.0.2", 5201)
        report(abs(rate - 40e6) / 40e6 <= 0.05, f"max_out 40 Mbit/s: {rate / 1e6:.2f} Mbit/s at L2 delivered "
               f"(iperf3 goodput {res.get('end', {}).get('sum_received', {}).get('bits_per_second', 0) / 1e6:.2f})")
        # max_in on B (the tap's egress): A -> B
        apply("pa", MAC["a"], {})
        apply("pb", MAC["b"], {"bandwidth": {"max_in": "30M", "burst": 30000}})
        rate, res = measure("pb", "tx_bytes", NS_A, "10.0.0.2", 5201)
        report(abs(rate - 30e6) / 30e6 <= 0.05, f"max_in 30 Mbit/s: {rate / 1e6:.2f} Mbit/s at L2 delivered")
        # min on the uplink (link 100M): A reserves 60M and sends one
        # stream while B, without a reservation, sends four.
        apply("pb", MAC["b"], {"bandwidth": {"min": "1M", "link": "100M"}}, uplink="pu")
        apply("pa", MAC["a"], {}, uplink="pu")
        base_a, base_b = contend()
        apply("pa", MAC["a"], {"bandwidth": {"min": "60M", "link": "100M"}}, uplink="pu")
        ra, rb = contend()
        report(ra >= 0.95 * 60e6 and ra + rb <= 1.05 * 100e6 and rb >= 1e6,
               f"min 60M of a 100M uplink under contention: A (1 stream) {ra / 1e6:.1f} Mbit/s, B (4 streams) "
               f"{rb / 1e6:.1f} Mbit/s; without A's reservation: A {base_a / 1e6:.1f}, "
               f"B {base_b / 1e6:.1f}")
        cls = sh(["tc", "-s", "class", "show", "dev", "pu"]).stdout
        report("ce00:1 " in cls, "the uplink's HTB classes: " + " | ".join(
            l.strip() for l in cls.splitlines() if l.startswith("class")))
    finally:
        for s in servers:
            s.terminate()
            s.wait()
        for p in "ab":
            tool("remove", "p" + p, "pu")
        left = leftovers()
        report(not left, f"bandwidth removed: {left}")


def inside():
    topology()
    w = Wire("abcm")
    for name, fn in (("guards", lambda: test_guards(w)), ("acl", lambda: test_acl(w)),
                     ("vlan", lambda: test_vlan(w)), ("mirror", lambda: test_mirror(w)),
                     ("rollback", test_remove_and_rollback)):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report and go on
            report(False, f"{name}: {e}")
        for p in "abc":
            tool("remove", "p" + p, "pu", check=False)
    if "--no-bw" not in sys.argv:
        try:
            test_bandwidth()
        except Exception as e:  # noqa: BLE001
            report(False, f"bandwidth: {e}")


def main():
    global TOOL
    TOOL = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces, nftables, tc)")
        return 77
    try:
        inside()
    finally:
        for ns in (NS_A, NS_B, NS_U, NS):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    print(f"{len(FAILED)} failed" if FAILED else "all passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
