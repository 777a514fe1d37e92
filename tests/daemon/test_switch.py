#!/usr/bin/env python3
"""test_switch.py: virtual switches (docs/networking.md), with cellad in a
network namespace of its own (nothing touches the host's interfaces):

- create, list, show and delete of each type, checked with `ip -d link`;
- refusals (name taken, missing, busy or bridge uplink, bad CIDR, bad type,
  VLAN out of range, unknown switch, delete in use) name the field, and a
  create that fails half way (loopback as uplink) leaves nothing: the
  namespace's links, bridge ports and nft ruleset are as before;
- VLANs: two guests on access VLAN 10 ping each other, a guest on VLAN 20
  gets no ARP answer from them (the worker tags, nftables enforces);
- two test guests on a private switch ping each other (the `net` guest, one
  as responder), and a guest there cannot reach an address of the host;
- a guest on an internal switch pings the bridge's address (the host);
- ports: the tap is on the bridge while the VM runs, per-port counters are in
  /metrics, and the tap is gone when the VM stops and when its worker is
  killed with SIGKILL;
- a simulated host reboot (bridges deleted, cellad restarted): the bridges,
  the internal address and a running VM's port are put back."""
import json
import os
import shutil
import signal
import subprocess

from cellad import Daemon, check, log, main, poll, sh, skip


class Netns:
    def __init__(self):
        self.name = f"cella-t-switch-{os.getpid()}"

    def __enter__(self):
        sh("ip", "netns", "add", self.name)
        return self

    def __exit__(self, *exc):
        sh("ip", "netns", "del", self.name, check_rc=False)
        return False

    def ip(self, *a, check_rc=True):
        return sh("ip", "-n", self.name, *a, check_rc=check_rc)

    def run(self, *a, check_rc=True):
        return sh("ip", "netns", "exec", self.name, *a, check_rc=check_rc)

    def links(self):
        return sorted(l.split(":")[1].strip().split("@")[0]
                      for l in self.ip("-o", "link", "show").splitlines())

    def snapshot(self):
        """What a refused create must leave as it was."""
        nft = self.run("nft", "list", "ruleset", check_rc=False) if shutil.which("nft") else ""
        return (self.links(), self.run("bridge", "link", "show", check_rc=False), nft)

    def master(self, dev):
        out = self.ip("-o", "link", "show", "dev", dev, check_rc=False)
        parts = out.split()
        return parts[parts.index("master") + 1] if "master" in parts else None


def refused(d, path, body, status, field, method="POST"):
    r = d.request(method, path, body)
    err = r.json.get("error", {}) if r.body else {}
    check(r.status == status and err.get("field") == field,
          f"{method} {path} {json.dumps(body)} -> {status} on {field} "
          f"(got {r.status}: {err.get('message')})")
    return err


