"""test_jobs.py: cellad killed (SIGKILL) in the middle of a long operation;
the next cellad finds the job in its store and finishes or rolls it back.

Each case runs a cellad whose test_crash_at names the job phase at which it
kills itself (right after recording that phase), then starts a second cellad
on the same state and checks from the outside: the VM's reported state, the
job's outcome event, the files in the VM's directory (nothing leaked), the
images (qemu-img check, qemu-img compare against the data written before)
and, for running VMs, that the guest carries on.

  save:saving                    rolled back: the VM runs on, no state file
  save:saved                     finished: the VM is saved and restores
  checkpoint-create:switching    rolled back: overlays gone, no checkpoint
  checkpoint-create:switched     finished: the checkpoint is recorded
  checkpoint-delete:layer-merged finished: the merge repeated, data intact
  checkpoint-apply:switching     rolled back: new overlays gone, disks kept
  start:begun                    rolled back: the VM is as it was, starts again

Moves, with two cellads in two network namespaces (test_move.py's set-up;
needs root, skipped loudly without it):

  move-out:migrating   (source) rolled back: the destination drops its half,
                       the VM runs on at the source
  move-out:committing  (source) finished: the worker had moved the VM; the
                       new cellad commits at the destination and forgets it
  move-in:begun        (destination, include_storage) rolled back: no VM and
                       no image left there; the VM runs on at the source
"""

import http.client
import json
import os
import shutil
import subprocess
import tempfile

from cellad import ConsoleTail, Daemon, check, log, main, memwriter_rounds


def crash(d, method, path, body=None):
    """Make the request that kills cellad at its crash point."""
    try:
        r = d.request(method, path, body)
        check(False, f"cellad answered {r} instead of dying at {d.config['test_crash_at']}")
    except (http.client.HTTPException, ConnectionError, OSError):
        pass
    d.proc.wait(timeout=60)
    d.logf.close()
    d.logf = None
    check(d.proc.returncode == -9, f"cellad killed itself at {d.config['test_crash_at']} "
          f"(status {d.proc.returncode})")


def restart(args, d):
    """A new cellad on the dead one's state (same directories)."""
    d2 = Daemon(args, name="cellad-2", keep_dir=d.dir)
    d2.cgroup_parent = d.cgroup_parent
    d2.config["cgroup_parent"] = d.cgroup_parent
    return d2.start()


def cleanup(d, d2):
    """End the live cellad of a case: the restarted one, or the first if
    it never crashed."""
    if d2:
        d2.cleanup()
    elif d.proc.poll() is None:
        d.cleanup()


def job_event(d, vm, outcome, kind):
    ev = d.wait_event(vm, outcome)
    check(ev.get("detail", "").startswith(kind), f"{vm}: {outcome} {ev.get('detail')}")
    return ev


def vm_files(d, vm):
    path = os.path.join(d.state, "vms", d.vm(vm)["uuid"])
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def referenced(d, vm):
    """Files of the VM's directory the VM or its checkpoints use."""
    names = {os.path.basename(x["path"]) for x in d.vm(vm)["disks"]}
    for cp in d.get(f"/v1/vms/{vm}/checkpoints").json["checkpoints"]:
        names |= {os.path.basename(layer["path"]) for layer in cp["layers"]}
        if cp.get("memory"):
            names.add(f"cp-{cp['name']}.state")
    return names


def img_check(path):
    r = subprocess.run(["qemu-img", "check", "-U", path], capture_output=True, text=True)
    check(r.returncode == 0, f"qemu-img check {os.path.basename(path)}: {r.stdout.strip()}")


def flat(path, out):
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", path, out], check=True)


