"""test_lifecycle.py: the VM state machine through the API and the CLI:
define, start, console I/O, pause/resume, graceful stop (guest powers off
itself, or is turned off at the timeout), turn off, reset, change, delete,
every refusal with the current state named, persistence over a restart."""

import json
import os

from cellad import Daemon, TestFailure, check, log, main


def refusals(d):
    """Every action that does not fit a state is a 409 naming the state."""
    table = {
        "defined": ["stop", "kill", "reset", "pause", "resume"],
        "running": ["start", "resume"],
        "paused": ["start", "pause"],
        "stopped": ["stop", "kill", "reset", "pause", "resume"],
    }
    d.define("ref", "memwriter", "rounds=0 mib=4")
    for state, verbs in table.items():
        if state == "running":
            d.action("ref", "start")
        elif state == "paused":
            d.action("ref", "pause")
        elif state == "stopped":
            d.action("ref", "kill")
        check(d.vm("ref")["state"] == state, f"ref is {state}")
        for verb in verbs:
            r = d.post(f"/v1/vms/ref/{verb}")
            err = (r.json or {}).get("error", {})
            if r.status != 409 or err.get("state") != state or err.get("field") != "state":
                raise TestFailure(f"{verb} while {state}: {r}")
        log(f"ok: refused {verbs} while {state}")
        if state in ("running", "paused"):
            r = d.request("DELETE", "/v1/vms/ref")
            check(r.status == 409 and r.json["error"]["state"] == state,
                  f"delete refused while {state}")
            r = d.request("PATCH", "/v1/vms/ref", {"memory_mib": 128})
            check(r.status == 409 and r.json["error"]["field"] == "memory_mib",
                  f"memory change refused while {state}, naming the field")
    r = d.request("DELETE", "/v1/vms/ref")
    check(r.status == 204, "delete once stopped")
    check(d.get("/v1/vms/ref").status == 404, "deleted VM is gone")


