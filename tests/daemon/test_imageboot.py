#!/usr/bin/env python3
"""test_imageboot.py: a VM created with `cella vm create NAME --image IMG`
(no kernel) boots the default entry of the image's own /boot, read by
cellad (disk/bootfs.c, daemon/worker/imageboot.c; docs/boot.md, "Booting
from a disk image").

Images made here with mkfs.ext4 -d from a staging tree whose /boot holds the
microVM guest kernel (scripts/build-guest-kernel.sh, cached): one with a
grub.cfg (two entries; the default one boots) converted to qcow2, one with
Boot Loader Specification entries (raw). Both boot through cellad, at the
same time, until the kernel log shows the right kernel with the right
command line (`Command line:`, the entry's own marker parameter) and, for
the grub image, the virtio-blk probe of the image itself as vda and its
ext4 root mounted. The full boot to /init is it-linux-boot's; here the VMs
are killed once the markers are seen (~60-90 s on this host, longer when it
is loaded).

Refusals, each a 400 at start naming disks[0].path with the reason: no
/boot, a broken grub.cfg, xfs and vfat images (skipped loudly without
mkfs.xfs / mkfs.vfat), a kernel path escaping the file system through a
symlink; and a definition with neither kernel nor disk (400, kernel).
"""
import os
import shutil
import subprocess
import tempfile
import threading

from cellad import Daemon, TestFailure, check, log, main, skip

SRCDIR = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BOOT_TIMEOUT = 900  # a guard against a hung VM only (loaded 2-core host)
# The microVM kernel's command line as cella-vm gives it by default, plus
# the root on the image itself (vda) and a marker naming the entry.
BASE = ("console=ttyS0 reboot=k panic=-1 pci=off i8042.noaux i8042.nomux i8042.nopnp "
        "i8042.dumbkbd root=/dev/vda rw rootfstype=ext4 init=/init")

GRUB_CFG = f"""# written by the test, shaped like update-grub's
if [ "${{next_entry}}" ] ; then
   set default="${{next_entry}}"
else
   set default="0"
fi
menuentry 'Cella microVM Linux' --class os $menuentry_id_option 'cella-grub' {{
	insmod ext2
	set root='hd0'
	linux	/boot/vmlinuz-6.1-cella {BASE} cella.entry=grub-default
}}
menuentry 'Not this one' {{
	linux	/boot/vmlinuz-6.1-cella {BASE} cella.entry=grub-other
}}
"""


