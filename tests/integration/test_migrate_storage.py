#!/usr/bin/env python3
"""it-migrate_storage: live migration with the disks copied along
(include_storage), raw and qcow2, while the guest writes its disk.

The guest (blkverify mode=seq verify=1) writes numbered 4 KiB blocks over
64 MiB of a 256 MiB disk, each once, flushing every batch; the move happens
in the middle. The destination worker has a new,
empty image of the same size and format at another path. After the move
the guest goes on writing there, then reads every block back and checks
that it holds exactly the last write to it (a block the copy missed or
sent stale fails). Data the guest never touches (a pattern the test wrote
into the source image before boot; for qcow2 in a backing file, so the
chain is flattened on the way) must be in the destination image byte for
byte. Also: a destination whose disk has another size is refused and the
VM runs on at the source; a read-only disk is refused up front.
"""
import os
import shutil
import subprocess
import tempfile

import harness
from harness import TestFailure, log
from test_migrate import MIGRATED, Control, listener, make_pki, read

MiB = 1 << 20
DISK = 256 * MiB
PATTERN = (128 * MiB, 8 * MiB)  # untouched by the guest: offset, length
FLUSHED = r"^flushed (\d+)$"


# Each of the 16384 slots (4 KiB apart: 64 MiB) is written exactly once, in a
# scattered order, so what the source wrote before the pause stays as the
# copy left it: a block the copy missed or sent stale is found by the
# guest's final check. The disks' IOPS limit stretches the writing over
# about 8 s, so the move (a second or two here) happens in the middle.
SLOTS = 16384
IOPS = 2000


def guest_args():
    return f"mode=seq slots={SLOTS} stride=4096 rounds={SLOTS} batch=64 qd=16 verify=1 seed=11"


def make_images(tmp, fmt, qemu_img):
    """Source image with the pattern at PATTERN (qcow2: in a raw backing
    file), destination image: new and empty. Returns (src, dst, pattern)."""
    pattern = os.urandom(PATTERN[1])
    base = os.path.join(tmp, f"base-{fmt}.raw")
    with open(base, "wb") as f:
        f.truncate(DISK)
        f.seek(PATTERN[0])
        f.write(pattern)
    dst = os.path.join(tmp, f"dst.{fmt}")
    if fmt == "raw":
        src = base
        with open(dst, "wb") as f:
            f.truncate(DISK)
    else:
        src = os.path.join(tmp, "src.qcow2")
        subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, src],
                       check=True)
        subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", dst, str(DISK)], check=True)
    return src, dst, pattern


def read_range(path, fmt, qemu_img, tmp, off, length):
    if fmt != "raw":
        flat = os.path.join(tmp, "flat.raw")
        subprocess.run([qemu_img, "convert", "-f", fmt, "-O", "raw", path, flat], check=True)
        path = flat
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(length)


def start_destination(args, pki, disk, fmt, sock, name, cmdline):
    fd = sock.fileno()
    cmd = harness.build_command("cella", args["cella_vm"], args["guests"]["blkverify"],
                                cmdline, mem=128,
                                extra=["--disk", f"{disk},format={fmt},iops={IOPS}",
                                       "--incoming", f"fd:{fd}",
                                       "--tls-cert", f"{pki}/dst.crt",
                                       "--tls-key", f"{pki}/dst.key",
                                       "--tls-ca", f"{pki}/ca.crt",
                                       "--tls-peer", "src.cella.test"])
    return harness.Guest(cmd, name).start(pass_fds=(fd,))


def migrate_request(pki, port, **kw):
    req = {"cmd": "migrate", "host": "127.0.0.1", "port": port, "include_storage": True,
           "tls": {"cert": read(pki, "src.crt"), "key": read(pki, "src.key"),
                   "ca": read(pki, "ca.crt"), "name": "dst.cella.test"}}
    req.update(kw)
    return req


def start_source(args, tmp, disk, fmt, cmdline, name, ro_disk=None):
    ctl_path = os.path.join(tmp, f"{name}.sock")
    extra = ["--disk", f"{disk},format={fmt},iops={IOPS}"]
    if ro_disk:
        extra += ["--disk", f"{ro_disk},ro"]
    cmd = harness.build_command("cella", args["cella_vm"], args["guests"]["blkverify"],
                                cmdline, mem=128, extra=extra + ["--control", ctl_path])
    return harness.Guest(cmd, name).start(), ctl_path


