"""test_checkpoint.py: checkpoints (a tree per VM) through the API and the CLI.

Part 1, disks: the blk test guest writes a distinct seeded pattern before
each of three checkpoints (cp1, cp2, cp3, a chain). Applying each one and
booting the guest in verify mode shows the disk as it was at that point;
the host also reads the chain (qemu-img convert) and compares the region's
crc32 with what the guest printed when it wrote it. Deleting the middle
checkpoint merges its layer away; both neighbours still apply correctly and
qemu-img check passes on every remaining layer.

Part 2, memory: a standard checkpoint of a running memwriter guest; applying
it leaves the VM saved, and starting it resumes the guest from the
checkpoint's round (memwriter checks every word of its memory each round,
so a wrong restore fails the guest)."""

import os
import re
import shutil
import subprocess
import zlib

import wctl_client
from cellad import ConsoleTail, Daemon, TestFailure, check, main, memwriter_rounds

MIB = 2


def host_crc(path):
    """crc32 of the first MIB MiB of the guest-visible disk (chain flattened)."""
    out = path + ".flat"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", path, out], check=True)
    try:
        with open(out, "rb") as f:
            return zlib.crc32(f.read(MIB << 20))
    finally:
        os.unlink(out)


def run_guest(d, name, mode, seed):
    """Boot the blk guest once (it powers off); returns its crc32 line value."""
    r = d.request("PATCH", f"/v1/vms/{name}", {"cmdline": f"mode={mode} seed={seed} mib={MIB}"})
    if r.status != 200:
        raise TestFailure(f"set cmdline: {r}")
    before = len(d.console(name, history=1 << 30).encode())
    d.action(name, "start")
    t = ConsoleTail(d, name, before, timeout=120)
    crc, lines = None, []
    try:
        while True:  # the console, not the state: output may trail the exit
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
    if crc is None or "PASS blk" not in lines[-1]:
        raise TestFailure(f"blk guest {mode} seed={seed}: {lines[-12:]}")
    return crc


def top(d, name):
    return d.vm(name)["disks"][0]["path"]


def disks_part(d, args, tmp):
    base = os.path.join(tmp, "base.img")
    with open(base, "wb") as f:
        f.truncate(16 << 20)
    d.define("c", "blk", disks=[{"path": base, "id": "d0"}])
    crc = {}
    for n in (1, 2, 3):
        crc[n] = run_guest(d, "c", "write", 100 + n)
        check(host_crc(top(d, "c")) == crc[n], f"seed {100 + n}: the image holds what the guest "
              "wrote")
        kind = "production" if n == 2 else "standard"
        d.cli("checkpoint", "create", "c", f"cp{n}", "--kind", kind)
    tree = d.get("/v1/vms/c/checkpoints").json
    byname = {c["name"]: c for c in tree["checkpoints"]}
    check(tree["current"] == "cp3" and byname["cp3"]["current"], "cp3 is current")
    check(byname["cp1"]["parent"] is None and byname["cp2"]["parent"] == "cp1" and
          byname["cp3"]["parent"] == "cp2", "a chain cp1 <- cp2 <- cp3")
    check(byname["cp1"]["layers"][0]["path"] == base, "the first layer is the original image")
    out = d.cli("checkpoint", "list", "c").stdout
    check(re.search(r"^- cp1", out, re.M) and re.search(r"^  - cp2", out, re.M) and
          re.search(r"^    \* cp3", out, re.M), f"cella checkpoint list draws the tree:\n{out}")

    # Something after cp3 that applying must discard.
    run_guest(d, "c", "write", 999)
    for n in (1, 2, 3, 1):
        d.cli("checkpoint", "apply", "c", f"cp{n}")
        vm = d.vm("c")
        check(vm["state"] == "stopped" and vm["checkpoint"] == f"cp{n}",
              f"cp{n} applied: stopped, current cp{n}")
        check(host_crc(top(d, "c")) == crc[n], f"cp{n}: the disk holds seed {100 + n} (host)")
        check(run_guest(d, "c", "verify", 100 + n) == crc[n], f"cp{n}: the guest verifies it")

    # Delete the middle one: cp3 must keep its content, cp1 its own.
    d.cli("checkpoint", "delete", "c", "cp2")
    tree = d.get("/v1/vms/c/checkpoints").json
    byname = {c["name"]: c for c in tree["checkpoints"]}
    check(set(byname) == {"cp1", "cp3"} and byname["cp3"]["parent"] == "cp1",
          "cp2 gone; cp3's parent is cp1")
    for n in (3, 1):
        d.cli("checkpoint", "apply", "c", f"cp{n}")
        check(run_guest(d, "c", "verify", 100 + n) == crc[n],
              f"after deleting cp2, cp{n} still applies correctly")
    layers = [byname["cp3"]["layers"][0]["path"], top(d, "c")]
    for p in layers:
        r = subprocess.run(["qemu-img", "check", p], capture_output=True, text=True)
        check(r.returncode == 0, f"qemu-img check {os.path.basename(p)}: {r.stdout.strip()}")
    # The current checkpoint (cp1) with the VM stopped can go too: its layer is
    # the original image, which stays as the chain's root.
    d.cli("checkpoint", "delete", "c", "cp1")
    check(run_guest(d, "c", "verify", 101) == crc[1], "deleting cp1 keeps the VM's disk")
    d.cli("checkpoint", "delete", "c", "cp1", expect=4)


