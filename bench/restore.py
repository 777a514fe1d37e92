#!/usr/bin/env python3
"""restore.py: save and restore of a running guest (memwriter touching
--touch MiB, default 200) on VMs of 256 MiB, 1 GiB and 4 GiB: save time and
file size, and restore-to-running time: from the spawn of `cella-vm
--restore` to the guest's first new serial line (host clock), with the
worker's own figure for opening and loading the state ("restore: state
loaded in X ms") beside it. QEMU side by side: migrate "exec:cat > FILE" and
-incoming "exec:cat FILE" on the same guest.

Usage: bench/restore.py [--build DIR] [--runs N] [--sizes 256,1024,4096]
                         [--fill userfaultfd|populate] [--warm-ms MS] [--standby]
                         [--standby-unprepared]

--standby also restores through a standby worker (cella-vm --standby, its
process started and ready before the clock starts, as Firecracker measures
snapshot restore), alternating with the cold restores, and prints a second
table with both. The standby is told each row's RAM size (--mem MIB: its
memory slots, irqchip and PIT made before ready); --standby-unprepared
adds restores through standby workers started without it (those steps
then in the request's path), alternating with the others, as a column.

--fill populate restores with CELLA_RESTORE_FILL=populate (the state file
mapped copy-on-write and populated ahead of the guest) instead of the
default userfaultfd fill (docs/state-format.md, "Filling restored memory").
--warm-ms MS keeps this script busy for MS before each cella spawn (off by
default), to tell what the host adds after an idle wait from the restore.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import tempfile
import time

import common

LOAD_RE = re.compile(r"restore: state loaded in ([0-9.]+) ms \(setup ([0-9.]+) ms, load ([0-9.]+) ms\)")
# Logged once the vCPU threads are started (after the sandbox, the filters
# and the fill thread's start), a little after "state loaded": the end of
# restore to running. Builds before it had only the "state loaded" line.
# It carries the worker's CLOCK_MONOTONIC reading: the end of restore to
# running is taken from it (the same clock as t0 here), so that the time
# this script takes to be woken by the line and read it does not count.
RUNNING_RE = re.compile(r"restore: vCPUs running, ([0-9.]+) ms after the restore began"
                        r"(?: \(CLOCK_MONOTONIC (\d+)\.(\d{9})\))?")


def control(path, req):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(300)
        s.connect(path)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            c = s.recv(4096)
            if not c:
                break
            buf += c
    return json.loads(buf)


def wait_line(p, rx, timeout=600):
    deadline = time.monotonic() + timeout
    for line in p.stdout:
        if re.search(rx, line):
            return line
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"no line matching {rx}")


def cella_cmd(vm, kernel, mem, touch):
    return [vm, "--kernel", kernel, "--mem", str(mem), "--cmdline",
            f"mib={touch} rounds=0 pause_ms=50"]


def cella_save(vm, kernel, mem, touch, d):
    ctl, state = os.path.join(d, "ctl.sock"), os.path.join(d, f"vm{mem}.state")
    p = subprocess.Popen(cella_cmd(vm, kernel, mem, touch) + ["--control", ctl],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_line(p, r"round 2 checksum")
    t0 = time.perf_counter()
    rep = control(ctl, {"cmd": "save", "path": state})
    save_s = time.perf_counter() - t0
    p.wait(60)
    st = os.stat(state)
    return state, save_s, rep.get("ms"), st.st_size, st.st_blocks * 512


def logs_running_line(vm):
    """Whether this cella-vm logs "restore: vCPUs running" (older builds end
    their restore log at "state loaded", a little before the vCPUs start)."""
    with open(vm, "rb") as f:
        return b"restore: vCPUs " in f.read()  # "running", or "%s" (running or held)


def mono():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e9


def spin_ms(ms):
    """Keep this process on its CPU for ms (0: not at all): on a host that is
    itself a VM, a process that has been blocked for a while (here: on
    QEMU's restore) is slow for its next few milliseconds, spawning
    included (docs/benchmarks.md, "Restore to running, step by step")."""
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass


def cella_restore(vm, kernel, mem, touch, state, end_re=RUNNING_RE, warm_ms=0):
    """Host clock from the spawn of cella-vm --restore to (a) its vCPUs
    running: the worker's clock reading on its "restore: vCPUs running"
    line (end_re LOAD_RE for a build without it: when its "state loaded"
    line is read), (b) the guest's first serial line; plus the worker's own
    figure from the start of the restore to that line, and when the line was
    read here (a) includes this script's wake-up for the line."""
    spin_ms(warm_ms)
    t0 = mono()
    p = subprocess.Popen(cella_cmd(vm, kernel, mem, touch) + ["--restore", state],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return read_restore(p, t0, end_re)


def read_restore(p, t0, end_re):
    """cella_restore's figures from the restoring worker p, t0 its start."""
    running = read_at = None
    own = float("nan")
    for line in p.stderr:
        m = end_re.search(line)
        if m:
            read_at = mono() - t0
            own = float(m.group(1))
            stamped = m.groups()[1:3] if end_re is RUNNING_RE else (None, None)
            running = (int(stamped[0]) + int(stamped[1]) / 1e9 - t0) if stamped[0] else read_at
            break
    p.stdout.readline()
    first = mono() - t0
    p.kill()
    p.communicate()
    nan = float("nan")
    return (running if running is not None else nan, first, own,
            read_at if read_at is not None else nan)


def cella_restore_standby(vm, kernel, mem, touch, state, prepare=True):
    """cella_restore through a standby worker (cella-vm --standby, as
    Firecracker's restore is measured: its process already runs): spawned
    and waited for ("standby: ready") untimed; t0 is just before the
    request (the same --restore arguments) is written to its stdin. With
    prepare, the standby is told the guest's RAM (--mem: its memory slots,
    irqchip and PIT are made before ready)."""
    p = subprocess.Popen([vm, "--standby"] + (["--mem", str(mem)] if prepare else []),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "standby: ready" in line:
            break
    else:
        p.kill()
        p.communicate()
        raise RuntimeError("the standby worker never said ready")
    req = json.dumps(cella_cmd(vm, kernel, mem, touch)[1:] + ["--restore", state]) + "\n"
    t0 = mono()
    p.stdin.write(req)
    p.stdin.flush()
    return read_restore(p, t0, RUNNING_RE)


def qemu_status_running(mon, t0, timeout=600):
    """Poll QEMU's monitor until 'info status' says running; host seconds since t0."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(mon):
        if time.monotonic() > deadline:
            raise RuntimeError("no QEMU monitor")
        time.sleep(0.0005)  # benchmark polling, not test synchronisation
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(mon)
        s.settimeout(timeout)
        buf = ""
        while "(qemu)" not in buf:
            buf += s.recv(65536).decode(errors="replace")
        while time.monotonic() < deadline:
            s.sendall(b"info status\n")
            buf = ""
            while "(qemu)" not in buf.split("info status", 1)[-1]:
                buf += s.recv(65536).decode(errors="replace")
            if "status: running" in buf:
                return time.perf_counter() - t0
            if "status: paused" in buf and "inmigrate" not in buf:
                # The state was saved from a stopped guest, so QEMU loads it
                # paused: resume it, as virsh restore does.
                s.sendall(b"cont\n")
    raise RuntimeError("QEMU never ran")


def qemu_base(kernel, mem, touch):
    return common.harness.build_command("qemu", None, kernel, f"mib={touch} rounds=0 pause_ms=50",
                                        mem=mem)


def qemu_save(kernel, mem, touch, d):
    """QEMU: save with migrate exec:cat > file. Returns (path, seconds, size)."""
    state = os.path.join(d, f"q{mem}.state")
    mon = os.path.join(d, "mon.sock")
    base = qemu_base(kernel, mem, touch)
    p = subprocess.Popen(base + ["-monitor", f"unix:{mon},server,nowait"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_line(p, r"round 2 checksum")
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(mon)
            s.settimeout(600)
            f = s.makefile("rw")
            f.readline()
            t0 = time.perf_counter()
            # Like cella's save (and virsh save): stop the guest first, so
            # the file holds one copy of memory, not a live pre-copy.
            f.write("stop\n")
            f.write(f'migrate "exec:cat > {state}"\n')
            f.flush()
            while True:
                f.write("info migrate\n")
                f.flush()
                buf = ""
                while "(qemu)" not in buf:
                    buf += s.recv(65536).decode(errors="replace")
                if "Migration status: completed" in buf:
                    break
                if "failed" in buf:
                    raise RuntimeError("QEMU migration failed")
            save_s = time.perf_counter() - t0
    finally:
        p.kill()
        p.wait()
        if os.path.exists(mon):
            os.unlink(mon)
    return state, save_s, os.stat(state).st_size


def qemu_restore(kernel, mem, touch, state, d):
    """QEMU: -incoming exec:cat FILE; host seconds to running and to the first line."""
    qmon = os.path.join(d, "qmon.sock")
    t0 = time.perf_counter()
    q = subprocess.Popen(qemu_base(kernel, mem, touch) + [
        "-incoming", f"exec:cat {state}", "-monitor", f"unix:{qmon},server,nowait"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        running = qemu_status_running(qmon, t0)
        q.stdout.readline()
        first = time.perf_counter() - t0
    finally:
        q.kill()
        q.wait()
        if os.path.exists(qmon):
            os.unlink(qmon)
    return running, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="256,1024,4096")
    ap.add_argument("--touch", type=int, default=200)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--standby", action="store_true",
                    help="also restore through a standby worker (cella-vm --standby), "
                         "alternating with the cold restores")
    ap.add_argument("--standby-unprepared", action="store_true",
                    help="with --standby, also restore through standby workers started "
                         "without --mem (their memory slots, irqchip and PIT then made at "
                         "the request)")
    ap.add_argument("--fill", choices=["userfaultfd", "populate"], default="userfaultfd")
    # Not by default: the figures of record include whatever the host adds.
    ap.add_argument("--warm-ms", type=float, default=0,
                    help="busy-wait this long before each cella spawn (see spin_ms)")
    a = ap.parse_args()
    if a.fill == "populate":
        os.environ["CELLA_RESTORE_FILL"] = "populate"
    else:
        os.environ.pop("CELLA_RESTORE_FILL", None)
    b = common.build_dir(a.build)
    vm, kernel = os.path.join(b, "cella-vm"), common.guest(b, "memwriter")
    end_re = RUNNING_RE if logs_running_line(vm) else LOAD_RE
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as d:
        for mem in [int(x) for x in a.sizes.split(",")]:
            touch = min(a.touch, mem // 2)
            state, save_s, save_ms, size, alloc = cella_save(vm, kernel, mem, touch, d)
            q, qstate = "n/a", None
            if not a.no_qemu:
                try:
                    qstate, qsave_s, qsize = qemu_save(kernel, mem, touch, d)
                except Exception as e:  # noqa: BLE001 - reported as n/a
                    q = f"n/a ({e})"
            # Restores alternate (cella, QEMU, cella, ...): on a shared host
            # both see the same load; medians of a.runs each.
            runs, qruns, sruns, uruns = [], [], [], []
            for _ in range(a.runs):
                runs.append(cella_restore(vm, kernel, mem, touch, state, end_re, a.warm_ms))
                if a.standby:
                    sruns.append(cella_restore_standby(vm, kernel, mem, touch, state))
                    if a.standby_unprepared:
                        uruns.append(cella_restore_standby(vm, kernel, mem, touch, state,
                                                           False))
                if qstate:
                    try:
                        qruns.append(qemu_restore(kernel, mem, touch, qstate, d))
                    except Exception as e:  # noqa: BLE001 - reported as n/a
                        q = f"n/a ({e})"
            os.unlink(state)
            if qstate:
                os.unlink(qstate)
                if qruns:
                    q = (qsave_s, qsize, common.median([r[0] for r in qruns]),
                         common.median([r[1] for r in qruns]))
            rows.append((mem, touch, save_s, save_ms, size, alloc,
                         [r[0] for r in runs],
                         common.median([r[1] for r in runs]),
                         common.median([r[2] for r in runs]),
                         common.median([r[3] for r in runs]), q, sruns, uruns))
    print("restore to running: host clock from the spawn of the restoring process to its vCPUs "
          "running (cella: the worker's clock reading on its 'vCPUs running' log line, "
          + ("" if end_re is RUNNING_RE else "(this build has none: when its 'state loaded' "
             "line was read) ") +
          "median and range; in brackets the worker's own figure from the start of the "
          "restore to it; 'line read' is when this script read the line, which adds its own "
          "wake-up; QEMU: 'info status' says running); first line: to the guest's first "
          "serial line after the restore (it first re-reads what it touched, so page faults "
          "on the lazily mapped memory count there); cella and QEMU restores alternate, "
          f"medians of {a.runs} each\n")
    print("| guest | touched | cella save | file (allocated) | cella restore to running "
          "(min-max) | (worker's own) | line read | cella first line | QEMU save | QEMU file | "
          "QEMU restore to running | QEMU first line | running: QEMU / cella | "
          "first line: cella / QEMU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mem, touch, ss, sms, size, alloc, runs_to, first, load, read_at, q, _, _ in rows:
        running = common.median(runs_to)
        line = (f"| {mem} MiB | {touch} MiB | {ss * 1e3:.0f} ms | {size >> 20} MiB "
                f"({alloc >> 20} MiB) | {running * 1e3:.1f} ms ({min(runs_to) * 1e3:.1f}-"
                f"{max(runs_to) * 1e3:.1f}) | {load:.2f} ms | {read_at * 1e3:.1f} ms | "
                f"{first * 1e3:.1f} ms | ")
        if isinstance(q, tuple):
            line += (f"{q[0] * 1e3:.0f} ms | {q[1] >> 20} MiB | {q[2] * 1e3:.1f} ms | "
                     f"{q[3] * 1e3:.1f} ms | {q[2] / running:.0f}x | {first / q[3]:.2f} |")
        else:
            line += f"{q} | | | | | |"
        print(line)
    if a.standby:
        print("\nstandby: the same restores through a standby worker (cella-vm --standby, "
              "spawned and ready before the clock starts: t0 is just before the request is "
              "written to its stdin, the end its 'vCPUs running' clock reading), alternating "
              "with the cold restores above (cold: the worker spawned at t0, what cellad does "
              f"today); medians of {a.runs} each\n")
        unp = a.standby_unprepared
        print("| guest | cold restore to running (min-max) | standby restore to running "
              "(min-max) | standby (worker's own) | "
              + ("standby without --mem (min-max) [worker's own] | " if unp else "")
              + "cold first line | standby first line |")
        print("|---|---|---|---|---|---|" + ("---|" if unp else ""))
        for mem, _, _, _, _, _, runs_to, first, _, _, _, sruns, uruns in rows:
            st = [r[0] for r in sruns]
            ut = [r[0] for r in uruns]
            print(f"| {mem} MiB | {common.median(runs_to) * 1e3:.2f} ms "
                  f"({min(runs_to) * 1e3:.2f}-{max(runs_to) * 1e3:.2f}) | "
                  f"{common.median(st) * 1e3:.2f} ms ({min(st) * 1e3:.2f}-{max(st) * 1e3:.2f}) | "
                  f"{common.median([r[2] for r in sruns]):.2f} ms | "
                  + (f"{common.median(ut) * 1e3:.2f} ms ({min(ut) * 1e3:.2f}-"
                     f"{max(ut) * 1e3:.2f}) [{common.median([r[2] for r in uruns]):.2f}] | "
                     if unp else "")
                  + f"{first * 1e3:.1f} ms | "
                  f"{common.median([r[1] for r in sruns]) * 1e3:.1f} ms |")
    print(f"\nreproduce: bench/restore.py --build {b} --runs {a.runs} --sizes {a.sizes} "
          f"--touch {a.touch} --fill {a.fill}" + (" --standby" if a.standby else "")
          + (" --standby-unprepared" if a.standby_unprepared else "")
          + (f" --warm-ms {a.warm_ms:g}" if a.warm_ms else ""))


if __name__ == "__main__":
    main()