def wrong_size(args, tmp, pki, src, fmt, cmdline):
    """A destination disk of another size: refused, the source runs on."""
    other = os.path.join(tmp, "small.raw")
    with open(other, "wb") as f:
        f.truncate(DISK // 2)
    g, ctl_path = start_source(args, tmp, src, fmt, cmdline, "src-size")
    ctl = Control(ctl_path)
    sock, port = listener()
    dst = start_destination(args, pki, other, "raw", sock, "dst-small", cmdline)
    sock.close()
    try:
        g.wait_for(FLUSHED, 60)
        rep = ctl.call(migrate_request(pki, port), 120)
        log(f"migrate to a smaller disk: {rep}")
        if rep.get("ok") or "bytes" not in rep.get("error", ""):
            raise TestFailure(f"a destination disk of another size was accepted: {rep}")
        if dst.wait_exit(30) != 4:
            raise TestFailure("the refusing destination did not exit with status 4")
        a = int(g.wait_for(FLUSHED, 30).group(1))
        b = int(g.wait_for(FLUSHED, 30).group(1))
        st = ctl.call({"cmd": "status"})
        if b <= a or st.get("state") != "running":
            raise TestFailure(f"the source did not run on after the refusal: {st}")
    finally:
        ctl.close()
        g.kill()
        dst.kill()


def read_only(args, tmp, pki, src, fmt, cmdline):
    """A read-only second disk: include_storage refuses at once (the new
    image at the destination would be opened read-only too)."""
    ro = os.path.join(tmp, "ro.raw")
    with open(ro, "wb") as f:
        f.truncate(MiB)
    g, ctl_path = start_source(args, tmp, src, fmt, cmdline, "src-ro", ro_disk=ro)
    ctl = Control(ctl_path)
    try:
        g.wait_for(FLUSHED, 60)
        rep = ctl.call(migrate_request(pki, 1), 60)
        log(f"migrate with a read-only disk: {rep}")
        if rep.get("ok") or "read-only" not in rep.get("error", ""):
            raise TestFailure(f"include_storage with a read-only disk: {rep}")
    finally:
        ctl.close()
        g.kill()


def move(args, tmp, pki, fmt, qemu_img):
    src, dst_img, pattern = make_images(tmp, fmt, qemu_img)
    cmdline = guest_args()
    if fmt == "raw":
        wrong_size(args, tmp, pki, src, fmt, cmdline)
        read_only(args, tmp, pki, src, fmt, cmdline)
        # Start again from a clean source disk: the attempts above wrote it.
        src, dst_img, pattern = make_images(tmp, fmt, qemu_img)
    g, ctl_path = start_source(args, tmp, src, fmt, cmdline, f"src-{fmt}")
    ctl = Control(ctl_path)
    sock, port = listener()
    dst = start_destination(args, pki, dst_img, fmt, sock, f"dst-{fmt}", cmdline)
    sock.close()
    try:
        # A fifth of the writes first: the copy must carry them.
        while int(g.wait_for(FLUSHED, 60).group(1)) < SLOTS // 5:
            pass
        rep = ctl.call(migrate_request(pki, port), 240)
        log(f"migrate reply ({fmt}): {rep}")
        if not rep.get("ok"):
            raise TestFailure(f"migration with storage failed: {rep.get('error')}")
        if g.wait_exit(30) != MIGRATED:
            raise TestFailure("the source did not exit with status 16")
        src_last = max(int(l.split()[1]) for l in g.lines if l.startswith("flushed "))
        if src_last >= SLOTS or any(l.startswith("ok:") for l in g.lines):
            raise TestFailure("the guest finished writing before the move was over")
        # The destination goes on writing, then checks every block.
        m = dst.wait_for(FLUSHED, 60)
        log(f"{fmt}: source flushed up to write {src_last}, destination went on at "
            f"{m.group(1)}; {rep['rounds']} rounds, disk {rep.get('disk_bytes')} bytes "
            f"(+{rep.get('disk_zero_bytes')} zeroed), {rep['total_ms']} ms, downtime "
            f"{rep['downtime_ms']:.3f} ms")
        dst.expect_pass("blkverify", timeout=180)
    finally:
        ctl.close()
        g.kill()
        dst.kill()
    got = read_range(dst_img, fmt, qemu_img, tmp, *PATTERN)
    if got != pattern:
        raise TestFailure(f"{fmt}: the data the guest never touched differs at the "
                          f"destination")
    if fmt == "qcow2":
        subprocess.run([qemu_img, "check", "-q", dst_img], check=True)
    log(f"{fmt}: destination image verified (guest's check and the untouched pattern)")


def test(args):
    if not shutil.which("openssl"):
        harness.skip("the openssl command is needed to make test certificates")
    qemu_img = shutil.which("qemu-img")
    with tempfile.TemporaryDirectory(prefix="cella-it-migrate-storage-") as tmp:
        pki = os.path.join(tmp, "pki")
        os.mkdir(pki)
        make_pki(pki)
        move(args, tmp, pki, "raw", qemu_img)
        if not qemu_img:
            harness.skip("qemu-img is needed for the qcow2 part (raw passed)")
        move(args, tmp, pki, "qcow2", qemu_img)


if __name__ == "__main__":
    harness.main(test)
