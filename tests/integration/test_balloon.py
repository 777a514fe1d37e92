#!/usr/bin/env python3
"""it-balloon: the balloon guest under cella-vm with a virtio-balloon
(stats, free page reporting, deflate-on-OOM). Pages the guest reports and
the pages it inflates leave the worker (its RssShmem, the memfd guest RAM,
falls by about their size); deflating and writing them brings them back;
the worker's status counts them and carries the guest's statistics;
balloon-set refuses a target past the VM's memory. A VM saved with a
partly inflated balloon writes no data for the given-back pages, restores
with the same balloon, and its guest then deflates with every page it kept
intact. Live migration of such a VM (mutual TLS, as it-migrate) does not
send the given-back pages: the destination holds about what the source
held, and its guest deflates with every page intact."""
import os
import shutil
import time

import harness
import memdev
from memdev import check, rss_shmem_kib, wait_path
import test_migrate as tm

EXIT_SAVED = 14
MEM = 64
POOL, REPORT = 24, 8


def cmd(vm, kernel, extra):
    return [vm, "--kernel", kernel, "--cmdline", f"pool_mib={POOL} report_mib={REPORT}",
            "--mem", str(MEM), "--device",
            "virtio-balloon,stats=on,free_page_reporting=on,deflate_on_oom=on"] + extra


def balloon(ctl):
    rep = harness.control(ctl, {"cmd": "status"})
    check(rep.get("ok") is True and isinstance(rep.get("balloon"), dict), "status has balloon")
    return rep["balloon"]


def set_target(g, ctl, mib):
    rep = harness.control(ctl, {"cmd": "balloon-set", "target_mib": mib})
    check(rep.get("ok") is True, f"balloon-set {mib} MiB: {rep}")
    g.wait_for(rf"^balloon: actual {mib * 256} pages$", 60)


def test(args):
    memdev.run_in_tmpdir(args, "balloon", run)


