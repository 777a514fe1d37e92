#!/usr/bin/env python3
"""test_pool_maint.py: moves inside a pool, maintenance mode and balance
(docs/pool.md) with real processes: three cellads in network namespaces on
a bridge, an etcd member on the bridge's address, a pool made with `cella
pool create` and `cella pool join`, and pool storage (a directory every
host has by the same path).

- A pool move by name, sent to a host that does not own the VM: `cella vm
  move m3 --to host-b` on host-c runs on host-a (the owner) without `cella
  host add`; the guest's rounds go on on host-b past where they were;
  etcd names host-b the owner; host-a has forgotten the VM. A quick pool
  move to host-c and a live one back: the same.
- `cella host maintenance host-a on` sent to host-b: every running VM of
  host-a runs on host-b or host-c, each guest's rounds continue there past
  their value before, pool status shows host-a in maintenance, the owner
  keys name the new hosts, exactly one worker per VM pool-wide; a stopped
  VM whose disk is on pool storage is handed over (its new owner loads
  it), one with a local disk stays (stuck, with the reason); a start on
  host-a and a move onto it are refused naming the state; off: up again.
- `cella pool balance --dry-run` on the uneven pool prints a plan and moves
  nothing; `cella pool balance` carries it out (the owner keys follow the
  plan, the guests go on).
- host-a's cellad started again while its record says maintenance and it
  runs a VM: the evacuation goes on by itself (the VM runs elsewhere).
- A move the destination refuses in its prepare (no room for the VM): the
  VM runs on at its host, which still owns it; nothing is left there.

Needs root (namespaces) and etcd; skips loudly without them.
Usage: test_pool_maint.py --cellad PATH --cella PATH --cella-vm PATH NAME=GUEST..."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
from cellad import TestFailure, check, log, main, skip  # noqa: E402

import etcdutil  # noqa: E402
import netutil  # noqa: E402
import test_pool_hosts as ph  # noqa: E402
import tlsutil  # noqa: E402

NET = netutil.subnet(11)
ADDR = {"a": f"{NET}.2", "b": f"{NET}.3", "c": f"{NET}.4"}
GUEST = "rounds=0 mib=4 pause_ms=20"


class Host(ph.Host):
    def __init__(self, args, h, ns, boot, storage):
        super().__init__(args, h, ns, boot)
        self.config["tcp"]["address"] = ADDR[h]
        self.config["storage"] = storage
        self.url = f"https://{ADDR[h]}:{ph.PORT}"
        self.real_cellad = args["cellad"]

    def start(self):
        self.args = dict(self.args, cellad=self.real_cellad)  # started again: no wrapper twice
        return super().start()


def wait_for(what, pred, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out: {what}")
        time.sleep(0.1)  # polling with a deadline


def last_round(d, name):
    """The last memwriter round on d's console of the VM (-1: none)."""
    r = d.get(f"/v1/vms/{name}/console?history=1048576&follow=false")
    if r.status != 200:
        return -1
    body = r.body if isinstance(r.body, str) else r.body.decode("utf-8", "replace")
    if "FAIL" in body:
        raise TestFailure(f"{name} on {d.name}: memwriter FAIL: {body[-300:]!r}")
    rs = [int(m) for m in re.findall(r"memwriter: round (\d+)", body)]
    return rs[-1] if rs else -1


def owner(c, uuid):
    return c.etcdctl("get", f"/cella/pm/owner/{uuid}", "--print-value-only").stdout.strip()


def lease_of(c, key):
    kvs = json.loads(c.etcdctl("get", key, "-w", "json").stdout).get("kvs") or []
    return int(kvs[0].get("lease", 0)) if kvs else 0


def local_vm(d, name):
    """The VM as d itself has it (not forwarded), or None."""
    vms = {v["name"]: v for v in json.loads(d.cli("--json", "vm", "list").stdout)["vms"]}
    v = vms.get(name)
    return v if v and v.get("host") == d.name else None


def runs_on(hosts, name):
    """The hosts where the VM runs with a worker of its own."""
    out = []
    for h, d in hosts.items():
        v = local_vm(d, name)
        if v and v["state"] == "running" and v.get("pid") and os.path.exists(f"/proc/{v['pid']}"):
            out.append(h)
    return out


