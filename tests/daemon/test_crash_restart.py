"""test_crash_restart.py: workers that die are marked crashed with their
exit reason and restarted when their policy says so: a guest triple fault,
a worker killed with SIGKILL, a guest-initiated reset (restarted as a
reset, not a crash), the restart limit, and policy `never`."""

import os
import signal

from cellad import Daemon, TestFailure, check, log, main


def test(args):
    with Daemon(args) as d:
        # A guest crash (triple fault) with policy never: crashed, stays crashed.
        d.define("tf", "fault", "kind=triple")
        d.action("tf", "start")
        vm = d.wait_state("tf", "crashed")
        check(vm["last_exit"]["status"] == 6 and "triple fault" in vm["last_exit"]["reason"],
              f"triple fault -> crashed: {vm['last_exit']}")
        check(vm["restarts"] == 0, "policy never: no restart")

        # The same with on-crash: restarted until the limit, then left crashed.
        r = d.request("PATCH", "/v1/vms/tf", {"restart_policy": "on-crash"})
        check(r.status == 200, "policy changed to on-crash")
        d.action("tf", "start")
        d.wait_event("tf", "restarting")
        import time
        deadline = time.monotonic() + 60
        while d.vm("tf")["restarts"] < 5 or d.vm("tf")["state"] != "crashed":
            if time.monotonic() > deadline:
                raise TestFailure(f"tf: {d.vm('tf')}")
            time.sleep(0.05)  # polling the API with a deadline
        vm = d.vm("tf")
        check(vm["restarts"] == 5 and vm["state"] == "crashed",
              "on-crash: restarted 5 times within the window, then left crashed")
        check("restart" in d.log() and "giving up" in d.log(), "the limit is logged")

        # A worker killed from outside: crashed (signal named), restarted by policy.
        d.define("mw", "memwriter", "rounds=0 mib=4", restart_policy="on-crash")
        d.action("mw", "start")
        d.wait_console("mw", "round 1")
        pid = d.vm("mw")["pid"]
        os.kill(pid, signal.SIGKILL)
        ev = d.wait_event("mw", "crashed")
        check("SIGKILL" in ev.get("detail", "") or "KILL" in ev.get("detail", ""),
              f"crash reason names the signal: {ev.get('detail')}")
        vm = d.wait_state("mw", "running")
        check(vm["pid"] != pid and vm["restarts"] == 1, "restarted in a new worker")

        # A guest reset is a reset: the VM runs again, no crash counted.
        d.define("rs", "fault", "kind=reset")
        d.action("rs", "start")
        d.wait_event("rs", "reset")
        check(d.vm("rs")["restarts"] == 0, "guest reset is not a crash restart")
        vm = d.action("rs", "kill")
        check(vm["state"] == "stopped", "a VM in a reset loop is turned off, even while starting")

        # Power-off by the guest with policy always: restarted.
        d.define("po", "hello", restart_policy="always")
        d.action("po", "start")
        d.wait_event("po", "restarting")
        check(d.vm("po")["restarts"] >= 1, "policy always restarts after a guest exit")
        vm = d.action("po", "kill")
        check(vm["state"] == "stopped", "kill ends an always-restart VM")

        # A VM that cannot start (kernel removed after the definition).
        bad = os.path.join(d.dir, "gone.elf")
        with open(args["guests"]["hello"], "rb") as f, open(bad, "wb") as g:
            g.write(f.read())
        r = d.post("/v1/vms", {"name": "gone", "kernel": bad})
        check(r.status == 201, "defined with a kernel that will vanish")
        os.unlink(bad)
        r = d.post("/v1/vms/gone/start")
        check(r.status == 500 and "start" in r.json["error"]["reason"] and
              d.vm("gone")["state"] == "crashed", f"failed start reported: {r}")


if __name__ == "__main__":
    main(test)
