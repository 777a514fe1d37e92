#!/usr/bin/env python3
"""it-disk-control: the worker's disk commands on a running VM: `status`
lists the disks, `set-qos` changes a disk's limits live (and slows the
guest down), `flush-disks` flushes, `disk-switch` moves the disk onto a new
qcow2 top layer whose backing file is the old image, which stays untouched
while the guest keeps writing; the new chain then checks clean and holds
only valid blocks."""
import hashlib
import os
import subprocess
import tempfile
import time

import blkutil
import harness


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def lines_rate(g, n):
    t0 = time.monotonic()
    for _ in range(n):
        g.wait_for(r"^flushed \d+$", 60)
    return n / (time.monotonic() - t0)


def test(args):
    with tempfile.TemporaryDirectory(prefix="cella-it-dctl-") as tmp:
        img = os.path.join(tmp, "disk.qcow2")
        over = os.path.join(tmp, "over.qcow2")
        ctl = os.path.join(tmp, "ctl.sock")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "32M"], check=True)
        g = harness.run_guest(args["guests"]["blkverify"],
                              "mode=seq seed=5 slots=1024 batch=16 qd=8", name="seq",
                              cella_vm=args["cella_vm"], disks=[img + ",id=data"],
                              extra=["--control", ctl], wrapper=blkutil.MERGE_STDERR)
        with g:
            g.wait_for(r"^flushed \d+$", 60)
            st = blkutil.control(ctl, {"cmd": "status"})
            d = st["disks"][0]
            if (d["id"], d["path"], d["format"], d["error"]) != ("data", img, "qcow2", None):
                raise harness.TestFailure(f"status disks: {st['disks']}")
            fast = lines_rate(g, 10)
            rep = blkutil.control(ctl, {"cmd": "set-qos", "disk": "data", "iops": 170,
                                        "iops_burst": 17})
            if not rep.get("ok") or rep["qos"]["iops"] != 170:
                raise harness.TestFailure(f"set-qos: {rep}")
            g.wait_for(r"^flushed \d+$", 60)
            q0 = blkutil.control(ctl, {"cmd": "status"})["disks"][0]["qos"]
            slow = lines_rate(g, 10)  # 17 operations a line: about 10 lines/s
            q1 = blkutil.control(ctl, {"cmd": "status"})["disks"][0]["qos"]
            harness.log(f"flushed lines/s: {fast:.1f} unlimited, {slow:.1f} at iops=170; "
                        f"requests held for tokens: {q1['delayed'] - q0['delayed']}")
            # The limit is an upper bound whatever the host's load (a busy
            # host only lowers the rate), and the buckets must have held
            # requests back: no comparison with the unlimited run's speed.
            # 10 lines take at least 9 lines' worth of tokens (the burst,
            # 17, covers one): at most 11.1 lines/s, plus a margin.
            if slow > 14:
                raise harness.TestFailure("set-qos did not slow the guest down")
            if q1["delayed"] <= q0["delayed"] or q1["admitted_ops"] <= q0["admitted_ops"]:
                raise harness.TestFailure(f"the QoS buckets held nothing back: {q0} -> {q1}")
            if q1["iops"] != 170:
                raise harness.TestFailure("status does not show the new limit")
            bad = blkutil.control(ctl, {"cmd": "set-qos", "disk": "nope", "iops": 1})
            if bad.get("ok") or "no disk" not in bad.get("error", ""):
                raise harness.TestFailure(f"set-qos on an unknown disk: {bad}")
            blkutil.control(ctl, {"cmd": "set-qos", "disk": "data", "iops": 0,
                                  "iops_burst": 0})
            rep = blkutil.control(ctl, {"cmd": "flush-disks"})
            if not rep.get("ok"):
                raise harness.TestFailure(f"flush-disks: {rep}")

            # -u: the running VM holds the image; the size is given.
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", img,
                            "-F", "qcow2", over, "32M"], check=True)
            rep = blkutil.control(ctl, {"cmd": "disk-switch", "disk": "data", "path": over})
            if not rep.get("ok"):
                raise harness.TestFailure(f"disk-switch: {rep}")
            base_sum = sha(img)
            for _ in range(10):
                g.wait_for(r"^flushed \d+$", 60)
            if sha(img) != base_sum:
                raise harness.TestFailure("the old top image changed after disk-switch")
            if blkutil.control(ctl, {"cmd": "status"})["disks"][0]["error"] is not None:
                raise harness.TestFailure("disk error after the switch")
            g.proc.kill()
            g.proc.wait()
        r = subprocess.run(["qemu-img", "check", over], capture_output=True, text=True)
        if r.returncode not in (0, 3):
            raise harness.TestFailure(f"qemu-img check: {r.stdout}{r.stderr}")
        with harness.run_guest(args["guests"]["blkverify"], "mode=seqcheck seed=5 slots=1024",
                               name="check", cella_vm=args["cella_vm"], disks=[over]) as c:
            c.expect_pass("blkverify")


harness.main(test)
