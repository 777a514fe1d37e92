"""test_replica_vmdef.py: the replica as a VM definition on the target
(docs/replica.md, "The replica as a VM definition"). Two cellads in network
namespaces (test_replica.py's harness); VM rv on a replicated to b.

- On b, rv is a VM: the source's UUID, off, marked a replica (source,
  state, last_point), its disk the latest point's layer (a file in the
  store), no autostart; `cella vm list` shows STATE replica; the mark
  follows the points.
- Start, save, PATCH, DELETE, a checkpoint, a disk's settings: 409 saying
  to fail over (cella replica failover rv); the CLI's start says the same;
  POST /v1/vms with a "replica" field: 400.
- b's cellad restarted: the definition and its mark are there. Restarted
  after its VM rows were removed from the database (a crash between the
  record and the definition): defined again, marked.
- `failover --test`: rv-test, a separate VM (its own UUID, no mark); rv
  stays a replica. `failover --no-start`: rv is the same VM (its UUID),
  no mark, on its run layer; it starts.
- `cella replica reverse rv --to a` (a's VM off): on a, rv is marked the
  replica of b's (same UUID), its start refused; a's cellad restarted: still.
- A failover on a cut short by a crash (the record says failed-over, the
  definition still the replica's): a's next cellad finishes it (no mark,
  the run layer). A deletion cut short (the record gone, the definition
  left): removed at the next start.

Needs root (network namespaces), ip, openssl and qemu-img; skips loudly
otherwise."""

import json
import os
import shutil
import sqlite3
import subprocess

from cellad import TestFailure, check, log, main
import replutil
from test_replica import SEQ, SIZE, flushed, replica, until


def restart(d, args):
    d.stop()
    d.args = dict(d.args, cellad=args["cellad"])  # NsDaemon.start wraps it again
    d.start()


def refused(r, what):
    check(r.status == 409 and "cella replica failover rv" in r.body,
          f"{what} on the replica: 409 saying to fail over: {r}")


def test(args):
    replutil.two_hosts(args, "repvm", lambda a, b, net, work: scenario(args, a, b, work),
                       both_ways=True)


def check_replica_def(d, uuid, source_host=None):
    vm = d.vm("rv")
    rep = vm.get("replica")
    check(rep and rep["state"] == "replicating" and vm["uuid"] == uuid and
          vm["state"] in ("defined", "stopped") and not vm["autostart"],
          f"{d.name}: rv is a powered-off replica with the source's UUID: {vm}")
    if source_host:
        check(rep["source"] == source_host, f"the replica's source: {rep}")
    return vm


