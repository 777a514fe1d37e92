#!/usr/bin/env python3
"""it-vmem: the vmem guest under cella-vm with a virtio-mem device (64 MiB
of boot memory, up to 128 MiB). virtio-mem-set grows the running guest:
it plugs the blocks, writes every page of them (the worker's RssShmem, the
memfd guest RAM, grows by about that much) and checks them; lowering the
target makes it unplug, and the unplugged blocks leave the worker (RssShmem
falls). The guest checks the device's refusals (misaligned, out of range,
past the requested size, twice); the worker refuses a requested size past
the region or not a multiple of the block size. A VM saved with part of
the region plugged writes no data for the unplugged part, restores with
the same blocks plugged, and its guest then grows further with every
plugged page intact. Live migration of such a VM (mutual TLS, as
it-migrate) sends the plugged memory and not the rest. With the backing
options prealloc (the region is not preallocated: nothing is plugged) and
merge and thp (anonymous RAM, thp in huge pages: unplugging drops it with
MADV_DONTNEED) plugging and
unplugging move the worker's RSS the same way."""
import json
import os
import shutil

import harness
import memdev
from memdev import check, rss_shmem_kib, wait_path
import test_migrate as tm

EXIT_SAVED = 14
MEM, MAX = 64, 128


def cmd(vm, kernel, extra, requested=0):
    return [vm, "--kernel", kernel, "--mem", str(MEM), "--device",
            f"virtio-mem,max_mib={MAX},requested_mib={requested}"] + extra


def vmem(ctl):
    rep = harness.control(ctl, {"cmd": "status"})
    check(rep.get("ok") is True and isinstance(rep.get("virtio_mem"), dict),
          "status has virtio_mem")
    return rep["virtio_mem"]


def set_requested(g, ctl, mib):
    rep = harness.control(ctl, {"cmd": "virtio-mem-set", "requested_mib": mib})
    check(rep.get("ok") is True, f"virtio-mem-set {mib} MiB")
    g.wait_for(rf"^vmem: plugged {mib} MiB$", 120)


def no_fail(g):
    check(not any(l.startswith("FAIL") for l in g.lines), "no plugged page lost its content")


def test(args):
    memdev.run_in_tmpdir(args, "vmem", run)