def goes_on(hosts, name, where, before):
    d = hosts[where]
    wait_for(f"{name}'s rounds go on on host-{where} past {before}",
             lambda: last_round(d, name) > before + 2, timeout=30)
    check(True, f"{name}: rounds continue on host-{where} ({before} -> {last_round(d, name)})")


def test(args):
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the hosts")
    for tool in ("ip", "openssl"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    etcdutil.need_etcd()
    boot = tempfile.mkdtemp(prefix="cella-maint-boot-")
    tlsutil.make_pki(boot, names=("a", "b", "c"))
    with open(f"{boot}/token", "w") as f:
        f.write("pool-test-bootstrap-token-0123456789\n")
    shared, local = os.path.join(boot, "shared"), os.path.join(boot, "local")
    for d in (shared, local):
        os.makedirs(d)
        for n in ("m1.img", "s1.img", "l1.img"):
            with open(os.path.join(d, n), "wb") as f:
                f.truncate(1 << 20)
    # m2's disk: qcow2 on pool storage (its metadata read again on arrival).
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", os.path.join(shared, "m2.qcow2"),
                    "1M"], check=True)
    storage = [{"name": "shared", "path": shared, "role": "operator", "pool": True},
               {"name": "local", "path": local, "role": "operator"}]
    net = netutil.Net(ADDR, f"{NET}.1", tag="cm")
    hosts = {}
    try:
        net.up()
        with etcdutil.Cluster(1, host=f"{NET}.1") as c:
            for h in ADDR:
                hosts[h] = Host(args, h, net.ns[h], boot, storage).start()
            scenario(c, hosts, shared, local)
    except TestFailure:
        for d in hosts.values():  # the workers' own logs, for the failure
            logs = os.path.join(d.state, "logs")
            for f in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
                with open(os.path.join(logs, f), errors="replace") as fh:
                    log(f"{d.name} {f}: ...{fh.read()[-1500:]}")
        raise
    finally:
        for d in hosts.values():
            d.cleanup()
        net.down()
        shutil.rmtree(boot, ignore_errors=True)


def make_pool(c, hosts):
    a, b, hc = hosts["a"], hosts["b"], hosts["c"]
    eps = ",".join(c.endpoints)
    p = a.cli("pool", "create", "pm", "--etcd", eps, "--ca-cert", c.ca, "--ca-key",
              f"{c.dir}/ca.key", "--address", a.url, "--host", "host-a", "--lease-ttl", "3")
    token = next(w for w in p.stdout.split() if w.count(".") == 2 and len(w) > 100)
    a.wait_pool()
    b.cli("pool", "join", a.url, "--token", token, "--host", "host-b", "--address", b.url)
    b.wait_pool()
    t2 = json.loads(a.cli("--json", "pool", "token").stdout)["token"]
    hc.cli("pool", "join", a.url, "--token", t2, "--host", "host-c", "--address", hc.url)
    hc.wait_pool()
    wait_for("three hosts up", lambda: all(
        x["state"] == "up" for x in a.status().values()) and len(a.status()) == 3)
    check(True, "a pool of three hosts (create, join)")


