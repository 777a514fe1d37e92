"""test_files.py: a worker's files as descriptors. The finding: cellad
checked a definition's files beneath their storage location, but the worker
(root, before its sandbox) then opened them by name, so a file swapped for a
symlink to a root-only file in between was what the guest got.

Now cellad opens every file itself, with the same call that checks it
(openat2 beneath the location, each backing file too), and the worker gets
descriptors only:

- a running worker's command line and configuration name no file: the
  kernel, the disk, each backing file and the tracking file are "fd:N", and
  those descriptors are the storage files (its /proc/PID/fd); the tracking
  file was created beside the image; an admin's host file is passed the
  same way;
- the guest reads its data through a chain given as descriptors (the blk
  guest verifies a pattern in the backing file), and with the storage files
  swapped for symlinks to a root-only file after cellad opened them, the
  guest still reads the files cellad checked (cella-vm run directly on
  descriptors, as cellad runs it);
- files in a location a user owns are opened with that user's rights (a
  root-only file there is refused, even to root; a tracking file created
  there is the user's);
- a qcow2 whose backing file was replaced by a symlink out of storage after
  the VM was defined: start refused ("leads out of storage"), no worker;
  also below a checkpoint's overlay (cellad's own file, by name): from the
  first backing file in a location on, the chain is followed beneath it;
- a chain link whose name is not the one checked (the image changed in
  between), and descriptors of the wrong kind or mode: cella-vm refuses
  them with a clear error.

Needs root (cellad's sandbox, another uid) and qemu-img."""

import json
import os
import re
import shutil
import subprocess
import tempfile

from cellad import ConsoleTail, Daemon, check, main, skip
from test_storage import OPERATOR, call_as, img

MIB = 2


def blk_guest(d, name, mode, seed):
    """Boot the blk guest once; returns its crc32 line (None) and its lines."""
    r = d.request("PATCH", f"/v1/vms/{name}", {"cmdline": f"mode={mode} seed={seed} mib={MIB}"})
    check(r.status == 200, f"{name}: cmdline {mode} seed={seed}")
    before = len(d.console(name, history=1 << 30).encode())
    d.action(name, "start")
    t = ConsoleTail(d, name, before, timeout=120)
    crc, lines = None, []
    try:
        while True:
            line = t.line()
            lines.append(line)
            m = re.search(rf"blk: {mode} mib={MIB} seed={seed} crc32=(0x[0-9a-f]+)", line)
            if m:
                crc = int(m.group(1), 16)
            if "PASS blk" in line or "FAIL" in line:
                break
    finally:
        t.close()
    d.wait_state(name, ("stopped", "crashed"), timeout=120)
    return crc, lines


def worker_fds(pid):
    """{fd: target} of a process's open descriptors."""
    out = {}
    for n in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(n)] = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            pass
    return out


def fd_of(spec):
    m = re.fullmatch(r"fd:(\d+)", spec or "")
    return int(m.group(1)) if m else None