def sh(*cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise TestFailure(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r.stdout


def kernel():
    prebuilt = os.environ.get("CELLA_GUEST_KERNEL")
    if prebuilt:
        return prebuilt
    r = subprocess.run([os.path.join(SRCDIR, "scripts", "build-guest-kernel.sh")],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode:
        raise TestFailure("the guest kernel did not build")
    return r.stdout.strip().splitlines()[-1]


def staged(tmp, name, kernel_path, files):
    """A staging tree with /boot/vmlinuz-6.1-cella and `files` {path: text}."""
    root = os.path.join(tmp, name)
    os.makedirs(os.path.join(root, "boot"))
    for d in ("dev", "proc", "sys", "tmp"):
        os.makedirs(os.path.join(root, d))
    if kernel_path:
        shutil.copy(kernel_path, os.path.join(root, "boot", "vmlinuz-6.1-cella"))
    for p, text in files.items():
        full = os.path.join(root, p)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    return root


def ext4(tmp, name, root, size="48M"):
    img = os.path.join(tmp, name)
    sh("mkfs.ext4", "-q", "-F", "-d", root, img, size)
    return img


def boot_until(d, name, markers, errors):
    """Follow the console until every marker is seen (in any order)."""
    try:
        text = ""
        for m in markers:
            if m not in text:
                text = d.wait_console(name, m, timeout=BOOT_TIMEOUT)
            log(f"{name}: seen {m!r}")
    except Exception as e:  # a console read timing out included
        errors.append(f"{name}: {type(e).__name__}: {e}")
    # Done with it: its CPU goes to the other VM (the host is shared).
    d.post(f"/v1/vms/{name}/kill")


def refused(d, name, img, want):
    r = d.post("/v1/vms", {"name": name, "memory_mib": 64, "disks": [{"path": img}]})
    if r.status != 201:
        raise TestFailure(f"create {name}: {r}")
    r = d.post(f"/v1/vms/{name}/start")
    reason = (r.json or {}).get("error", {}).get("reason", "") if r.status != 200 else ""
    check(r.status == 400 and r.json["error"]["field"] == "disks[0].path" and want in reason,
          f"{name}: start refused (400, disks[0].path): {reason!r}")
    vm = d.vm(name)
    check(vm["state"] != "running" and not vm.get("pid"),
          f"{name}: no worker started (state {vm['state']})")


def test(args):
    for tool in ("mkfs.ext4", "qemu-img"):
        if not shutil.which(tool):
            skip(f"{tool} missing (scripts/setup.sh installs it)")
    bz = kernel()
    tmp = tempfile.mkdtemp(prefix="cella-ib-")
    try:
        with Daemon(args) as d:
            run(d, tmp, bz)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(d, tmp, bz):
    # A definition with neither a kernel nor a disk.
    r = d.post("/v1/vms", {"name": "nothing", "memory_mib": 64})
    check(r.status == 400 and r.json["error"]["field"] == "kernel" and
          "first disk" in r.json["error"]["reason"], f"no kernel, no disk: 400 ({r})")

    # The images that boot: grub.cfg (as qcow2), BLS entries (raw).
    graw = ext4(tmp, "grub.raw", staged(tmp, "grub", bz, {"boot/grub/grub.cfg": GRUB_CFG}))
    gq = os.path.join(tmp, "grub.qcow2")
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", graw, gq)
    os.unlink(graw)
    bls = ext4(tmp, "bls.raw", staged(tmp, "bls", bz, {
        "boot/loader/entries/cella-6.1.conf":
            "title Cella BLS\nversion 6.1\nlinux /boot/vmlinuz-6.1-cella\n"
            f"options {BASE}\noptions cella.entry=bls-newest\n",
        "boot/loader/entries/cella-5.10.conf":
            f"title Older\nversion 5.10\nlinux /boot/vmlinuz-6.1-cella\noptions {BASE} "
            "cella.entry=bls-older\n"}))

    d.cli("vm", "create", "ibgrub", "--image", gq, "--memory", "256")
    vm = d.vm("ibgrub")
    check(vm["kernel"] == "" and vm["disks"][0]["path"] == gq,
          f"--image: no kernel, the image as disk 0 ({vm['kernel']!r}, {vm['disks']})")
    d.cli("vm", "create", "ibbls", "--image", bls, "--memory", "256", "--cmdline", "cella.extra=1")
    d.action("ibgrub", "start")
    d.action("ibbls", "start")
    cl_grub = f"Command line: BOOT_IMAGE=/boot/vmlinuz-6.1-cella {BASE} cella.entry=grub-default"
    cl_bls = f"Command line: {BASE} cella.entry=bls-newest cella.extra=1"
    errors = []
    threads = [
        threading.Thread(target=boot_until, args=(d, "ibgrub", [
            "Linux version 6.1", cl_grub, "virtio_blk virtio0: [vda]",
            "EXT4-fs (vda): mounted filesystem"], errors)),
        threading.Thread(target=boot_until, args=(d, "ibbls", ["Linux version 6.1", cl_bls],
                                                  errors)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise TestFailure("; ".join(errors))
    check(True, "grub.cfg (qcow2) and BLS (raw) images boot their default entries through "
          "cellad, the definition's --cmdline appended")
    for name in ("ibgrub", "ibbls"):
        d.wait_state(name, "stopped")
    check("boots from its image: the disk (ext4): /boot/grub/grub.cfg, entry \"Cella microVM "
          "Linux\": /boot/vmlinuz-6.1-cella" in d.log(), "cellad logs what it booted")

    # Refusals: named at start, nothing started.
    root = os.path.join(tmp, "noboot-root")
    os.makedirs(os.path.join(root, "etc"))
    noboot = ext4(tmp, "noboot.raw", root, "8M")
    refused(d, "rnoboot", noboot, "no /boot")
    broken = ext4(tmp, "broken.raw", staged(tmp, "broken", None, {
        "boot/grub/grub.cfg": "menuentry 'Broken {\n\tlinux /boot/vmlinuz\n}\n"}), "8M")
    refused(d, "rbroken", broken, "/boot/grub/grub.cfg line 1: unterminated quote")
    esc = staged(tmp, "escape", None, {})
    os.symlink("../../../../../../etc/shadow", os.path.join(esc, "boot", "vmlinuz"))
    refused(d, "rescape", ext4(tmp, "escape.raw", esc, "8M"), "escapes the file system")
    for fs, mkfs, size, opts in (("xfs", "mkfs.xfs", "320M", ["-q"]),
                                 ("vfat", "mkfs.vfat", "32M", [])):
        if not shutil.which(mkfs):
            log(f"SKIP: {mkfs} missing: the {fs} refusal is not tested (setup.sh installs it)")
            continue
        img = os.path.join(tmp, fs + ".raw")
        with open(img, "wb") as f:
            f.truncate(int(size[:-1]) << 20)
        sh(mkfs, *opts, img)
        refused(d, "r" + fs, img, f"unsupported filesystem: {fs}")


if __name__ == "__main__":
    main(test, need_root=True)