def case_save(args, point, tmp):
    cfg = {"test_crash_at": point}
    d = Daemon(args, name="cellad-1", config=cfg).start()
    d2 = None
    try:
        d.define("s", "memwriter", "mib=4 rounds=0 pause_ms=50")
        d.action("s", "start")
        t = ConsoleTail(d, "s", 0)
        memwriter_rounds(t, 2)
        t.close()
        pid = d.vm("s")["pid"]
        crash(d, "POST", "/v1/vms/s/save")
        d2 = restart(args, d)
        saved = os.path.join(d2.state, "vms", d2.vm("s")["uuid"], "saved.state")
        if point == "save:saving":
            job_event(d2, "s", "job-rolled-back", "save at phase saving")
            vm = d2.vm("s")
            check(vm["state"] == "running" and vm["pid"] == pid,
                  f"the VM runs on in the same worker: {vm['state']} pid {vm['pid']}")
            check(not os.path.exists(saved), "no state file left behind")
            t = ConsoleTail(d2, "s", len(d2.console("s", history=1 << 30).encode()))
            memwriter_rounds(t, 1)
            t.close()
            check(True, "the guest carries on")
        else:
            job_event(d2, "s", "job-finished", "save at phase saved")
            vm = d2.wait_state("s", "saved")
            check(os.path.getsize(saved) > 0, "the saved state is kept")
            d2.action("s", "start")
            d2.wait_state("s", "running")
            t = ConsoleTail(d2, "s", 0)
            memwriter_rounds(t, 1)
            t.close()
            check(True, "the saved VM restores and carries on")
        d2.action("s", "kill")
    finally:
        cleanup(d, d2)


def case_checkpoint_create(args, point, tmp):
    disk = os.path.join(tmp, f"cc-{point.split(':')[1]}.img")
    with open(disk, "wb") as f:
        f.truncate(4 << 20)
    d = Daemon(args, name="cellad-1", config={"test_crash_at": point}).start()
    d2 = None
    try:
        d.define("c", "memwriter", "mib=4 rounds=0 pause_ms=50",
                 disks=[{"path": disk, "id": "d0"}])
        d.action("c", "start")
        t = ConsoleTail(d, "c", 0)
        memwriter_rounds(t, 2)
        t.close()
        pid = d.vm("c")["pid"]
        crash(d, "POST", "/v1/vms/c/checkpoints", {"name": "cp", "kind": "standard"})
        d2 = restart(args, d)
        vm = d2.vm("c")
        check(vm["state"] == "running" and vm["pid"] == pid, f"the VM runs on: {vm['state']}")
        cps = d2.get("/v1/vms/c/checkpoints").json["checkpoints"]
        if point.endswith("switching"):
            job_event(d2, "c", "job-rolled-back", "checkpoint-create at phase switching")
            check(cps == [], f"no checkpoint recorded: {cps}")
            check(vm["disks"][0]["path"] == disk, "the disk is still the original image")
            check(vm_files(d2, "c") == [], f"no overlay or memory file left: {vm_files(d2, 'c')}")
            r = d2.post("/v1/vms/c/checkpoints", {"name": "cp", "kind": "production"})
            check(r.status == 201, f"the same checkpoint can be taken again: {r}")
        else:
            job_event(d2, "c", "job-finished", "checkpoint-create at phase switched")
            check([c["name"] for c in cps] == ["cp"] and cps[0]["memory"],
                  f"the checkpoint is recorded with its memory: {cps}")
            top = vm["disks"][0]["path"]
            check(top != disk and top.endswith(".qcow2"), f"the VM writes into the overlay {top}")
            check(vm["checkpoint"] == "cp", "cp is current")
            img_check(top)
            files = set(vm_files(d2, "c"))
            check(files == referenced(d2, "c") - {os.path.basename(disk)},
                  f"only the overlay and the memory file: {files}")
        t = ConsoleTail(d2, "c", len(d2.console("c", history=1 << 30).encode()))
        memwriter_rounds(t, 1)
        t.close()
        check(True, "the guest carries on")
        d2.action("c", "kill")
    finally:
        cleanup(d, d2)


def qemu_io_write(path, pattern, offset):
    subprocess.run(["qemu-io", "-f", "qcow2" if path.endswith(".qcow2") else "raw", "-c",
                    f"write -P {pattern} {offset} 64k", path], check=True,
                   capture_output=True)


