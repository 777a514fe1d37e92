"""test_standby.py: restores through cellad's standby workers (docs/cellad.md,
"Standby workers"), seen from outside.

- cellad keeps one `cella-vm --standby` ready (GET /v1/host standby_workers),
  sandboxed like any worker: its own uid, its own PID namespace, the standby
  cgroup;
- a saved memwriter started again runs in that very process (the VM's pid is
  the standby's from before the start), the guest carries on from its round,
  the worker runs as the uid it had, now in the VM's cgroups, and it holds
  the descriptors a cold worker holds, 0-3 (/dev/null, the VM's log twice,
  the control socket) at the same numbers (compared with a cold restore's at
  the end); the started event says so and gives the worker's
  restore-to-ready figure, and its log the request it took;
- a new standby appears after the take, prepared for the restored VM's RAM
  size (--mem), and the next restore uses it and its prepared VM; one
  killed is replaced;
- cellad stopped leaves no standby; cellad killed (SIGKILL) neither (the
  standby reads the end of input), and the restored VM is adopted by the next
  cellad with its pid; a standby found in the standby cgroup at start is
  killed;
- standby_workers 0: none, and a restore starts its worker cold.
"""
import os
import re
import signal
import subprocess

from cellad import ConsoleTail, Daemon, check, log, main, memwriter_rounds, poll, status_fields


def standbys(d):
    return d.get("/v1/host").json["standby_workers"]


def ready_standby(d, not_pids=()):
    def one():
        sw = standbys(d)
        new = [p for p in sw["pids"] if p not in not_pids]
        return new[0] if sw["ready"] >= 1 and new else None
    return poll("a ready standby worker", one, timeout=30)


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def fd_table(pid):
    """{n: what fd n is}: paths by their last name, sockets and the like by
    their kind (inode numbers differ between two workers)."""
    out = {}
    for n in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{n}")
        except FileNotFoundError:
            continue
        link = re.sub(r"\[\d+\]$", "", link) if ":" in link else os.path.basename(link)
        out[int(n)] = re.sub(r"^[0-9a-f-]{36}\.", "UUID.", link)
    return out


def cgroup_procs(d, group):
    try:
        with open(f"/sys/fs/cgroup/cpu/{d.cgroup_parent}/{group}/cgroup.procs") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return None


def save_and_restore(d, name):
    """Save the running memwriter, restore it; the started event and the
    console from the restore on."""
    d.cli("vm", "save", name)
    seen = len(d.console(name, history=1 << 30).encode())
    since = max([e["seq"] for e in d.events(vm=name)] + [0])
    d.cli("vm", "restore", name)
    ev = d.wait_event(name, "started", since=since + 1)
    t = ConsoleTail(d, name, seen)
    first, _ = memwriter_rounds(t, 0)
    memwriter_rounds(t, first + 1)
    t.close()
    return ev