def run(vm, kernel, d):
    ctl, state = os.path.join(d, "v.sock"), os.path.join(d, "v.state")
    g = harness.Guest(cmd(vm, kernel, ["--control", ctl]), name="vmem")
    with g:
        g.wait_for(r"^vmem: region 64 MiB at 0x100000000, block 2048 KiB$", 60)
        g.wait_for(r"^vmem: plugged 0 MiB$", 60)
        wait_path(g.proc, ctl)
        pid = g.proc.pid
        v = vmem(ctl)
        check(v["region_mib"] == MAX - MEM and v["plugged_mib"] == 0 and
              v["block_size"] == 2 << 20, f"status {v}")
        r0 = rss_shmem_kib(pid)

        set_requested(g, ctl, 48)
        r_grown = rss_shmem_kib(pid)
        harness.log(f"RssShmem: {r0} KiB before, {r_grown} KiB with 48 MiB plugged and written")
        check(r_grown - r0 >= 47 << 10, f"hot-plugged memory in use: +{r_grown - r0} KiB")
        v = vmem(ctl)
        check(v["plugged_mib"] == 48 and v["requested_mib"] == 48, f"status {v}")
        check(v["requests"]["nack"] >= 1 and v["requests"]["error"] >= 5,
              f"the guest's bad requests were refused: {v['requests']}")

        set_requested(g, ctl, 16)
        r_shrunk = rss_shmem_kib(pid)
        harness.log(f"RssShmem with 16 MiB plugged: {r_shrunk} KiB")
        check(r_grown - r_shrunk >= 31 << 10, f"unplugging 32 MiB freed {r_grown - r_shrunk} KiB")
        check(vmem(ctl)["plugged_mib"] == 16, "16 MiB plugged")

        for bad, why in ((MAX - MEM + 2, "0 to 64"), (5, "multiple of the block size"),
                         (-2, "0 to 64"), ("8", "0 to 64")):
            rep = harness.control(ctl, {"cmd": "virtio-mem-set", "requested_mib": bad})
            check(rep.get("ok") is False and why in rep.get("error", ""),
                  f"requested_mib {bad!r} refused: {rep.get('error')}")
        no_fail(g)

        fd = os.open(state, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            rep = harness.control(ctl, {"cmd": "save", "fd": 0}, fds=[fd])
        finally:
            os.close(fd)
        check(rep.get("ok") is True, f"save {rep}")
        check(g.wait_exit(60) == EXIT_SAVED, "worker saved and exited")
    st = os.stat(state)
    harness.log(f"state file: {st.st_size} bytes, {st.st_blocks * 512} allocated")
    check(st.st_size >= MAX << 20, "the state file holds boot RAM and the region")
    check(st.st_blocks * 512 < 32 << 20,
          f"unplugged memory not written: {st.st_blocks * 512} bytes allocated")

    ctl2 = os.path.join(d, "v2.sock")
    g2 = harness.Guest(cmd(vm, kernel, ["--restore", state, "--control", ctl2]),
                       name="vmem-restored")
    with g2:
        wait_path(g2.proc, ctl2)
        v = vmem(ctl2)
        check(v["plugged_mib"] == 16 and v["requested_mib"] == 16, f"restored {v}")
        set_requested(g2, ctl2, 24)
        no_fail(g2)
        check(vmem(ctl2)["plugged_mib"] == 24, "plugging after restore counts")

    backing_case(vm, kernel, d, {"prealloc": True}, "RssShmem")
    backing_case(vm, kernel, d, {"merge": True}, "RssAnon")
    backing_case(vm, kernel, d, {"thp": True}, "RssAnon")
    if not shutil.which("openssl"):
        harness.log("SKIP (part): live migration needs the openssl command for test certificates")
        return
    migrate_case(vm, kernel, d)


def thp_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    return 0


def thp_host_allows():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def backing_case(vm, kernel, d, backing, key):
    cfg, ctl = os.path.join(d, "backing.json"), os.path.join(d, "bk.sock")
    with open(cfg, "w") as f:
        json.dump({"memory": backing}, f)
    g = harness.Guest(cmd(vm, kernel, ["--config", cfg, "--control", ctl]), name=f"vmem-{key}")
    with g:
        g.wait_for(r"^vmem: plugged 0 MiB$", 60)
        wait_path(g.proc, ctl)
        r0 = rss_shmem_kib(g.proc.pid, key)
        if backing.get("prealloc"):
            check(MEM << 10 <= r0 < (MEM + 4) << 10,
                  f"prealloc: boot RAM resident, the region not ({key} {r0} KiB)")
        set_requested(g, ctl, 32)
        r1 = rss_shmem_kib(g.proc.pid, key)
        if backing.get("thp"):
            # Anonymous RAM in transparent huge pages (where the host's
            # THP "enabled" is always or madvise).
            thp = thp_kib(g.proc.pid)
            harness.log(f"thp: AnonHugePages {thp} KiB with 32 MiB plugged")
            if thp_host_allows():
                check(thp >= 2048, f"thp: guest RAM in huge pages (AnonHugePages {thp} KiB)")
        set_requested(g, ctl, 8)
        r2 = rss_shmem_kib(g.proc.pid, key)
        harness.log(f"{backing}: {key} {r0} KiB, {r1} KiB with 32 MiB plugged, {r2} KiB with 8")
        check(r1 - r0 >= 31 << 10 and r1 - r2 >= 23 << 10,
              f"{backing}: plug +{r1 - r0} KiB, unplug -{r1 - r2} KiB")
        no_fail(g)
        os.unlink(ctl)


def migrate_case(vm, kernel, d):
    pki = memdev.make_pki(d)
    ctl, dctl = os.path.join(d, "m.sock"), os.path.join(d, "md.sock")
    src = harness.Guest(cmd(vm, kernel, ["--control", ctl]), name="vmem-src")
    with src:
        src.wait_for(r"^vmem: plugged 0 MiB$", 60)
        wait_path(src.proc, ctl)
        set_requested(src, ctl, 32)
        set_requested(src, ctl, 12)
        r_src = rss_shmem_kib(src.proc.pid)
        sock, port = tm.listener()
        fd = sock.fileno()
        dst = harness.Guest(cmd(vm, kernel, memdev.incoming_args(fd, dctl, pki)), name="vmem-dst")
        try:
            rep = memdev.migrate(src, ctl, dst, dctl, pki, sock, port)
            v = vmem(dctl)
            check(v["plugged_mib"] == 12 and v["requested_mib"] == 12, f"migrated {v}")
            r_dst = rss_shmem_kib(dst.proc.pid)
            harness.log(f"RssShmem: source {r_src} KiB, destination {r_dst} KiB "
                        f"(bytes sent {rep.get('bytes')})")
            check(r_dst < r_src + (2 << 10),
                  f"unplugged memory not sent: destination RssShmem {r_dst} KiB, "
                  f"source {r_src} KiB")
            set_requested(dst, dctl, 20)
            no_fail(dst)
        finally:
            dst.kill()


harness.main(test)