def memory_part(d, args, tmp):
    # A disk too: the live checkpoint flushes it and switches the running
    # worker to a new overlay (flush-disks, disk-switch with a passed fd).
    disk = os.path.join(tmp, "m.img")
    with open(disk, "wb") as f:
        f.truncate(4 << 20)
    d.define("m", "memwriter", cmdline="mib=4 rounds=0 pause_ms=100",
             disks=[{"path": disk, "id": "d0"}])
    d.action("m", "start")
    t = ConsoleTail(d, "m", 0)
    _, r_before = memwriter_rounds(t, 3)
    r = d.post("/v1/vms/m/checkpoints", {"name": "live", "kind": "standard"})
    check(r.status == 201 and r.json["memory"], f"standard checkpoint of the running VM: {r}")
    _, r_after = memwriter_rounds(t, 1)
    check(d.vm("m")["state"] == "running", f"the VM runs on after the checkpoint (round {r_after})")
    ov = top(d, "m")
    check(ov != disk and ov.endswith(".qcow2"), f"the running VM writes into a new overlay {ov}")
    st = wctl_client.request(os.path.join(d.run, d.vm("m")["uuid"] + ".ctl"), {"cmd": "status"})
    check([x.get("format") for x in st.get("disks", [])] == ["qcow2"],
          f"the worker's disk is the qcow2 overlay now: {st.get('disks')}")
    _, r_later = memwriter_rounds(t, r_after + 3)
    t.close()
    r = d.post("/v1/vms/m/checkpoints/live/apply")
    check(r.status == 200 and r.json["state"] == "saved", f"applied: the VM is saved ({r})")
    seen = len(d.console("m", history=1 << 30).encode())
    d.cli("vm", "start", "m")
    t = ConsoleTail(d, "m", seen)
    first, _ = memwriter_rounds(t, 0)
    memwriter_rounds(t, first + 2)
    t.close()
    check(r_before <= first <= r_after + 1 < r_later + 1,
          f"restored at the checkpoint: first round {first} (checkpoint between {r_before} and "
          f"{r_after}, applied after {r_later})")
    d.action("m", "kill")


def test(args):
    if not shutil.which("qemu-img"):
        raise TestFailure("qemu-img is missing (scripts/setup.sh installs qemu-utils)")
    with Daemon(args, config={"console_history_kib": 4096}) as d:
        tmp = os.path.join(d.dir, "img")
        os.makedirs(tmp)
        disks_part(d, args, tmp)
        memory_part(d, args, tmp)


if __name__ == "__main__":
    main(test)