def case_checkpoint_delete(args, point, tmp):
    base = os.path.join(tmp, "cd.img")
    with open(base, "wb") as f:
        f.truncate(4 << 20)
    qemu_io_write(base, 0x11, 0)
    d = Daemon(args, name="cellad-1", config={"test_crash_at": point}).start()
    d2 = None
    try:
        d.define("k", "hello", disks=[{"path": base, "id": "d0"}])
        check(d.post("/v1/vms/k/checkpoints", {"name": "cp1", "kind": "production"}).status
              == 201, "cp1")
        qemu_io_write(d.vm("k")["disks"][0]["path"], 0x22, 65536)
        check(d.post("/v1/vms/k/checkpoints", {"name": "cp2", "kind": "production"}).status
              == 201, "cp2")
        qemu_io_write(d.vm("k")["disks"][0]["path"], 0x33, 131072)
        # What each point shows, flattened, before the delete.
        cps = {c["name"]: c for c in d.get("/v1/vms/k/checkpoints").json["checkpoints"]}
        want_cp2 = os.path.join(tmp, "want-cp2.raw")
        want_top = os.path.join(tmp, "want-top.raw")
        flat(cps["cp2"]["layers"][0]["path"], want_cp2)
        flat(d.vm("k")["disks"][0]["path"], want_top)
        # cp1's layer is the original image (never merged): delete cp2,
        # whose layer has one dependent (the active overlay).
        crash(d, "DELETE", "/v1/vms/k/checkpoints/cp2")
        d2 = restart(args, d)
        job_event(d2, "k", "job-finished", "checkpoint-delete at phase layer-merged")
        cps = {c["name"]: c for c in d2.get("/v1/vms/k/checkpoints").json["checkpoints"]}
        check(set(cps) == {"cp1"}, f"cp2 is gone: {sorted(cps)}")
        vm = d2.vm("k")
        check(vm["checkpoint"] == "cp1", f"cp1 is current: {vm['checkpoint']}")
        top = vm["disks"][0]["path"]
        img_check(top)
        got = os.path.join(tmp, "got-top.raw")
        flat(top, got)
        r = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", want_top, got],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"the VM's disk is unchanged by the merge: {r.stdout.strip()}")
        files = set(vm_files(d2, "k"))
        check(files == referenced(d2, "k") - {os.path.basename(base)},
              f"no layer left behind: {sorted(files)}")
        d2.action("k", "start")
        d2.wait_state("k", ("stopped", "crashed"))
        check(d2.vm("k")["state"] == "stopped", "the VM boots from the merged chain")
    finally:
        cleanup(d, d2)


def ns_restart(args, d, host, ns, certs):
    """A new cellad in the namespace, on the dead one's state."""
    import test_move
    d2 = test_move.NsDaemon(args, host, ns, certs)
    d2.dir = d.dir
    d2.sock, d2.state, d2.run, d2.log_path = d.sock, d.state, d.run, d.log_path
    d2.name = f"cellad-{host}-2"
    return d2.start()


def move_case(args, net, certs, point, crash_side, storage=False):
    import test_move
    a = test_move.NsDaemon(args, "a", net.ns["a"], certs)
    b = test_move.NsDaemon(args, "b", net.ns["b"], certs)
    (a if crash_side == "a" else b).config["test_crash_at"] = point
    a.start()
    b.start()
    a2 = b2 = None
    tmp = tempfile.mkdtemp(prefix="cella-jobs-mv-")
    try:
        a.cli("host", "add", "b", "--url", f"https://{test_move.ADDR['b']}:{test_move.PORT}",
              "--token-file", f"{certs}/b.token")
        disks = []
        if storage:
            img = os.path.join(tmp, "mv.qcow2")
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "16M"], check=True)
            os.chmod(tmp, 0o777)
            os.chmod(img, 0o666)
            disks = [{"path": img, "id": "d0"}]
        a.define("mw", "memwriter", cmdline=test_move.GUEST, disks=disks)
        a.action("mw", "start")
        test_move.wait_rounds(a, "mw", 0, 2)
        pid = a.vm("mw")["pid"]
        body = {"to": "b", "include_storage": storage}
        if crash_side == "a":
            crash(a, "POST", "/v1/vms/mw/move", body)
            a2 = ns_restart(args, a, "a", net.ns["a"], certs)
            src = a2
        else:
            r = a.post("/v1/vms/mw/move", body)
            check(r.status >= 400, f"the move fails when the destination dies: {r.status}")
            b.proc.wait(timeout=60)
            b.logf.close()
            b.logf = None
            check(b.proc.returncode == -9, f"the destination killed itself at {point}")
            b2 = ns_restart(args, b, "b", net.ns["b"], certs)
            src = a
        dst = b2 or b
        if point == "move-out:committing":
            job_event(src, "mw", "job-finished", point.replace(":", " at phase "))
            check(src.get("/v1/vms/mw").status == 404, "the source forgot the VM")
            check(dst.vm("mw")["state"] == "running", "the VM runs on the destination")
            test_move.wait_rounds(dst, "mw", 0, 2)
            check(True, "the guest carries on at the destination")
            dst.action("mw", "kill")
        else:
            if crash_side == "b":
                job_event(dst, "mw", "job-rolled-back", point.replace(":", " at phase "))
            else:
                job_event(src, "mw", "job-rolled-back", point.replace(":", " at phase "))
            vm = src.vm("mw")
            check(vm["state"] == "running" and vm["pid"] == pid,
                  f"the VM runs on at the source in its worker: {vm['state']}")
            test_move.still_running_here(src, dst, "mw", point)
            src.action("mw", "kill")
    finally:
        for d in (a2 or a, b2 or b):
            if d.proc and d.proc.poll() is None:
                d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def moves(args):
    import test_move
    for tool in ("ip", "openssl"):
        if not shutil.which(tool):
            log(f"SKIP (loud): move crash cases need '{tool}'")
            return
    if os.geteuid() != 0:
        log("SKIP (loud): move crash cases need root (network namespaces)")
        return
    certs = tempfile.mkdtemp(prefix="cella-jobs-certs-")
    net = test_move.Net()
    try:
        test_move.make_certs(certs)
        net.up()
        for point, side, storage in (("move-out:migrating", "a", False),
                                     ("move-out:committing", "a", False),
                                     ("move-in:begun", "b", True)):
            log(f"--- {point} ({'source' if side == 'a' else 'destination'})")
            move_case(args, net, certs, point, side, storage)
    finally:
        net.down()
        shutil.rmtree(certs, ignore_errors=True)


