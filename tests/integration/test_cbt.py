#!/usr/bin/env python3
"""it-cbt: changed-block tracking and incremental backups end to end.

A qcow2 disk with cbt=on: full backup (`cella disk backup --point p0`), the
guest writes, incremental since p0; the worker restarts and writes again,
incremental since p1; the worker is killed with SIGKILL while writing,
incremental since p2. `cella disk restore` applies the three onto the full
backup, which must then equal the disk (`qemu-img compare`), and each
incremental must hold only the blocks the guest changed."""
import os
import subprocess
import tempfile

import harness


def cella(args, *argv):
    cli = os.path.join(os.path.dirname(args["cella_vm"]), "cli", "cella")
    r = subprocess.run([cli, "disk", *argv], capture_output=True, text=True)
    harness.log(f"cella disk {' '.join(argv)}: {r.stdout.strip()} {r.stderr.strip()}")
    if r.returncode:
        raise harness.TestFailure(f"cella disk {argv[0]} failed with status {r.returncode}")
    return r.stdout


def data_bytes(out):
    return int(out.split(": ")[1].split(" bytes")[0])


def test(args):
    g = args["guests"]
    with tempfile.TemporaryDirectory(prefix="cella-it-cbt-") as tmp:
        img = os.path.join(tmp, "disk.qcow2")
        full = os.path.join(tmp, "full.raw")
        incs = [os.path.join(tmp, f"inc{i}") for i in range(3)]
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "64M"], check=True)
        disk = img + ",cbt=on"
        with harness.run_guest(g["blk"], "mode=write seed=1 mib=8", name="w1",
                               cella_vm=args["cella_vm"], disks=[disk]) as vm:
            vm.expect_pass("blk")
        cella(args, "backup", img, "--point", "p0", "-o", full)

        with harness.run_guest(g["blkverify"], "mode=fill seed=2 mib=2", name="w2",
                               cella_vm=args["cella_vm"], disks=[disk]) as vm:
            vm.expect_pass("blkverify")
        n = data_bytes(cella(args, "backup", img, "--since", "p0", "--point", "p1", "-o",
                             incs[0]))
        if n != 2 << 20:
            raise harness.TestFailure(f"incremental 1 holds {n} bytes, want 2 MiB")

        # A restarted worker keeps tracking (the bitmap is in the file).
        with harness.run_guest(g["blk"], "mode=write seed=3 mib=1", name="w3",
                               cella_vm=args["cella_vm"], disks=[disk]) as vm:
            vm.expect_pass("blk")
        n = data_bytes(cella(args, "backup", img, "--since", "p1", "--point", "p2", "-o",
                             incs[1]))
        # 1 MiB written, then WRITE_ZEROES and DISCARD on the 128 KiB after it
        if n != (1 << 20) + (128 << 10):
            raise harness.TestFailure(f"incremental 2 holds {n} bytes, want 1.125 MiB")

        # kill -9 in the middle of writing: the marks are in the page cache.
        vm = harness.run_guest(g["blkverify"], "mode=seq seed=9 slots=1024 batch=16 qd=8",
                               name="w4", cella_vm=args["cella_vm"], disks=[disk])
        with vm:
            for _ in range(5):
                vm.wait_for(r"^flushed \d+$", 60)
            vm.proc.kill()
            vm.proc.wait()
        n = data_bytes(cella(args, "backup", img, "--since", "p2", "--point", "p3", "-o",
                             incs[2]))
        if not 0 < n <= 4 << 20:
            raise harness.TestFailure(f"incremental 3 holds {n} bytes")

        cella(args, "restore", "-o", full, *incs)
        r = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", full, img],
                           capture_output=True, text=True)
        harness.log(f"qemu-img compare: {r.stdout.strip()}")
        if r.returncode:
            raise harness.TestFailure("restored backup differs from the disk")
        # Out of order: refused before anything is written.
        bad = subprocess.run([os.path.join(os.path.dirname(args["cella_vm"]), "cli", "cella"),
                              "disk", "restore", "-o", full, incs[0], incs[2]],
                             capture_output=True, text=True)
        if bad.returncode == 0 or "does not follow" not in bad.stderr:
            raise harness.TestFailure(f"out-of-order restore: {bad.returncode} {bad.stderr}")


harness.main(test)
