#!/usr/bin/env python3
"""it-cpuhp: vCPU hot-plug through ACPI (docs/guests.md, "vCPU hot-plug")
with the cpuhp guest, which plays the OSPM's part by hand (GED _INI, and
on each hot-plug event CSCN's scan and acknowledgement) and then brings the
new vCPU up with INIT-SIPI-SIPI to its APIC id.

- 2 vCPUs, cpus_max 4: cpus-set 3 creates vCPU 2 on the running VM; the
  guest sees the GED event, finds vCPU 2 inserting, acknowledges it and the
  vCPU checks in (it runs guest code); the worker's status and stats show 3
  vCPUs and the controller's state. Past cpus_max, below the count and
  non-integers are refused.
- That VM saved and restored (same configuration: 2 vCPUs, cpus_max 4):
  the restored worker has 3 vCPUs; cpus-set 4 adds vCPU 3, and the guest
  restarts vCPU 2 (it exists and runs after the restore) and starts vCPU 3.
- Live migration (mutual TLS) of a VM hot-plugged from 1 to 2: the
  destination has 2 vCPUs, and hot-plugs a third that the guest starts,
  with vCPU 1 restarted there too.
- cpus_max without ACPI is refused at start.
Every worker but the migration's source runs under its seccomp filter
(--seccomp), as under cellad."""
import os
import shutil
import subprocess

import harness
import memdev
from memdev import check, wait_path
import test_migrate as tm

EXIT_SAVED = 14


def cmd(vm, kernel, cpus, cpus_max, rounds, extra, seccomp=True):
    # --seccomp: vCPUs are created under the worker's system-call filter
    return [vm, "--kernel", kernel, "--cpus", str(cpus), "--cpus-max", str(cpus_max), "--acpi",
            "--cmdline", f"rounds={rounds}"] + (["--seccomp"] if seccomp else []) + extra


def status(ctl):
    rep = harness.control(ctl, {"cmd": "status"})
    check(rep.get("ok") is True and isinstance(rep.get("cpu_hotplug"), dict),
          f"status has cpu_hotplug: {rep.get('cpu_hotplug')}")
    return rep


def cpus_set(ctl, n):
    rep = harness.control(ctl, {"cmd": "cpus-set", "cpus": n})
    check(rep.get("ok") is True and rep.get("vcpus") == n, f"cpus-set {n}: {rep}")
    return rep


def wait_online(g, cpus, rnd):
    for c in cpus:
        g.wait_for(rf"^cpuhp: cpu {c} online$", 120)
    g.wait_for(rf"^cpuhp: round {rnd} done$", 120)


def test(args):
    memdev.run_in_tmpdir(args, "cpuhp", run)


def run(vm, kernel, d):
    ctl, state = os.path.join(d, "c.sock"), os.path.join(d, "c.state")
    g = harness.Guest(cmd(vm, kernel, 2, 4, 2, ["--control", ctl]), name="cpuhp")
    with g:
        g.wait_for(r"^cpuhp: ready, 2 cpus$", 60)
        wait_path(g.proc, ctl)
        rep = status(ctl)
        hp = rep["cpu_hotplug"]
        check(rep["vcpus"] == 2 and hp["possible"] == 4 and hp["present"] == [0, 1] and
              hp["inserting"] == [] and hp["ospm"] is True, f"before: {rep}")
        for bad, why in ((5, "past cpus_max (4)"), (1, "removing vCPUs is not supported"),
                         ("3", "expected an integer"), (0, "expected an integer")):
            r = harness.control(ctl, {"cmd": "cpus-set", "cpus": bad})
            check(r.get("ok") is False and why in r.get("error", ""),
                  f"cpus {bad!r} refused: {r.get('error')}")

        rep = cpus_set(ctl, 3)
        check(rep["cpu_hotplug"]["present"] == [0, 1, 2], f"vCPU 2 present: {rep}")
        g.wait_for(r"^cpuhp: vCPU 2 inserted$", 120)
        wait_online(g, [2], 0)
        rep = status(ctl)
        hp = rep["cpu_hotplug"]
        check(rep["vcpus"] == 3 and hp["inserting"] == [],
              f"the guest acknowledged vCPU 2: {hp}")
        st = harness.control(ctl, {"cmd": "stats"})
        v2 = [v for v in st.get("vcpus", []) if v.get("index") == 2]
        check(len(st.get("vcpus", [])) == 3 and v2 and v2[0]["cpu_time_ns"] > 0,
              f"stats show vCPU 2 running: {v2}")
        check(not any(l.startswith("FAIL") for l in g.lines), "no guest check failed")

        fd = os.open(state, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            rep = harness.control(ctl, {"cmd": "save", "fd": 0}, fds=[fd])
        finally:
            os.close(fd)
        check(rep.get("ok") is True, f"save {rep}")
        check(g.wait_exit(60) == EXIT_SAVED, "worker saved and exited")

    ctl2 = os.path.join(d, "c2.sock")
    g2 = harness.Guest(cmd(vm, kernel, 2, 4, 2, ["--restore", state, "--control", ctl2]),
                       name="cpuhp-restored")
    with g2:
        wait_path(g2.proc, ctl2)
        rep = status(ctl2)
        check(rep["vcpus"] == 3 and rep["cpu_hotplug"]["present"] == [0, 1, 2],
              f"restored with the hot-plugged vCPU: {rep}")
        cpus_set(ctl2, 4)
        wait_online(g2, [2, 3], 1)
        g2.expect_pass("cpuhp", 120)

    bad = subprocess.run([vm, "--kernel", kernel, "--no-acpi", "--cpus", "1", "--cpus-max", "2"],
                         capture_output=True, text=True, timeout=60)
    check(bad.returncode != 0 and "needs acpi" in bad.stderr,
          f"cpus_max without ACPI refused: {bad.returncode} {bad.stderr.strip()[-200:]}")

    if not shutil.which("openssl"):
        harness.log("SKIP (part): live migration needs the openssl command for test certificates")
        return
    migrate_case(vm, kernel, d)


def migrate_case(vm, kernel, d):
    pki = memdev.make_pki(d)
    ctl, dctl = os.path.join(d, "m.sock"), os.path.join(d, "md.sock")
    # The source connects out itself (no seccomp: under it cellad connects)
    src = harness.Guest(cmd(vm, kernel, 1, 3, 2, ["--control", ctl], seccomp=False),
                        name="cpuhp-src")
    with src:
        src.wait_for(r"^cpuhp: ready, 1 cpus$", 60)
        wait_path(src.proc, ctl)
        cpus_set(ctl, 2)
        wait_online(src, [1], 0)
        sock, port = tm.listener()
        dst = harness.Guest(cmd(vm, kernel, 1, 3, 2, memdev.incoming_args(sock.fileno(), dctl,
                                                                         pki)),
                            name="cpuhp-dst")
        try:
            memdev.migrate(src, ctl, dst, dctl, pki, sock, port)
            rep = status(dctl)
            check(rep["vcpus"] == 2 and rep["cpu_hotplug"]["present"] == [0, 1],
                  f"destination has the hot-plugged vCPU: {rep}")
            cpus_set(dctl, 3)
            wait_online(dst, [1, 2], 1)
            dst.expect_pass("cpuhp", 120)
        finally:
            dst.kill()


harness.main(test)