def test_switches(d, ns):
    # Private: a bridge the host has no presence on.
    r = d.post("/v1/switches", {"name": "priv", "type": "private"})
    check(r.status == 201 and r.json["bridge"] == "cbr-priv", f"private switch created: {r}")
    check("bridge" in ns.ip("-d", "link", "show", "cbr-priv"), "cbr-priv is a Linux bridge")
    check(ns.run("cat", "/proc/sys/net/ipv6/conf/cbr-priv/disable_ipv6").strip() == "1" and
          ns.run("cat", "/proc/sys/net/ipv4/conf/cbr-priv/arp_ignore").strip() == "8",
          "private bridge: no IPv6, no ARP answers from the host")
    check("inet" not in ns.ip("addr", "show", "dev", "cbr-priv"), "private bridge has no address")
    # Internal, with the CLI.
    p = d.cli("switch", "create", "int0", "--type", "internal", "--address", "10.78.0.1/24")
    check("created" in p.stdout, "cella switch create int0 (internal)")
    check("10.78.0.1/24" in ns.ip("addr", "show", "dev", "cbr-int0"),
          "internal bridge carries the host's address")
    # External, on a veth of the namespace as uplink.
    ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    r = d.post("/v1/switches", {"name": "ext0", "type": "external", "uplink": "up0"})
    check(r.status == 201, f"external switch created: {r}")
    check(ns.master("up0") == "cbr-ext0", "the uplink is a port of cbr-ext0")
    # A long name: hashed into IFNAMSIZ.
    r = d.post("/v1/switches", {"name": "a-rather-long-switch-name", "type": "private"})
    check(r.status == 201 and len(r.json["bridge"]) <= 15 and
          r.json["bridge"] in ns.links(), f"long name -> bridge {r.json.get('bridge')}")
    check(d.request("DELETE", "/v1/switches/a-rather-long-switch-name").status == 204 and
          r.json["bridge"] not in ns.links(), "long-named switch deleted with its bridge")
    # Stateful ACLs by default (docs/networking.md "Stateful ACLs"): the
    # option is kept, and show says how this host tracks flows.
    d.cli("switch", "create", "sf0", "--type", "private", "--stateful")
    p = d.cli("--json", "switch", "show", "sf0")
    sf = json.loads(p.stdout)
    want = None  # what the kernel's configuration says, where it is readable
    try:
        cfg = subprocess.run(["zcat", "/proc/config.gz"], capture_output=True, text=True).stdout
        if "# CONFIG_NF_CONNTRACK_BRIDGE is not set" in cfg:
            want = False
        elif "CONFIG_NF_CONNTRACK_BRIDGE=y" in cfg:
            want = True
    except OSError:
        pass
    got = sf.get("stateful_acl", {})
    check(sf.get("stateful") is True and got.get("mechanism", "").startswith("flow sets") and
          got.get("conntrack_bridge") in ((want,) if want is not None else (False, True)),
          f"cella switch show: stateful, and how: {got} (kernel config: {want})")
    refused(d, "/v1/switches", {"name": "sf1", "type": "private", "stateful": "yes"}, 400,
            "stateful")
    check("cella_ct_probe" not in ns.run("nft", "list", "ruleset"), "the probe left no table")
    check(d.request("DELETE", "/v1/switches/sf0").status == 204, "stateful switch deleted")

    lst = d.get("/v1/switches").json["switches"]
    check(sorted(s["name"] for s in lst) == ["ext0", "int0", "priv"] and
          all(s["host"]["present"] and s["host"]["up"] for s in lst), "list: three, up")
    p = d.cli("switch", "list")
    check("ext0" in p.stdout and "up0" in p.stdout and "10.78.0.1/24" in p.stdout,
          "cella switch list shows uplink and address")

    # Refusals: the field and the reason, nothing left on the host.
    ns.ip("link", "add", "xbr0", "type", "bridge")  # someone else's bridge
    before = ns.snapshot()
    refused(d, "/v1/switches", {"name": "priv", "type": "private"}, 409, "name")
    refused(d, "/v1/switches", {"name": "x1", "type": "external", "uplink": "nope0"}, 400,
            "uplink")
    refused(d, "/v1/switches", {"name": "x1", "type": "external", "uplink": "up0"}, 409,
            "uplink")
    refused(d, "/v1/switches", {"name": "x1", "type": "external", "uplink": "cbr-priv"}, 400,
            "uplink")
    refused(d, "/v1/switches", {"name": "x1", "type": "external"}, 400, "uplink")
    refused(d, "/v1/switches", {"name": "x1", "type": "external", "uplink": "xbr0"}, 400,
            "uplink")
    refused(d, "/v1/switches", {"name": "x1", "type": "internal", "address": "10.1.2.300/24"},
            400, "address")
    refused(d, "/v1/switches", {"name": "x1", "type": "internal", "address": "10.1.2.3"},
            400, "address")
    refused(d, "/v1/switches", {"name": "x1", "type": "private", "address": "10.1.2.3/24"},
            400, "address")
    refused(d, "/v1/switches", {"name": "x1", "type": "hub"}, 400, "type")
    refused(d, "/v1/switches", {"name": "bad/name", "type": "private"}, 400, "name")
    refused(d, "/v1/switches", {"name": "x1", "type": "private", "colour": "red"}, 400, "colour")
    # Half way: the bridge is made, then the kernel refuses loopback as a
    # port: rolled back.
    err = refused(d, "/v1/switches", {"name": "rb", "type": "external", "uplink": "lo"}, 500,
                  "uplink")
    log(f"loopback uplink: {err.get('message')}")
    check(ns.snapshot() == before, "refused creates left no link, port or nft rule behind")
    ns.ip("link", "del", "xbr0")
    check("rb" not in [s["name"] for s in d.get("/v1/switches").json["switches"]],
          "refused switch not stored")
    refused(d, "/v1/vms", {"name": "bad", "kernel": d.args["guests"]["net"],
                           "nics": [{"switch": "priv", "vlan": 4095}]}, 400, "nics[0].vlan")
    refused(d, "/v1/vms", {"name": "bad", "kernel": d.args["guests"]["net"],
                           "nics": [{"switch": "priv", "vlan": 0}]}, 400, "nics[0].vlan")
    refused(d, "/v1/vms", {"name": "bad", "kernel": d.args["guests"]["net"],
                           "nics": [{"switch": "nosuch"}]}, 400, "nics[0].switch")
    refused(d, "/v1/vms", {"name": "bad", "kernel": d.args["guests"]["net"],
                           "nics": [{"switch": "priv", "tap": "t0"}]}, 400, "nics[0].switch")
    refused(d, "/v1/vms", {"name": "bad", "kernel": d.args["guests"]["net"],
                           "nics": [{"tap": "t0", "vlan": 5}]}, 400, "nics[0].vlan")