def test(args):
    with Daemon(args) as d:
        # Define and inspect.
        vm = d.define("echo1", "echo", cpus=1, autostart=False)
        check(vm["state"] == "defined" and len(vm["uuid"]) == 36, "defined with a UUID")
        r = d.post("/v1/vms", {"name": "echo1", "kernel": args["guests"]["echo"]})
        check(r.status == 409 and r.json["error"]["field"] == "name", "duplicate name refused")

        # Start; console history and input through the API.
        vm = d.action("echo1", "start")
        check(vm["state"] == "running" and vm["pid"], "start -> running with a worker pid")
        d.wait_console("echo1", "echo: ready")
        r = d.post("/v1/vms/echo1/console", raw=b"first line\n",
                   headers={"Content-Type": "application/octet-stream"})
        check(r.status == 204, "console input accepted")
        d.wait_console("echo1", "echo: first line")

        # Pause and resume: paused vCPUs take no exits.
        d.action("echo1", "pause")
        m1 = d.get("/v1/vms/echo1/metrics").json
        m2 = d.get("/v1/vms/echo1/metrics").json
        check(m1["state"] == "paused" and m1["exits"]["io"] == m2["exits"]["io"],
              "paused: exit counts frozen")
        d.action("echo1", "resume")
        d.post("/v1/vms/echo1/console", raw=b"second\n")
        d.wait_console("echo1", "echo: second")
        m3 = d.get("/v1/vms/echo1/metrics").json
        check(m3["exits"]["io"] > m2["exits"]["io"], "resumed: the guest runs again")

        # The guest powers off by itself (quit -> debug exit): stopped, not crashed.
        d.post("/v1/vms/echo1/console", raw=b"quit\n")
        vm = d.wait_state("echo1", ("stopped", "crashed"))
        check(vm["state"] == "stopped" and vm["last_exit"]["status"] == 1,
              "guest's own exit -> stopped, status 1")
        check("PASS echo" in d.console("echo1"), "console history kept after the stop")

        # Graceful stop of a guest that never powers off: turned off at the timeout.
        d.define("mw", "memwriter", "rounds=0 mib=4")
        d.action("mw", "start")
        vm = d.action("mw", "stop", {"timeout_s": 1}, expect=202)
        check(vm["state"] == "stopping", "stop -> 202 stopping")
        vm = d.wait_state("mw", "stopped", timeout=20)
        check("did not power off within 1000 ms" in vm["last_exit"]["reason"],
              "graceful stop timed out and turned off: " + vm["last_exit"]["reason"])

        # Reset: a new worker, running again.
        d.action("mw", "start")
        pid = d.vm("mw")["pid"]
        vm = d.action("mw", "reset")
        check(vm["state"] == "running" and vm["pid"] != pid, "reset -> running in a new worker")
        ev = [e["event"] for e in d.events(vm="mw")]
        check("reset" in ev, f"reset event seen: {ev}")

        # Turn off.
        vm = d.action("mw", "kill")
        check(vm["state"] == "stopped" and vm["last_exit"]["status"] == 12, "kill -> stopped")

        # Live changes vs changes that need a stop.
        d.action("mw", "start")
        r = d.request("PATCH", "/v1/vms/mw", {"cpu_weight": 200, "restart_policy": "always"})
        check(r.status == 200 and r.json["cpu_weight"] == 200, "live change of cpu_weight")
        r = d.request("PATCH", "/v1/vms/mw", {"cpus": 2})
        check(r.status == 409 and r.json["error"]["field"] == "cpus", "cpus change needs a stop")
        d.action("mw", "kill")
        r = d.request("PATCH", "/v1/vms/mw", {"cpus": 2, "memory_mib": 96})
        check(r.status == 200 and r.json["cpus"] == 2, "cpus change while stopped")

        refusals(d)

        # The CLI: tables, --json, exit statuses.
        p = d.cli("vm", "create", "cli1", "--kernel", args["guests"]["memwriter"], "--cmdline",
                  "rounds=0 mib=4", "--memory", "64", "--cpus", "2", "--restart", "on-crash")
        check("cli1 defined" in p.stdout, "cella vm create")
        d.cli("vm", "start", "cli1")
        d.cli("vm", "start", "cli1", expect=5)
        p = d.cli("vm", "list")
        check("cli1" in p.stdout and "running" in p.stdout and "NAME" in p.stdout, "vm list table")
        p = d.cli("--json", "vm", "show", "cli1")
        check(json.loads(p.stdout)["cpus"] == 2, "vm show --json")
        d.cli("vm", "suspend", "cli1")
        check(d.vm("cli1")["state"] == "paused", "cella vm suspend (alias of pause)")
        d.cli("vm", "resume", "cli1")
        d.cli("vm", "set", "cli1", "--cpu-max", "50")
        d.cli("vm", "set", "cli1", "--memory", "128", expect=5)
        d.cli("vm", "delete", "cli1", expect=5)
        p = d.cli("vm", "stop", "cli1", "--timeout", "1")
        check("stopped" in p.stdout, "cella vm stop waits for stopped")
        d.cli("vm", "destroy", "cli1", expect=5)
        d.cli("vm", "show", "nosuch", expect=4)
        d.cli("vm", "bogus", expect=2)
        d.cli("vm", "create", expect=2)
        d.cli("--socket", "/nonexistent/sock", "vm", "list", expect=3)
        for cmd in ("list", "create", "show", "start", "stop", "kill", "reset", "pause",
                    "resume", "set", "delete", "console", "metrics"):
            p = d.cli("vm", cmd, "--help")
            check(p.stdout.startswith("Usage: cella vm " + cmd), f"cella vm {cmd} --help")
        p = d.cli("completion", "bash")
        check("complete -F _cella cella" in p.stdout, "bash completion")
        p = d.cli("--json", "host", "info")
        check(json.loads(p.stdout)["kvm"] is True, "cella host info")
        d.cli("vm", "delete", "cli1")

        # Definitions persist over a cellad restart.
        before = {v["name"]: v for v in d.get("/v1/vms").json["vms"]}
        d.stop()
        d.start()
        after = {v["name"]: v for v in d.get("/v1/vms").json["vms"]}
        check(set(before) == set(after) and all(
            before[n]["uuid"] == after[n]["uuid"] and before[n]["cpus"] == after[n]["cpus"]
            for n in before), "definitions survive a cellad restart")


if __name__ == "__main__":
    main(test)
