"""test_concurrency.py: an action on one VM never holds up another (each VM
has its own lock in cellad; docs/architecture.md).

VM a's worker is stopped (SIGSTOP), so a pause of a hangs on its control
socket until the worker timeout. While that request is outstanding, VM b is
paused, resumed, read, listed, its events followed, a third VM is defined
and deleted, and a's own state is read: all are answered, and a's request
is still pending when they are. Then a's worker continues and a pauses."""

import os
import signal
import threading

from cellad import ConsoleTail, Daemon, check, main, memwriter_rounds


def test(args):
    with Daemon(args) as d:
        for name in ("a", "b"):
            d.define(name, "memwriter", "mib=4 rounds=0 pause_ms=50")
            d.action(name, "start")
            t = ConsoleTail(d, name, 0)
            memwriter_rounds(t, 1)
            t.close()
        pid_a = d.vm("a")["pid"]
        os.kill(pid_a, signal.SIGSTOP)
        result = {}

        def pause_a():
            result["r"] = d.post("/v1/vms/a/pause", timeout=120)

        t = threading.Thread(target=pause_a)
        t.start()
        try:
            # b, while a's request waits on a worker that does not answer.
            check(d.action("b", "pause")["state"] == "paused", "b pauses")
            check(d.action("b", "resume")["state"] == "running", "b resumes")
            check(d.vm("b")["state"] == "running", "b reads")
            names = sorted(v["name"] for v in d.get("/v1/vms").json["vms"])
            check(names == ["a", "b"], f"the list answers: {names}")
            check(d.vm("a")["state"] == "running", "a itself can be read")
            d.define("c", "hello")
            check(d.request("DELETE", "/v1/vms/c").status in (200, 204), "c defined and deleted")
            ev = [e["event"] for e in d.events(vm="b")]
            check("paused" in ev and "resumed" in ev, f"b's events: {ev}")
            check(t.is_alive(), "all of that while a's pause was still waiting for its worker")
        finally:
            os.kill(pid_a, signal.SIGCONT)
            t.join(120)
        r = result["r"]
        check(r.status in (200, 500), f"a's pause ends once its worker runs again: {r.status}")
        vm = d.wait_state("a", ("running", "paused"))
        check(vm["pid"] == pid_a, f"a keeps its worker: {vm['state']}")
        for name in ("a", "b"):
            d.action(name, "kill")


if __name__ == "__main__":
    main(test)