def vm_tap(d, name, i=0):
    uuid = d.vm(name)["uuid"].replace("-", "")
    return f"ct{uuid[:10]}.{i}"


def test_traffic(d, ns):
    net = "net"
    # Two guests on the private switch: b answers, a pings it.
    d.define("b", net, "ip=10.77.0.3 serve=3", nics=[{"switch": "priv"}])
    d.define("a", net, "ip=10.77.0.2 peer=10.77.0.3 count=3", nics=[{"switch": "priv"}])
    check(d.vm("a")["nics"] == [{"switch": "priv"}], "the NIC names its switch")
    d.action("b", "start")
    d.wait_console("b", "net: serving at 10.77.0.3", timeout=120)
    tb = vm_tap(d, "b")
    check(ns.master(tb) == "cbr-priv", f"b's port {tb} is on cbr-priv")
    check("ct" in ns.run("bridge", "link", "show"), "bridge link lists the port")
    show = d.get("/v1/switches/priv").json
    check({"vm": "b", "nic": 0, "tap": tb} in show["ports"] and "a" in show["vms"],
          "switch show: b's port, a and b as users")
    metrics = d.get("/metrics").body
    check(f'cella_port_tap_rx_packets_total{{vm="b",switch="priv",port="{tb}"}}' in metrics,
          "per-port counters in /metrics")
    refused(d, "/v1/switches/priv", None, 409, "name", method="DELETE")
    d.action("a", "start")
    out = d.wait_console("a", "PASS net", timeout=180)
    check("ok: ICMP echo reply 3 from 10.77.0.3" in out, "a pinged b across the private switch")
    d.wait_console("b", "PASS net", timeout=120)
    d.wait_state("a", ("stopped", "crashed"), timeout=60)
    d.wait_state("b", ("stopped", "crashed"), timeout=60)
    poll("the ports to go", lambda: not any(l.startswith("ct") for l in ns.links()))
    check(True, "ports removed when the VMs stopped")

    # The host is not reachable from a private switch: it has 10.77.0.1 on
    # another interface, which a weak-host ARP would otherwise answer.
    ns.ip("link", "add", "hv0", "type", "veth", "peer", "name", "hv1")
    ns.ip("addr", "add", "10.77.0.1/24", "dev", "hv0")
    ns.ip("link", "set", "hv0", "up")
    ns.ip("link", "set", "hv1", "up")
    d.define("c", net, "ip=10.77.0.2 peer=10.77.0.1 count=1", nics=[{"switch": "priv"}])
    d.action("c", "start")
    out = d.wait_console("c", "FAIL net", timeout=180)
    check("not ok: ARP reply from 10.77.0.1" in out, "a private switch does not reach the host")

    # VLANs through cellad: the worker tags with the port's access VLAN and
    # nftables lets only that tag in and out. v1 and v2 on VLAN 10 talk; v3
    # on VLAN 20 gets no ARP answer from v1's address.
    ns.ip("link", "del", "hv0")
    d.define("v1", net, "ip=10.77.0.3 serve=3", nics=[{"switch": "priv", "vlan": 10}])
    d.define("v2", net, "ip=10.77.0.2 peer=10.77.0.3 count=3",
             nics=[{"switch": "priv", "vlan": 10}])
    d.define("v3", net, "ip=10.77.0.4 peer=10.77.0.3 count=1",
             nics=[{"switch": "priv", "vlan": 20}])
    d.action("v1", "start")
    d.wait_console("v1", "net: serving at 10.77.0.3", timeout=120)
    d.action("v3", "start")
    out = d.wait_console("v3", "FAIL net", timeout=180)
    check("not ok: ARP reply from 10.77.0.3" in out, "VLAN 20 does not reach VLAN 10")
    d.action("v2", "start")
    out = d.wait_console("v2", "PASS net", timeout=180)
    check("ok: ICMP echo reply 3 from 10.77.0.3" in out, "two ports on VLAN 10 ping each other")
    d.wait_console("v1", "PASS net", timeout=120)
    for v in ("v1", "v2", "v3"):
        d.wait_state(v, ("stopped", "crashed"), timeout=60)

    # An internal switch reaches the host (the bridge's address).
    d.define("i", net, "ip=10.78.0.2 peer=10.78.0.1 count=3", nics=[{"switch": "int0"}])
    d.action("i", "start")
    out = d.wait_console("i", "PASS net", timeout=180)
    check("ok: ICMP echo reply 3 from 10.78.0.1" in out, "internal switch: guest pings the host")


