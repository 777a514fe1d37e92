#!/usr/bin/env python3
"""test_switch_move.py: a VM with a NIC on a switch moves between two hosts
(two cellads in network namespaces, as test_move.py): its port follows it to
the destination's switch of the same name and leaves the source; a move to a
host that lacks the switch is refused and the VM runs on at the source."""
import subprocess

import replutil
from cellad import check, log, main, poll
from test_move import move_cli


def links(ns):
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show"], capture_output=True,
                         text=True).stdout
    return [l.split(":")[1].strip().split("@")[0] for l in out.splitlines()]


def master(ns, dev):
    parts = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "dev", dev],
                           capture_output=True, text=True).stdout.split()
    return parts[parts.index("master") + 1] if "master" in parts else None


def tap_of(d, name):
    return "ct" + d.vm(name)["uuid"].replace("-", "")[:10] + ".0"


def scenario(a, b, net, work):
    for d in (a, b):
        d.cli("switch", "create", "lan", "--type", "private")
    a.cli("switch", "create", "only-a", "--type", "private")

    a.define("mv", "net", "ip=10.77.0.9 serve=1000 wait=900000", nics=[{"switch": "lan"}])
    a.action("mv", "start")
    a.wait_console("mv", "net: serving", timeout=120)
    tap = tap_of(a, "mv")
    check(master(net.ns["a"], tap) == "cbr-lan", f"A: port {tap} on cbr-lan")
    res = move_cli(a, "mv", "--to", "b")
    log(f"live move: {res.get('total_ms')} ms, downtime {res.get('downtime_ms')} ms")
    check(b.vm("mv")["state"] == "running", "the VM runs on B")
    check(master(net.ns["b"], tap) == "cbr-lan", "B: its port is on B's switch lan")
    poll("the port to leave A", lambda: tap not in links(net.ns["a"]))
    check(True, "A: the port is gone after the move")

    a.define("st", "net", "ip=10.77.0.8 serve=1000 wait=900000",
             nics=[{"switch": "only-a"}])
    a.action("st", "start")
    a.wait_console("st", "net: serving", timeout=120)
    p = move_cli(a, "st", "--to", "b", expect=None)
    check(p.returncode != 0 and "switch" in (p.stderr + p.stdout),
          f"a move to a host without the switch is refused: {p.stderr.strip()}")
    check(a.vm("st")["state"] == "running" and
          master(net.ns["a"], tap_of(a, "st")) == "cbr-only-a",
          "the VM runs on at the source, its port in place")
    b.action("mv", "kill")
    poll("the port to leave B", lambda: tap not in links(net.ns["b"]))
    check(True, "B: the port is gone after kill")


def test(args):
    replutil.two_hosts(args, "swmv", scenario, tools=("ip", "openssl"))


if __name__ == "__main__":
    main(test)