def scenario(args, a, b, work):
    img = os.path.join(work, "rv.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(SIZE)], check=True)
    uuid = a.define("rv", "blkverify", SEQ, memory_mib=128,
                    disks=[{"path": img, "id": "data", "cbt": True}])["uuid"]
    a.action("rv", "start")
    until("the guest flushes", lambda: flushed(a) >= 2)
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "4")
    rep = until("two points on b", lambda: (lambda x: x if x and
                                              len(x["points"]) >= 2 else None)(replica(b)))

    # The replica is a VM on b: off, marked, on the latest point's layer.
    vm = check_replica_def(b, uuid, rep["from"])
    store = os.path.join(b.state, "replicas", "rv", "disk-data")
    dk = vm["disks"][0]
    check(dk["path"].startswith(store + "/") and os.path.isfile(dk["path"]) and
          dk["format"] == "qcow2" and dk["id"] == "data",
          f"its disk is a point's layer in the replica's store: {dk}")
    listing = b.cli("vm", "list").stdout
    row = next((ln for ln in listing.splitlines() if ln.split()[:1] == ["rv"]), "")
    check(row.split()[1:2] == ["replica"], f"cella vm list shows STATE replica:\n{listing}")
    first = vm["replica"]["last_point"]
    vm = until("the mark follows the points", lambda: (lambda v: v if v["replica"]["last_point"]
                                                      != first else None)(b.vm("rv")))
    check(vm["replica"]["last_point"] in replica(b)["points"] and
          vm["disks"][0]["path"] != dk["path"] and os.path.isfile(vm["disks"][0]["path"]),
          f"last_point {first} -> {vm['replica']['last_point']}, disk {vm['disks'][0]['path']}")

    # Refused: what would run or change it.
    refused(b.post("/v1/vms/rv/start"), "start")
    refused(b.post("/v1/vms/rv/save"), "save")
    refused(b.request("PATCH", "/v1/vms/rv", {"cpus": 2}), "PATCH")
    refused(b.request("DELETE", "/v1/vms/rv"), "DELETE")
    refused(b.post("/v1/vms/rv/checkpoints", {"name": "c1"}), "a checkpoint")
    refused(b.request("PATCH", "/v1/vms/rv/disks/data", {"qos": {"iops": 100}}), "disk settings")
    p = b.cli("vm", "start", "rv", expect=None)
    check(p.returncode != 0 and "cella replica failover rv" in p.stderr,
          f"cella vm start rv: refused, saying to fail over: {p.returncode} {p.stderr!r}")
    r = b.post("/v1/vms", {"name": "fake", "kernel": args["guests"]["blkverify"],
                           "replica": {"source": "x"}})
    check(r.status == 400 and "replica" in r.body, f"POST /v1/vms with a replica mark: {r}")
    check(b.vm("rv")["cpus"] == 1, "nothing changed")

    # A restarted cellad has it; one that lost the definition makes it again.
    restart(b, args)
    check_replica_def(b, uuid)
    refused(b.post("/v1/vms/rv/start"), "start after a restart")
    b.stop()
    db = sqlite3.connect(os.path.join(b.state, "cellad.db"))
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("DELETE FROM vms WHERE name='rv'")
    db.commit()
    db.close()
    b.args = dict(b.args, cellad=args["cellad"])
    b.start()
    vm = check_replica_def(b, uuid)
    check(os.path.isfile(vm["disks"][0]["path"]), f"defined again on a point: {vm['disks']}")

    # replica delete removes the definition; so does a restart after a
    # deletion cut short (the record gone, the definition left).
    a.cli("replica", "disable", "rv")
    b.cli("replica", "delete", "rv")
    check(b.get("/v1/vms/rv").status == 404, "replica delete removed the definition")
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "4")
    until("points on b again", lambda: (lambda x: x if x and x["points"] else None)(replica(b)))
    check_replica_def(b, uuid)
    a.cli("replica", "disable", "rv")
    b.stop()
    gone = os.path.join(b.state, "replicas", "rv.gone")
    os.rename(os.path.join(b.state, "replicas", "rv"), gone)
    b.args = dict(b.args, cellad=args["cellad"])
    b.start()
    check(b.get("/v1/vms/rv").status == 404, "a deletion cut short: the definition went at start")
    check(not any("replica" in v for v in b.get("/v1/vms").json["vms"]),
          "nothing defined from the directory kept aside (rv.gone)")
    shutil.rmtree(gone)
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "4")
    until("points on b again", lambda: (lambda x: x if x and len(x["points"]) >= 2 else None)(
        replica(b)))
    check_replica_def(b, uuid)

    # A test failover is a VM of its own; the replica stays one.
    b.cli("replica", "failover", "rv", "--test")
    t = b.vm("rv-test")
    check(t["uuid"] != uuid and "replica" not in t and not t["nics"],
          f"rv-test: its own UUID, no mark, no network: {t}")
    check_replica_def(b, uuid)
    b.cli("replica", "test-stop", "rv")
    check(b.get("/v1/vms/rv-test").status == 404, "test-stop removed rv-test")

    # Failover: the same VM, made ordinary on its run layer.
    a.cli("replica", "disable", "rv")
    a.action("rv", "kill")
    a.wait_state("rv", ("stopped", "crashed", "defined"))
    out = json.loads(b.cli("--json", "replica", "failover", "rv", "--no-start").stdout)
    vm = b.vm("rv")
    check(vm["uuid"] == uuid and "replica" not in vm and
          vm["disks"][0]["path"] == os.path.join(b.state, "replicas", "rv",
                                                 f"run-data-{out['point']}.qcow2"),
          f"failed over: rv is the same VM on its run layer, no mark: {vm}")
    check(b.cli("vm", "list").stdout.count("replica") == 0, "vm list: no replica on b now")
    b.action("rv", "start")
    until("the guest runs on b", lambda: flushed(b) >= 1)

    # Reverse: on a, the old VM becomes the replica (marked; no start).
    rv = json.loads(b.cli("--json", "replica", "reverse", "rv", "--to", "a").stdout)
    log(f"reverse: {rv}")
    check_replica_def(a, uuid)
    refused(a.post("/v1/vms/rv/start"), "start on the old primary")
    until("points on a", lambda: (lambda x: x if x and x["points"] else None)(replica(a)))
    restart(a, args)
    check_replica_def(a, uuid)
    refused(a.post("/v1/vms/rv/start"), "start on the old primary after a restart")

    # A failover on a cut short: the record says failed-over, the definition
    # is still the replica's. a's next cellad finishes it.
    b.cli("replica", "disable", "rv")
    a.stop()
    rdir = os.path.join(a.state, "replicas", "rv")
    with open(os.path.join(rdir, "replica.json")) as f:
        rec = json.load(f)
    pts = subprocess.run([args["cella"], "disk", "replica", "points", "--json",
                          os.path.join(rdir, "disk-data")], capture_output=True, text=True,
                         check=True)
    last = json.loads(pts.stdout)[-1]
    layer = os.path.join(rdir, f"run-data-{last['name']}.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    last["path"], layer], check=True)
    rec["state"] = "failed-over"
    rec["failed_over_point"] = last["name"]
    with open(os.path.join(rdir, "replica.json"), "w") as f:
        json.dump(rec, f)
    a.args = dict(a.args, cellad=args["cellad"])
    a.start()
    vm = a.vm("rv")
    check("replica" not in vm and vm["uuid"] == uuid and vm["disks"][0]["path"] == layer,
          f"a's cellad finished the failover: {vm}")

    # A replica cannot take an ordinary VM's name, nor another VM's UUID.
    other = a.define("other", "blkverify", SEQ)
    body = {"vm": {"name": "other", "kernel": args["guests"]["blkverify"],
                   "disks": [{"path": img, "id": "data", "cbt": True}]},
            "disk_sizes": {"data": SIZE}, "from": "b"}
    r = a.post("/v1/replicas", body)
    check(r.status == 409 and "is defined here" in r.body and not replica(a, "other"),
          f"a replica refused over an ordinary VM of its name: {r}")
    body["vm"].update(name="other2", uuid=other["uuid"])
    r = a.post("/v1/replicas", body)
    check(r.status == 409 and "UUID" in r.body and not replica(a, "other2"),
          f"a replica refused with another VM's UUID: {r}")

if __name__ == "__main__":
    main(test)
