"""test_save.py: Save-VM. A running memwriter guest is saved (the worker
writes its state into a file cellad passes as a descriptor, then exits with
status 14); the VM shows "saved"; `cella vm restore` (start) resumes it from
the file, the guest's rounds carry on where they were (memwriter checks all
of its memory each round), its memory was filled ahead of it (metrics'
memory.restore_prefetch, /metrics) and the file is consumed; delete-state discards a
saved state; out-of-order requests get 409 (exit status 5)."""

import os
import re
import time
from cellad import ConsoleTail, Daemon, check, main, memwriter_rounds


def last_round(d, name):
    return max(int(m) for m in re.findall(r"memwriter: round (\d+)", d.console(name)))


def test(args):
    with Daemon(args, config={"console_history_kib": 4096}) as d:
        vm = d.define("s", "memwriter", cmdline="mib=4 rounds=0 pause_ms=50")
        saved = os.path.join(d.state, "vms", vm["uuid"], "saved.state")
        d.cli("vm", "save", "s", expect=5)
        d.action("s", "start")
        t = ConsoleTail(d, "s", 0)
        _, last = memwriter_rounds(t, 3)
        t.close()
        d.cli("vm", "save", "s")
        seen = len(d.console("s", history=1 << 30).encode())
        last = last_round(d, "s")  # the last round before the save
        vm = d.vm("s")
        check(vm["state"] == "saved" and vm["pid"] is None, "saved: no worker left")
        check(vm["last_exit"]["status"] == 14, f"worker exit status 14: {vm['last_exit']}")
        check(os.path.getsize(saved) >= 64 << 20, f"state file {os.path.getsize(saved)} bytes")
        ev = [e["event"] for e in d.events(vm="s")]
        check("saved" in ev, f"saved event: {ev}")
        for verb in ("pause", "resume", "stop", "reset"):
            check(d.post(f"/v1/vms/s/{verb}").status == 409, f"{verb} refused while saved")
        check(d.request("PATCH", "/v1/vms/s", {"memory_mib": 128}).status == 409,
              "memory cannot change under a saved state")

        d.cli("vm", "restore", "s")
        t = ConsoleTail(d, "s", seen)
        first, _ = memwriter_rounds(t, 0)
        memwriter_rounds(t, first + 2)
        t.close()
        check(last <= first <= last + 2, f"resumed at round {first} (saved after round {last})")
        check(not os.path.exists(saved), "the state file was consumed by the start")
        check(d.vm("s")["state"] == "running", "running again")
        # The restored worker filled its memory ahead of the guest, inside
        # cellad's sandbox (docs/state-format.md, "Filling restored memory").
        deadline = time.monotonic() + 60
        while True:
            pf = d.get("/v1/vms/s/metrics").json.get("memory", {}).get("restore_prefetch")
            if pf and pf["state"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polling the metrics with a deadline
        check(pf and pf["state"] == "done" and pf["written_pages"] >= (4 << 20) // 4096 and
              pf["errors"] == 0, f"metrics memory.restore_prefetch: {pf}")
        # cellad passed /dev/userfaultfd: huge-page memory filled by the
        # worker's fault thread (vmm/core/mem_uffd.h), not the file mapping.
        check(pf["method"] == "userfaultfd", f"filled through userfaultfd: {pf['method']}")
        prom = d.get("/metrics").body
        check(re.search(r'cella_vm_restore_prefetched_bytes\{vm="s"\} [1-9]', prom) is not None,
              "/metrics has cella_vm_restore_prefetched_bytes")

        d.cli("vm", "save", "s")
        d.cli("vm", "delete-state", "s")
        check(d.vm("s")["state"] == "stopped" and not os.path.exists(saved),
              "delete-state: stopped, file gone")
        d.cli("vm", "delete-state", "s", expect=5)
        d.action("s", "start")
        d.action("s", "kill")


if __name__ == "__main__":
    main(test)