def test_ports(d, ns, args):
    # SIGKILL of the worker: the port goes.
    d.define("k", "net", "ip=10.77.0.9 serve=1000 wait=900000", nics=[{"switch": "priv"}])
    d.action("k", "start")
    d.wait_console("k", "net: serving", timeout=120)
    tk = vm_tap(d, "k")
    check(ns.master(tk) == "cbr-priv", "k's port is on the bridge")
    r = d.request("PATCH", "/v1/vms/k/nics/0", {"policy": {}})
    check(r.status == 200, f"PATCH a running port's policy: {r}")
    r = d.request("PATCH", "/v1/vms/k/nics/0", {"policy": {"no_such_knob": 1}})
    check(r.status == 400 and r.json["error"]["field"].startswith("nics[0].policy"),
          f"a bad policy is refused with its field: {r.json.get('error')}")
    refused(d, "/v1/vms/k/nics/0", {"vlan": 5000}, 400, "vlan", method="PATCH")
    p = d.cli("vm", "set", "k", "--nic-policy", "0", "{}")
    check("port policy changed" in p.stdout, "cella vm set --nic-policy on a running VM")
    p = d.cli("vm", "create", "cl", "--kernel", args["guests"]["net"], "--nic", "priv,vlan=4095",
              expect=None)
    check(p.returncode != 0 and "nics[0].vlan" in p.stderr, "cella vm create --nic SW,vlan=4095 "
          "refused, naming the field")
    d.cli("vm", "create", "cl", "--kernel", args["guests"]["net"], "--nic", "priv,mac=02:00:00:00:00:07")
    check(d.vm("cl")["nics"] == [{"switch": "priv", "mac": "02:00:00:00:00:07"}],
          "cella vm create --nic SWITCH,mac=...")
    check(d.request("DELETE", "/v1/vms/cl").status in (200, 204), "VM cl deleted")
    refused(d, "/v1/vms/k/nics/3", {"policy": {}}, 404, "nic", method="PATCH")
    os.kill(d.vm("k")["pid"], signal.SIGKILL)
    d.wait_state("k", ("crashed", "stopped"), timeout=60)
    poll("k's port to go", lambda: tk not in ns.links())
    check(True, "port removed after the worker was killed")

    # A start that fails on its second port: the first one is taken down too.
    ns.ip("link", "del", "cbr-int0")  # by hand, behind cellad's back
    d.define("m", "net", "ip=10.77.0.6 serve=1", nics=[{"switch": "priv"}, {"switch": "int0"}])
    before = ns.snapshot()
    r = d.post("/v1/vms/m/start")
    log(f"start with a bridge gone: {r}")
    check(r.status >= 400 and "cbr-int0" in r.body, "a start whose switch lost its bridge fails")
    check(ns.snapshot() == before and not [l for l in ns.links() if l.startswith("ct")],
          "a failed start leaves no port, tap or rule behind")
    check(d.vm("m")["state"] not in ("running", "starting"), "m is not running")

    # A simulated reboot: the bridges vanish, cellad restarts; a worker that
    # still runs gets its port back.
    d.define("r", "net", "ip=10.77.0.8 serve=1000 wait=900000", nics=[{"switch": "priv"}])
    d.action("r", "start")
    d.wait_console("r", "net: serving", timeout=120)
    tr = vm_tap(d, "r")
    # g's worker dies while cellad is away: its port goes when cellad is back.
    d.define("g", "net", "ip=10.77.0.7 serve=1000 wait=900000", nics=[{"switch": "priv"}])
    d.action("g", "start")
    d.wait_console("g", "net: serving", timeout=120)
    tg, gpid = vm_tap(d, "g"), d.vm("g")["pid"]
    d.stop()
    os.kill(gpid, signal.SIGKILL)
    check(tr in ns.links(), "the port outlives cellad (its worker runs on)")
    for br in ("cbr-priv", "cbr-ext0"):  # (cbr-int0 is gone already)
        ns.ip("link", "del", br)
    check(ns.master(tr) is None and "cbr-priv" not in ns.links(), "bridges deleted")
    d.start()
    check(all(b in ns.links() for b in ("cbr-priv", "cbr-int0", "cbr-ext0")),
          "bridges recreated at cellad's start")
    check("10.78.0.1/24" in ns.ip("addr", "show", "dev", "cbr-int0") and
          ns.master("up0") == "cbr-ext0", "internal address and uplink put back")
    st, m = d.vm("r")["state"], ns.master(tr)
    check(st == "running" and m == "cbr-priv",
          f"the running VM's port is back on its bridge (state {st}, {tr} on {m})")
    check(d.vm("g")["state"] in ("crashed", "stopped") and tg not in ns.links(),
          "a worker that died while cellad was away: its port removed at cellad's start")
    # A plain restart (nothing deleted): the same, nothing to rebuild.
    links = ns.links()
    d.stop()
    d.start()
    check(ns.links() == links and ns.master(tr) == "cbr-priv" and
          ns.master("up0") == "cbr-ext0" and "cannot rebuild" not in d.log(),
          "a plain cellad restart changes nothing on the host")
    d.action("r", "kill")
    d.wait_state("r", ("stopped", "crashed"), timeout=60)
    poll("r's port to go", lambda: tr not in ns.links())

    # Delete: refused in use, then allowed; the uplink is released.
    for vm in ("a", "b", "c", "k", "r", "g", "m", "v1", "v2", "v3"):
        check(d.request("DELETE", f"/v1/vms/{vm}").status in (200, 204), f"VM {vm} deleted")
    d.wait_state("i", ("stopped", "crashed"), timeout=60)
    check(d.request("DELETE", "/v1/vms/i").status in (200, 204), "VM i deleted")
    for sw, br in (("priv", "cbr-priv"), ("int0", "cbr-int0"), ("ext0", "cbr-ext0")):
        p = d.cli("switch", "delete", sw)
        check(br not in ns.links(), f"switch {sw} deleted with its bridge")
    check("up0" in ns.links() and ns.master("up0") is None, "the uplink stays, released")
    check(d.get("/v1/switches").json["switches"] == [], "no switch left")
    d.cli("switch", "show", "priv", expect=None)


def test(args):
    if os.geteuid() != 0:
        skip("switches need root (network namespaces, bridges, taps)")
    if not shutil.which("ip") or not shutil.which("bridge") or not os.path.exists("/dev/net/tun"):
        skip("needs iproute2 (ip, bridge) and /dev/net/tun")
    with Netns() as ns:
        ns.ip("link", "set", "lo", "up")
        with Daemon(args, wrapper=["ip", "netns", "exec", ns.name]) as d:
            test_switches(d, ns)
            test_traffic(d, ns)
            test_ports(d, ns, args)


main(test, need_root=True)