def run_vm(args, vm_args, pass_fds=(), timeout=120):
    p = subprocess.run([args["cella_vm"], *vm_args], pass_fds=pass_fds, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def test(args):
    if os.geteuid() != 0:
        skip("needs root: cellad's sandbox and an operator's uid")
    if not shutil.which("qemu-img"):
        skip("qemu-img is not installed")
    top = tempfile.mkdtemp(prefix="cella-files-")
    store = os.path.join(top, "images")
    os.makedirs(store)
    secret = os.path.join(top, "secret.raw")  # outside storage, root-only
    with open(secret, "wb") as f:
        f.write(b"the host's secret".ljust(4 << 20, b"\0"))
    os.chmod(secret, 0o600)
    blk = os.path.join(store, "blk.elf")
    shutil.copy(args["guests"]["blk"], blk)
    memw = os.path.join(store, "memwriter.elf")
    shutil.copy(args["guests"]["memwriter"], memw)
    base = os.path.join(store, "base.raw")
    with open(base, "wb") as f:
        f.truncate(4 << 20)
    # A location a user owns: its files are opened with that user's rights.
    ustore = os.path.join(top, "user")
    os.makedirs(ustore)
    for name, owner, group, mode in (("mine.raw", OPERATOR, OPERATOR, 0o600),
                                     ("rootonly.raw", 0, 0, 0o600),
                                     ("rootgroup.raw", 0, 0, 0o640)):
        with open(os.path.join(ustore, name), "wb") as f:
            f.truncate(4 << 20)
        os.chown(os.path.join(ustore, name), owner, group)
        os.chmod(os.path.join(ustore, name), mode)
    os.chown(ustore, OPERATOR, OPERATOR)
    os.chmod(ustore, 0o700)
    for p in (top, store):
        os.chmod(p, 0o755)
    cfg = {"storage": [{"name": "images", "path": store, "role": "operator"},
                       {"name": "user", "path": ustore, "role": "operator"}],
           "roles": {"operator": [f"user:{OPERATOR}"]}}
    try:
        # cellad with root's usual supplementary group (0), which a root
        # shell has on most hosts (this test's own may have none).
        with Daemon(args, config=cfg, wrapper=["setpriv", "--groups=0", "--"]) as d:
            os.chmod(d.sock, 0o666)
            os.chmod(d.dir, 0o755)

            def define(name, **kw):
                body = {"name": name, "kernel": blk, "memory_mib": 64}
                body.update(kw)
                st, js = call_as(d.sock, OPERATOR, "POST", "/v1/vms", body)
                check(st == 201, f"operator: {name} defined ({st} {js})")

            # The pattern goes into the raw base, then a qcow2 on top of it.
            define("w", disks=[{"path": base}])
            crc, lines = blk_guest(d, "w", "write", 5)
            check(crc is not None and "PASS blk" in lines[-1], f"the guest wrote seed 5 ({crc})")
            img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                os.path.join(store, "top.qcow2"))
            define("v", disks=[{"path": os.path.join(store, "top.qcow2"), "cbt": True}])
            vcrc, lines = blk_guest(d, "v", "verify", 5)
            check(vcrc == crc and "PASS blk" in lines[-1],
                  f"the guest verifies the pattern through the chain given as descriptors "
                  f"({vcrc} == {crc})")
            check(os.path.exists(os.path.join(store, "top.qcow2.cbt")),
                  "cellad created the tracking file beside the image")

            # A running worker: no file by name anywhere.
            define("live", kernel=memw, cmdline="rounds=0 pause_ms=200 mib=4",
                   disks=[{"path": os.path.join(store, "top.qcow2"), "cbt": True}])
            d.action("live", "start")
            vm = d.wait_state("live", "running")
            pid = vm["pid"]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
            check(not any(store in a or top in a for a in argv),
                  f"the worker's command line names no storage file: {' '.join(argv)}")
            with open(os.path.join(d.run, vm["uuid"] + ".json")) as f:
                wcfg = json.load(f)
            disk = wcfg["disks"][0]
            check(fd_of(wcfg["kernel"]) is not None and fd_of(disk["path"]) is not None and
                  fd_of(disk.get("cbt_file")) is not None,
                  f"its configuration gives the kernel, the disk and the tracking file as fd:N "
                  f"({wcfg['kernel']}, {disk['path']}, {disk.get('cbt_file')})")
            check([b["name"] for b in disk.get("backing", [])] == ["base.raw"],
                  f"and the backing chain as descriptors with the names checked: "
                  f"{disk.get('backing')}")
            check(store not in json.dumps(wcfg), "no storage path in its configuration")
            fds = worker_fds(pid)
            want = {fd_of(disk["path"]): os.path.join(store, "top.qcow2"),
                    disk["backing"][0]["fd"]: base,
                    fd_of(disk["cbt_file"]): os.path.join(store, "top.qcow2.cbt")}
            # The disk library keeps its own duplicates (the ones passed are
            # closed after setup): the files must be open, whatever number.
            held = set(fds.values())
            check(all(p in held for p in want.values()),
                  f"the worker holds the storage files open: {sorted(held)}")
            check(not any(p.startswith(store) and p not in want.values() for p in held),
                  "and no other storage file")
            d.action("live", "kill")
            d.wait_state("live", ("stopped", "crashed"))

            # Start: a backing file replaced by a symlink out of storage.
            img("create", "-q", "-f", "raw", os.path.join(store, "base2.raw"), "1M")
            img("create", "-q", "-f", "qcow2", "-b", "base2.raw", "-F", "raw",
                os.path.join(store, "top2.qcow2"))
            define("swapped", disks=[{"path": os.path.join(store, "top2.qcow2")}])
            os.unlink(os.path.join(store, "base2.raw"))
            os.symlink(secret, os.path.join(store, "base2.raw"))
            st, js = call_as(d.sock, OPERATOR, "POST", "/v1/vms/swapped/start")
            err = (js or {}).get("error", {})
            check(st >= 400 and "leads out of storage" in err.get("reason", "") and
                  "base2.raw" in err.get("reason", ""),
                  f"start refused once the backing file is a symlink out of storage ({st}: "
                  f"{err.get('reason', '')})")
            check(d.vm("swapped")["pid"] is None, "no worker was spawned")

            # cellad's own overlay (a checkpoint) on an image in storage: the
            # chain is followed beneath the location from the overlay on.
            cpbase = os.path.join(store, "cpbase.raw")
            with open(cpbase, "wb") as f:
                f.truncate(4 << 20)
            define("cp", disks=[{"path": cpbase}])
            d.cli("checkpoint", "create", "cp", "c1", "--kind", "standard")
            overlay = d.vm("cp")["disks"][0]["path"]
            check(overlay != cpbase and not overlay.startswith(store),
                  f"the checkpoint put cellad's overlay on top ({overlay})")
            os.unlink(cpbase)
            os.symlink(secret, cpbase)
            r = d.post("/v1/vms/cp/start")
            reason = (r.json or {}).get("error", {}).get("reason", "")
            check(r.status >= 400 and "leads out of storage 'images'" in reason,
                  f"an overlay whose storage image became a symlink out of it: start refused "
                  f"({r.status}: {reason})")
            check(d.vm("cp")["pid"] is None, "no worker was spawned")

            # An admin's host file (outside every location): opened by cellad too.
            host = os.path.join(top, "host.raw")
            with open(host, "wb") as f:
                f.truncate(4 << 20)
            r = d.post("/v1/vms", {"name": "adm", "kernel": args["guests"]["blk"],
                                   "memory_mib": 64, "disks": [{"path": host}]})
            check(r.status == 201, f"admin: a host file defined ({r.status})")
            acrc, lines = blk_guest(d, "adm", "write", 9)
            check(acrc is not None and "PASS blk" in lines[-1],
                  "admin: the guest writes its host file, given as a descriptor")
            with open(os.path.join(d.run, d.vm("adm")["uuid"] + ".json")) as f:
                acfg = json.load(f)
            check(fd_of(acfg["kernel"]) is not None and fd_of(acfg["disks"][0]["path"]) is not None,
                  f"admin: kernel and disk passed as fd:N ({acfg['kernel']}, "
                  f"{acfg['disks'][0]['path']})")

            # The storage's rights, not root's: the owner of "user" may not
            # read rootonly.raw, so neither may a VM defined from it.
            r = d.post("/v1/vms", {"name": "ur", "kernel": blk, "memory_mib": 64,
                                   "disks": [{"path": os.path.join(ustore, "rootonly.raw")}]})
            check(r.status == 400 and "Permission denied" in r.body,
                  f"a file the location's owner may not read is refused, even to root "
                  f"({r.status} {r.body.strip()[:160]})")
            # Nor through root's groups: rootgroup.raw is readable by group
            # root (cellad's own supplementary group), not by the owner's.
            r = d.post("/v1/vms", {"name": "ug", "kernel": blk, "memory_mib": 64,
                                   "disks": [{"path": os.path.join(ustore, "rootgroup.raw")}]})
            check(r.status == 400 and "Permission denied" in r.body,
                  f"a file only root's group may read is refused: the owner's groups count, "
                  f"not cellad's ({r.status} {r.body.strip()[:160]})")
            r = d.post("/v1/vms", {"name": "um", "kernel": blk, "memory_mib": 64,
                                   "disks": [{"path": os.path.join(ustore, "mine.raw"),
                                              "cbt": True}]})
            check(r.status == 201, f"its owner's own file is fine ({r.status})")
            _, lines = blk_guest(d, "um", "write", 3)
            check("PASS blk" in lines[-1], "a VM runs from it")
            st = os.stat(os.path.join(ustore, "mine.raw.cbt"))
            check(st.st_uid == OPERATOR,
                  f"its tracking file was created with the location's rights (uid {st.st_uid})")

        # cella-vm as cellad runs it: descriptors opened, then the names
        # swapped for symlinks to a root-only file before the worker runs.
        topq = os.path.join(store, "top.qcow2")
        kfd = os.open(blk, os.O_RDONLY)
        tfd = os.open(topq, os.O_RDWR)
        bfd = os.open(base, os.O_RDONLY)
        for p in (blk, topq, base):
            os.rename(p, p + ".orig")
            os.symlink(secret, p)
        conf = os.path.join(top, "vm.json")
        with open(conf, "w") as f:
            json.dump({"kernel": f"fd:{kfd}", "memory_mib": 64,
                       "cmdline": f"mode=verify seed=5 mib={MIB}",
                       "disks": [{"path": f"fd:{tfd}", "format": "qcow2",
                                  "backing": [{"fd": bfd, "name": "base.raw"}]}]}, f)
        rc, out = run_vm(args, ["--config", conf, "--console", "stdio"], (kfd, tfd, bfd))
        # Status 1: the guest wrote 0 (its pass) to the debug-exit port.
        check(rc == 1 and "PASS blk" in out and f"crc32=0x{crc:08x}" in out,
              f"with the names swapped after the open, the guest still reads the checked "
              f"files (status {rc}: {out.strip().splitlines()[-1:]})")

        # The same on the command line, with a tracking file as a descriptor.
        cfd = os.open(os.path.join(top, "direct.cbt"), os.O_RDWR | os.O_CREAT, 0o600)
        rc, out = run_vm(args, ["--kernel", f"fd:{kfd}", "--mem", "64", "--cmdline",
                                f"mode=verify seed=5 mib={MIB}", "--disk",
                                f"fd:{tfd},format=qcow2,backing=fd:{bfd}:base.raw,cbt=on,"
                                f"cbt_file=fd:{cfd}"], (kfd, tfd, bfd, cfd))
        check(rc == 1 and "PASS blk" in out and os.path.getsize(os.path.join(top, "direct.cbt")),
              f"--disk fd:N,backing=fd:N:NAME,cbt_file=fd:N: the guest reads the chain, the "
              f"tracking file is used (status {rc})")
        os.close(cfd)

        # The image changed after it was checked: another backing name.
        with open(conf, "w") as f:
            json.dump({"kernel": f"fd:{kfd}", "memory_mib": 64,
                       "disks": [{"path": f"fd:{tfd}", "format": "qcow2",
                                  "backing": [{"fd": bfd, "name": "other.raw"}]}]}, f)
        rc, out = run_vm(args, ["--config", conf, "--console", "stdio"], (kfd, tfd, bfd))
        check(rc != 0 and "names the backing file base.raw now, not other.raw" in out,
              f"a chain link named otherwise than checked: refused (status {rc}: "
              f"{[l for l in out.splitlines() if 'base.raw' in l][:1]})")
        # No backing descriptor at all, for an image with a backing file.
        rc, out = run_vm(args, ["--kernel", f"fd:{kfd}", "--disk", f"fd:{tfd},format=qcow2"],
                         (kfd, tfd))
        check(rc != 0 and "no descriptor was given for it" in out,
              f"a chain link without its descriptor: refused (status {rc})")
        # Descriptors of the wrong kind or mode.
        dfd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
        rofd = os.open(topq + ".orig", os.O_RDONLY)
        for what, vm_args, fds, want in [
            ("a descriptor that is not open", ["--kernel", "fd:987"], (), "fd:987: not an open "
             "descriptor"),
            ("a directory as the kernel", ["--kernel", f"fd:{dfd}"], (dfd,), "a directory, not "
             "a regular file"),
            ("a read-only descriptor for a writable disk",
             ["--kernel", f"fd:{kfd}", "--disk", f"fd:{rofd}"], (kfd, rofd),
             "open read-only, needed for reading and writing"),
        ]:
            rc, out = run_vm(args, vm_args, fds)
            check(rc == 2 and want in out, f"cella-vm: {what} refused (status {rc}: "
                  f"{out.strip().splitlines()[-1:]})")
        for fd in (kfd, tfd, bfd, dfd, rofd):
            os.close(fd)
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main(test)