def scenario(c, hosts, shared, local):
    t_start = time.monotonic()
    a, b, hc = hosts["a"], hosts["b"], hosts["c"]
    make_pool(c, hosts)
    uuid = {}
    for n in ("m1", "m2", "m3"):
        # m1: HA, its disk on pool storage (not copied: opened by the same path).
        kw = dict(ha=True, disks=[{"path": os.path.join(shared, "m1.img")}]) if n == "m1" else \
            dict(disks=[{"path": os.path.join(shared, "m2.qcow2")}]) if n == "m2" else {}
        uuid[n] = a.define(n, "memwriter", GUEST, **kw)["uuid"]
        a.action(n, "start", {"host": "host-a"})  # here, not where placement would put it
    uuid["s1"] = a.define("s1", "memwriter", GUEST,
                          disks=[{"path": os.path.join(shared, "s1.img")}])["uuid"]
    uuid["l1"] = a.define("l1", "memwriter", GUEST,
                          disks=[{"path": os.path.join(local, "l1.img")}])["uuid"]
    for n in ("m1", "m2", "m3"):
        a.wait_console(n, "round 3")
    for n in uuid:
        wait_for(f"{n} in host-c's view", lambda n=n: any(
            v["name"] == n for v in json.loads(hc.cli("--json", "vm", "list").stdout)["vms"]))

    # A pool move by name, sent to host-c (forwarded to host-a, the owner).
    before = last_round(a, "m3")
    p = hc.cli("--json", "vm", "move", "m3", "--to", "host-b")
    res = json.loads(p.stdout)
    check(res["to"] == "host-b" and res["mode"] == "live",
          f"cella vm move m3 --to host-b (no cella host add): {res['total_ms']} ms, "
          f"{res['downtime_ms']} ms down")
    goes_on(hosts, "m3", "b", before)
    check(owner(c, uuid["m3"]) == "host-b", "etcd names host-b m3's owner")
    check(local_vm(a, "m3") is None and runs_on(hosts, "m3") == ["b"],
          "host-a forgot m3; one worker pool-wide, on host-b")
    check(a.get("/v1/vms/m3").status == 200, "a request for m3 on host-a goes to host-b now")
    # Quick (save, send the state, restore) to host-c and live back to host-b.
    before = last_round(b, "m3")
    res = json.loads(a.cli("--json", "vm", "move", "m3", "--to", "host-c", "--quick").stdout)
    check(res["mode"] == "quick", f"a quick pool move: {res['total_ms']} ms")
    goes_on(hosts, "m3", "c", before)
    check(owner(c, uuid["m3"]) == "host-c" and runs_on(hosts, "m3") == ["c"],
          "etcd names host-c; one worker, on host-c")
    before = last_round(hc, "m3")
    b.cli("vm", "move", "m3", "--to", "host-b")
    goes_on(hosts, "m3", "b", before)
    check(owner(c, uuid["m3"]) == "host-b" and runs_on(hosts, "m3") == ["b"],
          "and live back to host-b")

    # Maintenance on host-a, asked on host-b.
    before = {n: last_round(a, n) for n in ("m1", "m2")}
    t0 = time.monotonic()
    p = b.cli("--json", "host", "maintenance", "host-a", "on")
    took = time.monotonic() - t0
    out = json.loads(p.stdout)
    plan = out["plan"]
    log(f"maintenance plan: {plan['summary']}; {len(plan['moves'])} moves, "
        f"{len(plan['stuck'])} stuck, {took:.1f} s")
    check(out["state"] == "maintenance" and all(r and r["ok"] for r in out["results"]),
          f"host maintenance host-a on: every planned move done ({took:.1f} s): "
          f"{out['results']}")
    moved = {m["vm"]: m["to"][-1] for m in plan["moves"]}
    check(set(moved) == {"m1", "m2", "s1"} and [s["vm"] for s in plan["stuck"]] == ["l1"],
          f"the plan: m1, m2 live, s1 handed over; l1 stays: "
          f"{[(s['vm'], s['reason']) for s in plan['stuck']]}")
    for n in ("m1", "m2"):
        goes_on(hosts, n, moved[n], before[n])
        check(owner(c, uuid[n]) == f"host-{moved[n]}", f"etcd names host-{moved[n]} {n}'s owner")
        check(runs_on(hosts, n) == [moved[n]], f"{n}: exactly one worker pool-wide")
    dest = f"host-{moved['m1']}"
    wait_for("m1's owner key is on its new host's lease", lambda: lease_of(
        c, f"/cella/pm/owner/{uuid['m1']}") == lease_of(c, f"/cella/pm/alive/{dest}") != 0)
    check(True, f"HA VM m1: its owner key is on {dest}'s lease")
    check(owner(c, uuid["s1"]) == f"host-{moved['s1']}", "s1's owner key names its new host")
    wait_for("s1 is loaded on its new host", lambda: local_vm(hosts[moved["s1"]], "s1"))
    check(local_vm(a, "s1") is None and owner(c, uuid["l1"]) == "host-a",
          "s1 left host-a; l1 (local disk) stays there")
    st = b.status()
    check(st["host-a"]["state"] == "maintenance", "pool status shows host-a in maintenance")
    evs = [e for e in a.events() if e["event"] in ("vm-evacuated", "pool-host-maintenance")]
    check(len([e for e in evs if e["event"] == "vm-evacuated"]) == 3 and
          any(e["event"] == "pool-host-maintenance" for e in evs),
          "events: pool-host-maintenance and one vm-evacuated per VM")

    r = a.post("/v1/vms/l1/start")
    check(r.status == 409 and "maintenance" in r.json["error"]["message"],
          f"a start on host-a is refused: {r.json['error']['message']}")
    p = b.cli("vm", "move", "m3", "--to", "host-a", expect=None)
    check(p.returncode != 0 and "maintenance" in p.stderr,
          f"a move onto host-a is refused: {p.stderr.strip()}")
    check(runs_on(hosts, "m3") == ["b"], "m3 still runs on host-b")
    p = a.cli("host", "maintenance", "host-a", "off")
    check(b.status()["host-a"]["state"] == "up", "maintenance off: host-a is up again")

    # Balance: host-a is empty, the others have everything.
    p = hc.cli("pool", "balance", "--dry-run")
    log(p.stdout)
    dry = json.loads(hc.cli("--json", "pool", "balance", "--dry-run").stdout)
    owners = {n: owner(c, uuid[n]) for n in ("m1", "m2", "m3")}
    check(dry["moves"] and dry["imbalance_after"] < dry["imbalance_before"] and
          "imbalance" in p.stdout and "->" in p.stdout,
          f"balance --dry-run prints a plan: {dry['summary']}")
    check({n: owner(c, uuid[n]) for n in owners} == owners, "... and moves nothing")
    before = {n: last_round(hosts[owners[n][-1]], n) for n in owners}
    out = json.loads(hc.cli("--json", "pool", "balance").stdout)
    check(out["moves"] and all(r and r["ok"] for r in out["results"]),
          f"balance carries out its plan: {[(m['vm'], m['from'], m['to']) for m in out['moves']]}")
    for m in out["moves"]:
        check(owner(c, uuid[m["vm"]]) == m["to"], f"{m['vm']} is owned by {m['to']} now")
        goes_on(hosts, m["vm"], m["to"][-1], before[m["vm"]])
        check(runs_on(hosts, m["vm"]) == [m["to"][-1]], f"{m['vm']}: one worker pool-wide")
    check(any(e["event"] == "vm-balanced" for e in hc.events()), "event vm-balanced")

    # A cellad that starts on a host in maintenance that still runs VMs
    # (stopped in the middle of an evacuation, or the state set while it
    # was away) carries the evacuation on.
    on_a = [m["vm"] for m in out["moves"] if m["to"] == "host-a"]
    check(bool(on_a), f"balance moved {on_a} to host-a")
    n = on_a[0]
    before = last_round(a, n)
    a.stop()
    rec = json.loads(c.etcdctl("get", "/cella/pm/members/host-a", "--print-value-only").stdout)
    rec["state"] = "maintenance"
    c.etcdctl("put", "/cella/pm/members/host-a", json.dumps(rec))
    a.start()
    a.wait_pool()
    new = wait_for(f"{n} leaves host-a after its cellad started in maintenance",
                   lambda: owner(c, uuid[n]) not in ("host-a", "") and owner(c, uuid[n]))
    goes_on(hosts, n, new[-1], before)
    check(runs_on(hosts, n) == [new[-1]] and "the evacuation goes on" in a.log(),
          f"the evacuation went on at start: {n} runs on {new} only")
    a.cli("host", "maintenance", "host-a", "off")

    # A move the destination refuses (no room: admission, in its prepare):
    # the VM runs on, on its host, which still owns it; nothing is left there.
    uuid["big"] = b.define("big", "memwriter", GUEST, memory_mib=980)["uuid"]  # + 64 overhead > 1024
    b.action("big", "start", {"host": "host-b"})
    b.wait_console("big", "round 3")
    before = last_round(b, "big")
    p = hc.cli("vm", "move", "big", "--to", "host-a", expect=None)
    check(p.returncode != 0 and "memory" in p.stderr,
          f"a move host-a has no room for is refused: {p.stderr.strip()}")
    goes_on(hosts, "big", "b", before)
    check(owner(c, uuid["big"]) == "host-b" and runs_on(hosts, "big") == ["b"] and
          local_vm(a, "big") is None, "big still runs on, and is owned by, host-b; nothing on host-a")
    for n in ("m1", "m2", "m3", "big"):
        for d in hosts.values():
            if local_vm(d, n):
                d.action(n, "kill")
    log(f"scenario took {time.monotonic() - t_start:.1f} s")


if __name__ == "__main__":
    main(test)
