#!/usr/bin/env python3
"""test_portpol.py: port policies through cellad (docs/networking.md "Port
policies"), with test guests on a private switch in a network namespace of
cellad's own:

- two guests with ip_guard (their own addresses) and dhcp_guard ping each
  other; the rules are in `nft list table bridge cella` under their ports;
- a guest answering for an address not in its ip_guard cannot be reached,
  and the drops are in /metrics as cella_port_drops_total{reason="ip_spoof"};
- a running port's policy changed with PATCH (a VLAN) is on the host at
  once, and a bad one is refused with its field;
- when the VMs stop, nothing of cella is left in nft or tc."""
import os
import re
import shutil

from cellad import Daemon, check, log, main, poll, sh, skip


def port_chain(d, name):
    uuid = d.vm(name)["uuid"].replace("-", "")
    return f"p_ct{uuid[:10]}_2e0"


def test_policies(d, ns):
    nft = lambda *a: sh("ip", "netns", "exec", ns, "nft", *a, check_rc=False)
    d.cli("switch", "create", "priv", "--type", "private")
    d.define("b", "net", "ip=10.77.0.3 serve=3",
             nics=[{"switch": "priv", "policy": {"ip_guard": ["10.77.0.3"], "dhcp_guard": True}}])
    d.define("a", "net", "ip=10.77.0.2 peer=10.77.0.3 count=3",
             nics=[{"switch": "priv", "policy": {"ip_guard": ["10.77.0.2/32"], "router_guard": True}}])
    d.action("b", "start")
    d.wait_console("b", "net: serving at 10.77.0.3", timeout=120)
    cb = port_chain(d, "b")
    rules = nft("list", "chain", "bridge", "cella", cb + "_in")
    check("udp sport 67" in rules and "ether saddr !=" in rules and f"@{cb}_a4" in rules,
          f"b's guards are in nft under its port ({cb}_in)")
    check("10.77.0.3" in nft("list", "set", "bridge", "cella", cb + "_a4"), "b's allowed address in its set")
    d.action("a", "start")
    out = d.wait_console("a", "PASS net", timeout=180)
    check("ok: ICMP echo reply 3 from 10.77.0.3" in out, "guests within their ip_guard ping each other")
    d.wait_console("b", "PASS net", timeout=120)
    for vm in ("a", "b"):
        d.wait_state(vm, ("stopped", "crashed"), timeout=60)

    # A guest using an address its policy does not allow: r answers as
    # 10.77.0.5 but may only use 10.77.0.50, so its ARP replies are dropped
    # and s cannot reach it. r keeps running, so its port's counters stay.
    d.define("r", "net", "ip=10.77.0.5 serve=1000 wait=900000",
             nics=[{"switch": "priv", "policy": {"ip_guard": ["10.77.0.50"]}}])
    d.define("s", "net", "ip=10.77.0.3 peer=10.77.0.5 count=1", nics=[{"switch": "priv"}])
    d.action("r", "start")
    d.wait_console("r", "net: serving", timeout=120)
    d.action("s", "start")
    out = d.wait_console("s", "FAIL net", timeout=180)
    check("not ok" in out, "a guest cannot reach one outside its ip_guard")
    metrics = d.get("/metrics").body
    m = re.search(r'cella_port_drops_total\{vm="r",switch="priv",port="[^"]+",reason="ip_spoof"\} (\d+)',
                  metrics)
    check(m and int(m.group(1)) >= 1, f"its drops in /metrics: {m.group(0) if m else None}")
    check('cella_port_rx_packets_total{vm="r"' in metrics, "the policy's packet counters in /metrics")
    d.wait_state("s", ("stopped", "crashed"), timeout=60)

    # A running port's policy changed live.
    cr = port_chain(d, "r")
    r = d.request("PATCH", "/v1/vms/r/nics/0", {"policy": {"vlan": {"trunk": [7, "9-11"]}, "dhcp_guard": True}})
    check(r.status == 200, f"PATCH a running port's policy: {r.status}")
    rules = nft("list", "chain", "bridge", "cella", cr + "_in")
    check("vlan id != { 7, 9-11 }" in rules and "udp sport 67" in rules, "the new policy is on the port at once")
    r = d.request("PATCH", "/v1/vms/r/nics/0", {"policy": {"acl": [
        {"direction": "in", "action": "deny"}, {"direction": "in", "action": "allow", "protocol": "tcp"}]}})
    check(r.status == 400 and r.json["error"]["field"] == "nics[0].policy.acl[1]",
          f"overlapping ACL entries refused: {r.json.get('error')}")
    check("vlan id != { 7, 9-11 }" in nft("list", "chain", "bridge", "cella", cr + "_in"),
          "a refused change leaves the port's rules")
    r = d.request("PATCH", "/v1/vms/r/nics/0", {"policy": {"bandwidth": {"max_in": "20M"}}})
    check(r.status == 200 and "htb" in sh("ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev",
                                          "ct" + cr[4:14] + ".0"), "max_in puts an HTB on the tap")
    d.action("r", "kill")
    d.wait_state("r", ("stopped", "crashed"), timeout=60)
    poll("the policy to go", lambda: "cella" not in nft("list", "ruleset"))
    check(" htb " not in sh("ip", "netns", "exec", ns, "tc", "qdisc", "show"), "nothing left in nft or tc")
    for vm in ("a", "b", "r", "s"):
        d.request("DELETE", f"/v1/vms/{vm}")
    d.cli("switch", "delete", "priv")


def test(args):
    if os.geteuid() != 0:
        skip("port policies need root (network namespaces, bridges, nftables)")
    if not shutil.which("nft") or not os.path.exists("/dev/net/tun"):
        skip("needs nft and /dev/net/tun")
    ns = f"cella-t-portpol-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        with Daemon(args, wrapper=["ip", "netns", "exec", ns]) as d:
            test_policies(d, ns)
    finally:
        sh("ip", "netns", "del", ns, check_rc=False)


main(test, need_root=True)
