"""test_dynmem_overcommit.py: memory overcommit with dynamic memory
(docs/memory.md, "Sizing a host").

VMs of 3 GiB whose memory adds up to twice the host's RAM (memfd guest
memory is allocated lazily) run memload with working sets that fit: each
uses 24 MiB (and 8 of cache), then half of them grow to 96 MiB. cellad admits them with
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
from concurrent.futures import ThreadPoolExecutor

from cellad import Daemon, TestFailure, check, log, main, status_fields

VM_MIB = 3072     # the test guest maps RAM below the 3 GiB hole only
MIN_MIB = 64
USE_MIB, CACHE_MIB, GROW_MIB = 24, 8, 96  # small: a first touch costs ~14 us a page here


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


def run(args, count=None, vm_mib=VM_MIB, factor=2.0, grow_mib=GROW_MIB):
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
        with ThreadPoolExecutor(8) as pool:  # starts in parallel, like a host's autostart
            list(pool.map(lambda n: d.action(n, "start"), names))
            list(pool.map(lambda n: d.wait_console(n, "memload: ready", timeout=120), names))
        log(f"{count} VMs running after {time.monotonic() - t0:.1f} s")
        # Idle: each goes down to its minimum (demand 48 MiB + 20 % < 128).
        wait_all(d, names, lambda m: m.get("target_mib") == MIN_MIB, "down to the minimum", 120)
        log(f"all at {MIN_MIB} MiB after {time.monotonic() - t0:.1f} s")
        # Half of them grow their working set: the balancer gives memory back.
        grow = names[::2]
        for name in grow:
            r = d.post(f"/v1/vms/{name}/console", raw=f"use {grow_mib}\n".encode(),
                       headers={"Content-Type": "application/octet-stream"})
            check(r.status == 204, f"{name}: console input")
        log(f"working sets grow after {time.monotonic() - t0:.1f} s")
        want = grow_mib + (grow_mib * 20 + 99) // 100
        wait_all(d, grow, lambda m: m.get("target_mib", 0) >= want, "grown", 120)
        avail1 = meminfo("MemAvailable")
        rss = sum(int(status_fields(d.vm(n)["pid"])["RssShmem"][0]) for n in names) // 1024
        log(f"MemAvailable {avail0} -> {avail1} MiB; workers' RssShmem {rss} MiB for "
            f"{count * vm_mib} MiB of guest memory")
        log(f"grown after {time.monotonic() - t0:.1f} s")

        def guest_check(name):
            vm = d.vm(name)
            check(vm["state"] == "running" and vm["pid"], f"{name} still running")
            r = d.post(f"/v1/vms/{name}/console", raw=b"check\n",
                       headers={"Content-Type": "application/octet-stream"})
            check(r.status == 204, f"{name}: console input")
            out = d.wait_console(name, "memload: check ok", timeout=60)
            check("out of memory" not in out and "FAIL" not in out, f"{name}: guest memory intact")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(guest_check, names))
        ev = [e for e in d.events() if e["event"] == "memory-balance"]
        reasons = {e["reason"] for e in ev}
        check(len({e["vm"] for e in ev}) == count and "idle" in reasons and "demand" in reasons,
              f"{len(ev)} memory-balance events for {count} VMs ({sorted(reasons)})")
        for name in names:
            d.action(name, "stop", {"timeout_s": 0}, expect=202)
        for name in names:
            vm = d.wait_state(name, "stopped", timeout=60)
            last = vm.get("last_exit") or {}
            why = (last.get("reason") or "").lower()
            check(last and "signal" not in why and "kill" not in why,
                  f"{name}: ended cleanly (status {last.get('status')}, {why!r})")
        log(f"done after {time.monotonic() - t0:.1f} s")
    oom_after = dmesg_oom()
    if oom_before is None or oom_after is None:
        log("dmesg is not readable here: the OOM check relies on the workers' states")
    else:
        new = [l for l in oom_after if l not in oom_before]
        check(not [l for l in new if "cella" in l], f"no worker OOM-killed: {new[-3:]}")
    return {"vms": count, "vm_mib": vm_mib, "host_mib": total, "available_before_mib": avail0,
            "available_peak_mib": avail1, "workers_rss_shmem_mib": rss,
            "seconds": round(time.monotonic() - t0, 1)}


def test(args):
    run(args)


if __name__ == "__main__":
    main(test)
