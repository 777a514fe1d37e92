"""test_dynmem_overcommit.py: memory overcommit with dynamic memory
(docs/memory.md, "Sizing a host").

VMs of 3 GiB whose memory adds up to twice the host's RAM (memfd guest
memory is allocated lazily) run memload with working sets that fit: each
uses 48 MiB, then half of them grow to 256 MiB. cellad admits them with
memory_overcommit and its balancer, on the host's real MemAvailable and
PSI, takes each down to its minimum and gives memory back as the working
sets grow. Nothing is OOM-killed: every worker stays alive and running,
no guest reports lost memory, the kernel log has no OOM kill of a worker,
and every VM ends with a clean exit; the balancer's decisions are in the
events. Figures: the host's MemAvailable before and at the peak, the sum
of the workers' RssShmem. A longer version: bench/dynmem_overcommit.py
(N and sizes from its command line)."""

import os
import subprocess
import sys
import time

from cellad import Daemon, TestFailure, check, log, main, status_fields

VM_MIB = 3072     # the test guest maps RAM below the 3 GiB hole only
MIN_MIB = 128
USE_MIB, CACHE_MIB, GROW_MIB = 48, 16, 256


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    raise TestFailure(f"/proc/meminfo has no {key}")


def dmesg_oom():
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [l for l in out.splitlines() if "Killed process" in l or "oom-kill" in l]


def dm(d, name):
    return d.get(f"/v1/vms/{name}/metrics").json.get("dynamic_memory") or {}


def wait_all(d, names, pred, what, timeout):
    deadline = time.monotonic() + timeout
    while True:
        left = [n for n in names if not pred(dm(d, n))]
        if not left:
            return
        if time.monotonic() > deadline:
            raise TestFailure(f"{what}: not reached by {left[:4]}: {dm(d, left[0])}")
        time.sleep(0.25)  # polling the API with a deadline


def run(args, count=None, vm_mib=VM_MIB, factor=2.0):
    total = meminfo("MemTotal")
    count = count or -(-int(total * factor) // vm_mib)
    check(count * vm_mib >= factor * total,
          f"{count} VMs of {vm_mib} MiB = {count * vm_mib} MiB, {factor}x the host's {total} MiB")
    oom_before = dmesg_oom()
    cfg = {"memory_overcommit": factor + 0.5, "console_history_kib": 64,
           "dynmem": {"period_ms": 500, "min_change_mib": 8, "shrink_delay_ms": 1000}}
    with Daemon(args, config=cfg) as d:
        names = [f"oc{i:02d}" for i in range(count)]
        avail0 = meminfo("MemAvailable")
        t0 = time.monotonic()
        for i, name in enumerate(names):
            d.define(name, "memload", f"use={USE_MIB} cache={CACHE_MIB}", memory_mib=vm_mib,
                     balloon=True, dynamic_memory={"enabled": True, "minimum_mib": MIN_MIB,
                                                   "weight": 1000 + 500 * (i % 4)})
            d.action(name, "start")
        for name in names:
            d.wait_console(name, "memload: ready", timeout=120)
        log(f"{count} VMs running after {time.monotonic() - t0:.1f} s")
        # Idle: each goes down to its minimum (demand 48 MiB + 20 % < 128).
        wait_all(d, names, lambda m: m.get("target_mib") == MIN_MIB, "down to the minimum", 120)
        log(f"all at {MIN_MIB} MiB after {time.monotonic() - t0:.1f} s")
        # Half of them grow their working set: the balancer gives memory back.
        grow = names[::2]
        for name in grow:
            r = d.post(f"/v1/vms/{name}/console", raw=f"use {GROW_MIB}\n".encode(),
                       headers={"Content-Type": "application/octet-stream"})
            check(r.status == 204, f"{name}: console input")
        want = GROW_MIB + (GROW_MIB * 20 + 99) // 100
        wait_all(d, grow, lambda m: m.get("target_mib", 0) >= want, "grown", 120)
        avail1 = meminfo("MemAvailable")
        rss = sum(int(status_fields(d.vm(n)["pid"])["RssShmem"][0]) for n in names) // 1024
        log(f"MemAvailable {avail0} -> {avail1} MiB; workers' RssShmem {rss} MiB for "
            f"{count * vm_mib} MiB of guest memory")
        for name in names:
            vm = d.vm(name)
            check(vm["state"] == "running" and vm["pid"], f"{name} still running")
            r = d.post(f"/v1/vms/{name}/console", raw=b"check\n",
                       headers={"Content-Type": "application/octet-stream"})
            d.wait_console(name, "memload: check ok", timeout=60)
            out = d.console(name)
            check("out of memory" not in out and "FAIL" not in out, f"{name}: guest memory intact")
        ev = [e for e in d.events() if e["event"] == "memory-balance"]
        reasons = {e["reason"] for e in ev}
        check(len({e["vm"] for e in ev}) == count and "idle" in reasons and "demand" in reasons,
              f"{len(ev)} memory-balance events for {count} VMs ({sorted(reasons)})")
        for name in names:
            d.action(name, "stop", {"timeout_s": 0}, expect=202)
        for name in names:
            vm = d.wait_state(name, "stopped", timeout=60)
            check(vm.get("exit_status") in (None, 0, 1, 3) or "exit_status" not in vm,
                  f"{name}: exit {vm.get('exit_status')} {vm.get('exit_reason', '')}")
    oom_after = dmesg_oom()
    if oom_before is None or oom_after is None:
        log("dmesg is not readable here: the OOM check relies on the workers' states")
    else:
        new = [l for l in oom_after if l not in oom_before]
        check(not [l for l in new if "cella" in l], f"no worker OOM-killed: {new[-3:]}")
    return count, avail0, avail1, rss


def test(args):
    run(args)


if __name__ == "__main__":
    main(test)
