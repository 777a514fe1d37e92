"""test_adopt.py: the service can die without taking VMs down. kill -9 of
cellad leaves every worker and guest running; a restarted cellad re-adopts
them with their state (running, paused), their consoles and their control;
a worker that died meanwhile is settled from its exit record (or its
absence); no definition is lost. Then a host reboot is simulated (the boot
id recorded in the database changes, the workers are gone): autostart VMs
come back, the others stay stopped."""

import os
import select
import signal
import sqlite3

from cellad import Daemon, TestFailure, check, log, main


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test(args):
    with Daemon(args) as d:
        d.define("echo1", "echo")
        d.define("mw", "memwriter", "rounds=0 mib=4", autostart=True)
        d.define("paused1", "memwriter", "rounds=0 mib=4")
        d.define("dies", "memwriter", "rounds=0 mib=4")
        d.define("poweroff", "echo")
        d.define("idle", "hello")
        for n in ("echo1", "mw", "paused1", "dies", "poweroff"):
            d.action(n, "start")
        d.action("paused1", "pause")
        d.wait_console("echo1", "echo: ready")
        d.wait_console("mw", "round 2")
        pids = {n: d.vm(n)["pid"] for n in ("echo1", "mw", "paused1", "dies", "poweroff")}
        before = {v["name"]: v for v in d.get("/v1/vms").json["vms"]}

        log(f"kill -9 cellad (pid {d.proc.pid}) with 5 VMs running")
        d.kill9()
        check(all(alive(p) for p in pids.values()), "every worker survives cellad's death")
        # While cellad is down: one worker is killed, one guest powers off by itself.
        os.kill(pids["dies"], signal.SIGKILL)
        # SIGKILL is asynchronous: wait (pidfd, event-driven) until that worker
        # has really exited, so the new cellad finds it dead, not dying.
        pidfd = os.pidfd_open(pids["dies"])
        select.select([pidfd], [], [], 30)
        os.close(pidfd)
        ctl = os.path.join(d.run, before["poweroff"]["uuid"] + ".console")
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.connect(ctl)
        s.sendall(b"quit\n")
        s.close()

        d.start()
        vms = {v["name"]: v for v in d.get("/v1/vms").json["vms"]}
        check(set(vms) == set(before) and all(vms[n]["uuid"] == before[n]["uuid"]
                                              for n in vms), "no definition lost")
        check(vms["echo1"]["state"] == "running" and vms["echo1"]["pid"] == pids["echo1"],
              "echo1 re-adopted: running, same worker")
        check(vms["mw"]["state"] == "running" and vms["mw"]["uptime_ms"] > 0,
              "mw re-adopted with its uptime")
        check(vms["paused1"]["state"] == "paused", "paused1 re-adopted as paused")
        check(vms["dies"]["state"] == "crashed", "a worker killed meanwhile -> crashed: "
              + str(vms["dies"]["last_exit"]))
        pv = d.wait_state("poweroff", ("stopped", "crashed"))
        check(pv["state"] == "stopped" and pv["last_exit"]["status"] == 1,
              "a guest that exited meanwhile -> stopped, from its exit record")
        check(vms["idle"]["state"] == "defined", "idle stays defined")

        # The adopted workers are fully controlled again.
        r = d.post("/v1/vms/echo1/console", raw=b"after adoption\n")
        check(r.status == 204, "console input to an adopted worker")
        d.wait_console("echo1", "echo: after adoption")
        d.action("paused1", "resume")
        m = d.get("/v1/vms/paused1/metrics").json
        check(m["state"] == "running" and m["exits"]["io"] > 0, "resume and metrics after adoption")
        vm = d.action("mw", "kill")
        check(vm["state"] == "stopped" and not alive(pids["mw"]),
              "turn off an adopted worker (not cellad's child)")
        d.action("mw", "start")

        # Host reboot: workers gone, boot id changed.
        for n in ("echo1", "mw", "paused1"):
            pids[n] = d.vm(n)["pid"]
        d.kill9()
        for n in ("echo1", "mw", "paused1"):
            os.kill(pids[n], signal.SIGKILL)
        db = sqlite3.connect(os.path.join(d.state, "cellad.db"))
        db.execute("UPDATE meta SET value='simulated-previous-boot' WHERE key='boot_id'")
        db.commit()
        db.close()
        d.start()
        vm = d.wait_state("mw", "running")
        check(vm["pid"] != pids["mw"], "autostart VM started after the (simulated) reboot")
        for n in ("echo1", "paused1"):
            vm = d.vm(n)
            check(vm["state"] == "stopped" and "rebooted" in vm["last_exit"]["reason"],
                  f"{n} (no autostart) is stopped after the reboot")


if __name__ == "__main__":
    main(test)
