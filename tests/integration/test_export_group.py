#!/usr/bin/env python3
"""it-export-group: disk-export-group (vmm/virtio/blk/blk_group.c) on a VM
with two disks with change tracking, whose guest writes its first all the
time (blkverify mode=seq):

- a group of two exports (full, then incremental since the group's point):
  both streams end done; each is a change set a replica store takes
  (`cella disk replica add`), the data disk's restored image is one instant
  of the guest's history; the reply says how long the vCPUs were held, and
  the guest goes on writing after (not left paused);
- refused whole, with nothing cut: an unknown disk, a disk named twice, an
  output that is not there; a group whose second export is refused (since a
  point the disk lacks): the first disk's export is cancelled (all or none),
  and the next group since the last point still works;
- on a paused VM: the group works and the VM stays paused."""
import os
import subprocess
import tempfile
import time

import blkutil
import harness
from test_export import SEQ, cella_disk, flushed, point_in_time

SIZE = 64 << 20  # blkverify's slots (test_export.SEQ) span the data disk


def exports(ctl):
    st = blkutil.control(ctl, {"cmd": "status"})
    return {d["id"]: d.get("export") or {} for d in st["disks"]}


def wait_done(ctl, point, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        x = exports(ctl)
        if all(e.get("state") == "done" and e.get("point") == point for e in x.values()):
            return x
        if any(e.get("state") in ("failed", "cancelled") for e in x.values()):
            raise harness.TestFailure(f"an export of {point} ended as {x}")
        if time.monotonic() > deadline:
            raise harness.TestFailure(f"exports of {point} not done: {x}")
        time.sleep(0.05)  # polling the worker's status with a deadline


def group(ctl, tmp, point, since=None, disks=("data", "logs"), **extra):
    req = {"cmd": "disk-export-group", "exports": []}
    for d in disks:
        x = {"disk": d, "point": point, "path": os.path.join(tmp, f"{d}-{point}.inc"),
             "deferred_commit": True}
        if since:
            x["since"] = since
        req["exports"].append(x)
    req.update(extra)
    for x in req["exports"]:
        if os.path.basename(x["path"]) != "missing":
            open(x["path"], "wb").close()
    return blkutil.control(ctl, req)


def commit(ctl, point, disks=("data", "logs")):
    for d in disks:
        rep = blkutil.control(ctl, {"cmd": "disk-export-commit", "disk": d, "point": point})
        if not rep.get("ok"):
            raise harness.TestFailure(f"disk-export-commit {d} {point}: {rep}")


def test(args):
    with tempfile.TemporaryDirectory(prefix="cella-it-group-") as tmp:
        data = os.path.join(tmp, "data.qcow2")
        logs = os.path.join(tmp, "logs.qcow2")
        ctl = os.path.join(tmp, "ctl.sock")
        for img, size in ((data, SIZE), (logs, 16 << 20)):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(size)],
                           check=True)
        g = harness.run_guest(args["guests"]["blkverify"], "mode=seq batch=16 qd=8 " + SEQ,
                              name="grp", cella_vm=args["cella_vm"],
                              disks=[data + ",cbt=on,id=data", logs + ",cbt=on,id=logs"],
                              extra=["--control", ctl], wrapper=blkutil.MERGE_STDERR)
        with g:
            flushed(g, 10)
            # A full group, then an incremental one.
            last = None
            for p in ("g1", "g2"):
                rep = group(ctl, tmp, p, since=last)
                if not rep.get("ok") or len(rep["exports"]) != 2 or "held_us" not in rep:
                    raise harness.TestFailure(f"disk-export-group {p}: {rep}")
                harness.log(f"group {p}: vCPUs held {rep['held_us']} us for 2 cuts")
                wait_done(ctl, p)
                commit(ctl, p)
                for d in ("data", "logs"):
                    cella_disk(args, "replica", "add", os.path.join(tmp, f"store-{d}"),
                               os.path.join(tmp, f"{d}-{p}.inc"))
                last = p
                flushed(g, 3)  # the guest runs on: not left paused
            flat = os.path.join(tmp, "g2.raw")
            top = sorted(f for f in os.listdir(os.path.join(tmp, "store-data"))
                         if f.endswith(".qcow2"))[-1]
            subprocess.run(["qemu-img", "convert", "-O", "raw",
                            os.path.join(tmp, "store-data", top), flat], check=True)
            point_in_time(flat)

            # Refused whole.
            for what, rep in (
                    ("an unknown disk", group(ctl, tmp, "g3", since=last, disks=("data", "nope"))),
                    ("a disk twice", group(ctl, tmp, "g3", since=last, disks=("data", "data"))),
                    ("no exports", blkutil.control(ctl, {"cmd": "disk-export-group",
                                                         "exports": []}))):
                if rep.get("ok"):
                    raise harness.TestFailure(f"a group with {what} was accepted: {rep}")
                harness.log(f"{what}: {rep['error']}")
            rep = blkutil.control(ctl, {"cmd": "disk-export-group", "exports": [
                {"disk": "data", "point": "g3", "since": last,
                 "path": os.path.join(tmp, "missing")}]})
            if rep.get("ok") or "missing" not in rep.get("error", ""):
                raise harness.TestFailure(f"a group whose output is missing: {rep}")
            if any(e.get("point") == "g3" for e in exports(ctl).values()):
                raise harness.TestFailure(f"a refused group cut a disk: {exports(ctl)}")
            # The second export refused: the first goes too.
            open(os.path.join(tmp, "a.inc"), "wb").close()
            open(os.path.join(tmp, "b.inc"), "wb").close()
            rep = blkutil.control(ctl, {"cmd": "disk-export-group", "exports": [
                {"disk": "data", "point": "g3", "since": last,
                 "path": os.path.join(tmp, "a.inc")},
                {"disk": "logs", "point": "g3", "since": "never-made",
                 "path": os.path.join(tmp, "b.inc")}]})
            x = exports(ctl)
            if rep.get("ok") or x["data"].get("point") != "g3" or \
                    x["data"].get("state") != "cancelled":
                raise harness.TestFailure(f"all or none: {rep}, exports {x}")
            harness.log(f"second refused: {rep['error']}; data's export {x['data']['state']}")
            rep = group(ctl, tmp, "g4", since=last)
            if not rep.get("ok"):
                raise harness.TestFailure(f"a group after a refused one: {rep}")
            wait_done(ctl, "g4")
            commit(ctl, "g4")
            last = "g4"

            # A paused VM stays paused.
            rep = blkutil.control(ctl, {"cmd": "pause"})
            if not rep.get("ok"):
                raise harness.TestFailure(f"pause: {rep}")
            rep = group(ctl, tmp, "g5", since=last)
            st = blkutil.control(ctl, {"cmd": "status"})
            if not rep.get("ok") or st.get("state") != "paused":
                raise harness.TestFailure(f"a group on a paused VM: {rep}; state {st.get('state')}")
            wait_done(ctl, "g5")
            blkutil.control(ctl, {"cmd": "resume"})
            flushed(g, 2)


if __name__ == "__main__":
    harness.main(test)
