#!/usr/bin/env python3
"""it-storage-loss: storage that fails under a running guest pauses the VM
instead of failing its I/O, and the VM resumes by itself once the storage
works again, with every write intact.

(a) ENOSPC: the image (raw, then qcow2) lives on a small tmpfs that fills
    up while guest/tests/blkverify.c writes; the VM must pause with
    "storage: blk0: No space left on device" (log and control status), then
    the tmpfs is grown (remount size=) and the guest must finish and verify
    every sector; the host checks the image too.
(b) EIO: the image is a dm-linear device switched to the `error` target and
    back (dmsetup suspend/reload/resume); skipped loudly without
    device-mapper.
Needs root (mount, dmsetup)."""
import os
import subprocess
import tempfile

import blkutil
import harness

SEED = 4242
MIB = 24


def run_fill(args, tmp, disk, fmt, on_pause):
    ctl = os.path.join(tmp, "ctl.sock")
    g = harness.run_guest(args["guests"]["blkverify"], f"mode=fill seed={SEED} mib={MIB} qd=8",
                          name=f"fill-{fmt}", cella_vm=args["cella_vm"], disks=[disk],
                          extra=["--control", ctl], wrapper=blkutil.MERGE_STDERR)
    with g:
        g.wait_for(r"^blkverify: progress 1$", 60)
        m = g.wait_for(r"VM paused: (storage: blk0: .*)$", 120)
        reason = m.group(1)
        harness.log(f"paused: {reason}")
        st = blkutil.control(ctl, {"cmd": "status"})
        if st.get("state") != "paused" or st.get("pause_reason") != reason:
            raise harness.TestFailure(f"status while stalled: {st}")
        disk0 = st["disks"][0]
        if not disk0.get("error") or disk0.get("format") != fmt:
            raise harness.TestFailure(f"status disks[0] while stalled: {disk0}")
        on_pause(reason)
        g.wait_for(r"VM resumed: storage: blk0:", 60)
        g.expect_pass("blkverify", timeout=120)
        crc = [l for l in g.lines if l.startswith("blkverify: fill ")]
        harness.log(crc[-1] if crc else "no summary line")
    st = None
    data = blkutil.image_bytes(disk, MIB << 20, fmt, tmp)
    bad = blkutil.check_sectors(data, SEED)
    if bad:
        raise harness.TestFailure(f"{fmt}: {bad} sectors of the image are wrong")
    harness.log(f"{fmt}: image holds all {MIB} MiB")


def test_enospc(args, fmt):
    with tempfile.TemporaryDirectory(prefix="cella-it-enospc-") as tmp:
        mnt = os.path.join(tmp, "fs")
        os.mkdir(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], check=True)
        try:
            disk = os.path.join(mnt, "disk." + fmt)
            if fmt == "raw":
                with open(disk, "wb") as f:
                    f.truncate(64 << 20)
            else:
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"],
                               check=True)

            def grow(reason):
                if "No space left on device" not in reason:
                    raise harness.TestFailure(f"pause reason {reason!r}")
                subprocess.run(["mount", "-o", "remount,size=96m", mnt], check=True)
                harness.log("tmpfs grown to 96 MiB")

            run_fill(args, tmp, disk, fmt, grow)
            if fmt == "qcow2":
                r = subprocess.run(["qemu-img", "check", disk], capture_output=True, text=True)
                harness.log(r.stdout.strip().splitlines()[0] if r.stdout else r.stderr)
                if r.returncode not in (0, 3):  # 3: leaked clusters only
                    raise harness.TestFailure(f"qemu-img check: {r.stdout} {r.stderr}")
        finally:
            subprocess.run(["umount", "-l", mnt])


def test_dm_error(args):
    if subprocess.run(["dmsetup", "version"], capture_output=True).returncode != 0:
        harness.log("#" * 60)
        harness.log("# SKIP (b): no device-mapper in this kernel (/dev/mapper/control)")
        harness.log("#" * 60)
        return False
    with tempfile.TemporaryDirectory(prefix="cella-it-dm-") as tmp:
        backing = os.path.join(tmp, "backing.img")
        with open(backing, "wb") as f:
            f.truncate(64 << 20)
        loop = subprocess.run(["losetup", "-f", "--show", backing], check=True,
                              capture_output=True, text=True).stdout.strip()
        name = f"cella-it-{os.getpid()}"
        sectors = (64 << 20) // 512
        linear = f"0 {sectors} linear {loop} 0"
        try:
            subprocess.run(["dmsetup", "create", name, "--table", linear], check=True)
            dev = f"/dev/mapper/{name}"
            errored = []

            def break_then_fix(reason):
                errored.append(reason)

            # Switch to `error` once the guest has written a few MiB.
            ctl = os.path.join(tmp, "ctl.sock")
            g = harness.run_guest(args["guests"]["blkverify"],
                                  f"mode=fill seed={SEED} mib={MIB} qd=8", name="fill-dm",
                                  cella_vm=args["cella_vm"], disks=[dev],
                                  extra=["--control", ctl], wrapper=blkutil.MERGE_STDERR)
            with g:
                g.wait_for(r"^blkverify: progress 4$", 60)
                for cmd in (["dmsetup", "suspend", name],
                            ["dmsetup", "reload", name, "--table", f"0 {sectors} error"],
                            ["dmsetup", "resume", name]):
                    subprocess.run(cmd, check=True)
                m = g.wait_for(r"VM paused: (storage: blk0: .*)$", 120)
                if "Input/output error" not in m.group(1):
                    raise harness.TestFailure(f"pause reason {m.group(1)!r}")
                for cmd in (["dmsetup", "suspend", name],
                            ["dmsetup", "reload", name, "--table", linear],
                            ["dmsetup", "resume", name]):
                    subprocess.run(cmd, check=True)
                g.wait_for(r"VM resumed: storage: blk0:", 60)
                g.expect_pass("blkverify", timeout=120)
            with open(dev, "rb") as f:
                bad = blkutil.check_sectors(f.read(MIB << 20), SEED)
            if bad:
                raise harness.TestFailure(f"dm: {bad} sectors wrong")
        finally:
            subprocess.run(["dmsetup", "remove", "-f", name])
            subprocess.run(["losetup", "-d", loop])
    return True


def test(args):
    if os.geteuid() != 0:
        harness.skip("needs root (mount, dmsetup)")
    test_enospc(args, "raw")
    test_enospc(args, "qcow2")
    test_dm_error(args)


harness.main(test)