def case_checkpoint_apply(args, point, tmp):
    base = os.path.join(tmp, "ca.img")
    with open(base, "wb") as f:
        f.truncate(4 << 20)
    qemu_io_write(base, 0x11, 0)
    d = Daemon(args, name="cellad-1", config={"test_crash_at": point}).start()
    d2 = None
    try:
        d.define("p", "hello", disks=[{"path": base, "id": "d0"}])
        check(d.post("/v1/vms/p/checkpoints", {"name": "cp1", "kind": "production"}).status
              == 201, "cp1")
        top = d.vm("p")["disks"][0]["path"]
        qemu_io_write(top, 0x22, 65536)
        before = set(vm_files(d, "p"))
        crash(d, "POST", "/v1/vms/p/checkpoints/cp1/apply")
        d2 = restart(args, d)
        job_event(d2, "p", "job-rolled-back", "checkpoint-apply at phase switching")
        vm = d2.vm("p")
        check(vm["disks"][0]["path"] == top, "the VM keeps the disk it had")
        check(set(vm_files(d2, "p")) == before, f"the new overlay is gone: {vm_files(d2, 'p')}")
        r = d2.post("/v1/vms/p/checkpoints/cp1/apply")
        check(r.status == 200 and d2.vm("p")["disks"][0]["path"] != top,
              f"applying again works: {r.status}")
        img_check(d2.vm("p")["disks"][0]["path"])
    finally:
        cleanup(d, d2)


def case_start(args, point, tmp):
    d = Daemon(args, name="cellad-1", config={"test_crash_at": point}).start()
    d2 = None
    try:
        d.define("st", "memwriter", "mib=4 rounds=0 pause_ms=50")
        crash(d, "POST", "/v1/vms/st/start")
        d2 = restart(args, d)
        job_event(d2, "st", "job-rolled-back", "start at phase begun")
        check(d2.vm("st")["state"] == "defined", "the VM is as it was")
        d2.action("st", "start")
        t = ConsoleTail(d2, "st", 0)
        memwriter_rounds(t, 1)
        t.close()
        check(True, "and starts")
        d2.action("st", "kill")
    finally:
        cleanup(d, d2)


def test(args):
    tmp = tempfile.mkdtemp(prefix="cella-jobs-")
    log("--- start:begun")
    case_start(args, "start:begun", tmp)
    log("--- checkpoint-apply:switching")
    case_checkpoint_apply(args, "checkpoint-apply:switching", tmp)
    for point in ("save:saving", "save:saved"):
        log(f"--- {point}")
        case_save(args, point, tmp)
    for point in ("checkpoint-create:switching", "checkpoint-create:switched"):
        log(f"--- {point}")
        case_checkpoint_create(args, point, tmp)
    log("--- checkpoint-delete:layer-merged")
    case_checkpoint_delete(args, "checkpoint-delete:layer-merged", tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    moves(args)


if __name__ == "__main__":
    main(test)