def run(vm, kernel, d):
    ctl, state = os.path.join(d, "b.sock"), os.path.join(d, "b.state")
    g = harness.Guest(cmd(vm, kernel, ["--control", ctl]), name="balloon")
    with g:
        g.wait_for(r"^balloon: ready$", 60)
        g.wait_for(r"^balloon: actual 0 pages$", 60)
        wait_path(g.proc, ctl)
        pid = g.proc.pid
        b = balloon(ctl)
        r_ready = rss_shmem_kib(pid)
        harness.log(f"RssShmem after touching {POOL} MiB and reporting {REPORT}: {r_ready} KiB")
        check(b["reported_bytes"] == REPORT << 20, f"reported_bytes {b['reported_bytes']}")
        check(b["features"] == {"stats": True, "deflate_on_oom": True,
                                "free_page_reporting": True}, f"features {b['features']}")
        check(r_ready < (POOL - REPORT + 4) << 10,
              f"reported pages left the worker: RssShmem {r_ready} KiB < "
              f"{(POOL - REPORT + 4) << 10} KiB ({POOL} MiB touched, {REPORT} reported)")

        set_target(g, ctl, 8)
        r_infl = rss_shmem_kib(pid)
        harness.log(f"RssShmem with 8 MiB inflated: {r_infl} KiB")
        check(r_ready - r_infl >= 7 << 10, f"inflating 8 MiB freed {r_ready - r_infl} KiB")
        b = balloon(ctl)
        check(b["inflated_pages"] == 2048 and b["actual_pages"] == 2048 and
              b["target_mib"] == 8, f"balloon status {b}")

        set_target(g, ctl, 0)
        r_defl = rss_shmem_kib(pid)
        harness.log(f"RssShmem after deflating and rewriting 8 MiB: {r_defl} KiB")
        check(r_defl - r_infl >= 7 << 10, f"deflated pages written again: +{r_defl - r_infl} KiB")
        check(balloon(ctl)["inflated_pages"] == 0, "balloon empty")

        # Statistics: ask, the guest answers.
        n0 = balloon(ctl)["stats_updates"]
        rep = harness.control(ctl, {"cmd": "balloon-stats"})
        check(rep.get("ok") is True and rep.get("requested") is True, f"balloon-stats {rep}")
        g.wait_for(r"^balloon: stats sent \d+$", 30)
        deadline = time.monotonic() + 30
        while balloon(ctl)["stats_updates"] <= n0:
            if time.monotonic() > deadline:
                raise harness.TestFailure("no statistics update")
            os.sched_yield()
        st = balloon(ctl)["stats"]
        check(st.get("total_memory") == POOL << 20 and st.get("free_memory") == POOL << 20,
              f"guest statistics {st}")

        rep = harness.control(ctl, {"cmd": "balloon-set", "target_mib": MEM + 1})
        check(rep.get("ok") is False and "0 to 64" in rep.get("error", ""),
              f"target past the VM's memory refused: {rep}")

        # Save with 4 MiB inflated.
        set_target(g, ctl, 4)
        fd = os.open(state, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            rep = harness.control(ctl, {"cmd": "save", "fd": 0}, fds=[fd])
        finally:
            os.close(fd)
        check(rep.get("ok") is True, f"save {rep}")
        check(g.wait_exit(60) == EXIT_SAVED, "worker saved and exited")
    st = os.stat(state)
    harness.log(f"state file: {st.st_size} bytes, {st.st_blocks * 512} allocated")
    check(st.st_blocks * 512 < (POOL - REPORT - 4 + 6) << 20,
          f"given-back pages not written: {st.st_blocks * 512} bytes allocated")

    ctl2 = os.path.join(d, "b2.sock")
    g2 = harness.Guest(cmd(vm, kernel, ["--restore", state, "--control", ctl2]),
                       name="balloon-restored")
    with g2:
        wait_path(g2.proc, ctl2)
        b = balloon(ctl2)
        check(b["inflated_pages"] == 1024 and b["target_mib"] == 4 and
              b["reported_bytes"] == REPORT << 20, f"restored balloon {b}")
        set_target(g2, ctl2, 0)
        set_target(g2, ctl2, 2)
        check(not any(l.startswith("FAIL") for l in g2.lines), "no page lost its content")
        check(balloon(ctl2)["inflated_pages"] == 512, "inflating after restore counts")

    if not shutil.which("openssl"):
        harness.log("SKIP (part): live migration needs the openssl command for test certificates")
        return
    migrate_case(vm, kernel, d)


def migrate_case(vm, kernel, d):
    pki = memdev.make_pki(d)
    ctl, dctl = os.path.join(d, "m.sock"), os.path.join(d, "md.sock")
    src = harness.Guest(cmd(vm, kernel, ["--control", ctl]), name="balloon-src")
    with src:
        src.wait_for(r"^balloon: actual 0 pages$", 60)
        wait_path(src.proc, ctl)
        set_target(src, ctl, 4)
        r_src = rss_shmem_kib(src.proc.pid)
        sock, port = tm.listener()
        fd = sock.fileno()
        dst = harness.Guest(cmd(vm, kernel, memdev.incoming_args(fd, dctl, pki)), name="balloon-dst")
        try:
            rep = memdev.migrate(src, ctl, dst, dctl, pki, sock, port)
            b = balloon(dctl)
            check(b["inflated_pages"] == 1024 and b["target_mib"] == 4 and
                  b["reported_bytes"] == REPORT << 20, f"migrated balloon {b}")
            r_dst = rss_shmem_kib(dst.proc.pid)
            harness.log(f"RssShmem: source {r_src} KiB, destination {r_dst} KiB "
                        f"(bytes sent {rep.get('bytes')})")
            check(r_dst < r_src + (2 << 10),
                  f"given-back pages not sent: destination RssShmem {r_dst} KiB, "
                  f"source {r_src} KiB")
            set_target(dst, dctl, 0)
            check(not any(l.startswith("FAIL") for l in dst.lines),
                  "no page lost its content on the destination")
        finally:
            dst.kill()


harness.main(test)