def test(args):
    with Daemon(args, config={"console_history_kib": 4096}) as d:
        v1 = cgroup_procs(d, "") is not None
        vm = d.define("s", "memwriter", cmdline="mib=4 rounds=0 pause_ms=50")
        sb = ready_standby(d)
        st = status_fields(sb)
        uid = st["Uid"][0]
        check(uid != "0" and st["NSpid"][-1] == "1",
              f"standby {sb} sandboxed: uid {uid}, PID 1 of its namespace")
        if v1:
            check(sb in cgroup_procs(d, "standby"), "the standby is in the standby cgroup")
        d.action("s", "start")
        t = ConsoleTail(d, "s", 0)
        memwriter_rounds(t, 2)
        t.close()
        ev = save_and_restore(d, "s")
        pid = d.vm("s")["pid"]
        check(pid == sb, f"the restored VM runs in the standby worker {sb} (pid {pid})")
        check(f"through standby worker {sb}" in ev["detail"] and
              re.search(r"vCPUs ready [\d.]+ ms after the restore began", ev["detail"]),
              f"started event: {ev['detail']}")
        check(status_fields(pid)["Uid"][0] == uid, f"it keeps its sandbox uid {uid}")
        if v1:
            check(pid in cgroup_procs(d, vm["uuid"]) and pid not in cgroup_procs(d, "standby"),
                  "it moved to the VM's cgroup")
        with open(os.path.join(d.state, "logs", "s.log")) as f:
            check("standby: restore request taken" in f.read(), "the VM's log has the request")
        std = fd_table(pid)
        log(f"standby-restored worker's fds: {std}")
        check(std[0] == "null" and std[1] == std[2] == "s.log" and std[3].startswith("socket:")
              and "kvm" in std.values() and "anon_inode:kvm-vm" in std.values(),
              "fds: 0 /dev/null, 1-2 the VM's log, 3 the control socket, /dev/kvm, its VM")

        sb2 = ready_standby(d, not_pids=(sb,))
        with open(f"/proc/{sb2}/cmdline") as f:
            argv = f.read().split("\0")
        check(sb2 != sb and argv[1:6] == ["--standby", "--kvm", "fd:3", "--mem", "64"],
              f"a new standby {sb2} after the take, prepared for the VM's 64 MiB: {argv}")
        # Restored again, through the prepared one: its VM taken as it is.
        save_and_restore(d, "s")
        check(d.vm("s")["pid"] == sb2, f"the second restore runs in standby {sb2}")
        with open(os.path.join(d.state, "logs", "s.log")) as f:
            body = f.read()
        check(body.count("standby: restore request taken") == 2 and
              "prepared VM is not used" not in body, "it used the VM prepared for 64 MiB")
        pid = sb2
        sb2b = ready_standby(d, not_pids=(sb, sb2))
        os.kill(sb2b, signal.SIGKILL)
        sb3 = ready_standby(d, not_pids=(sb, sb2, sb2b))
        check(gone(sb2b) and standbys(d)["died"] >= 1,
              f"the killed standby {sb2b} was replaced by {sb3}")

        d.stop()
        check(gone(sb3), "cellad stopped: its standby is gone")
        d.start()
        sb4 = ready_standby(d, not_pids=(sb3,))
        check(d.vm("s")["pid"] == pid and d.vm("s")["state"] == "running",
              "the restored VM's worker is adopted with its pid")
        d.kill9()
        poll("the standby of a killed cellad to exit", lambda: gone(sb4), timeout=10)
        check(True, "cellad killed: its standby exited")
        stale = None
        if v1:
            # One that outlived its cellad (its stdin still open): the next
            # cellad finds it in the standby cgroup and kills it.
            stale = subprocess.Popen([args["cella_vm"], "--standby"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(f"/sys/fs/cgroup/cpu/{d.cgroup_parent}/standby/cgroup.procs", "w") as f:
                f.write(str(stale.pid))
        d.start()
        if stale:
            check(stale.wait(timeout=10) == -signal.SIGKILL,
                  "a stale standby in the standby cgroup is killed by the next cellad")
        ready_standby(d, not_pids=(sb4,))
        d.action("s", "kill")

    with Daemon(args, name="cellad-cold",
                config={"console_history_kib": 4096, "standby_workers": 0}) as d:
        sw = standbys(d)
        check(sw["want"] == 0 and sw["pids"] == [], f"standby_workers 0: none kept ({sw})")
        d.define("s", "memwriter", cmdline="mib=4 rounds=0 pause_ms=50")
        d.action("s", "start")
        t = ConsoleTail(d, "s", 0)
        memwriter_rounds(t, 1)
        t.close()
        ev = save_and_restore(d, "s")
        check("worker started cold" in ev["detail"], f"cold restore: {ev['detail']}")
        cold = fd_table(d.vm("s")["pid"])
        log(f"cold-restored worker's fds: {cold}")
        check([cold[n] for n in range(4)] == [std[n] for n in range(4)] and
              sorted(cold.values()) == sorted(std.values()),
              "a cold restore's worker holds the same descriptors, 0-3 at the same numbers")
        d.action("s", "kill")


if __name__ == "__main__":
    main(test, need_root=True)
