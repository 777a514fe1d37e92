"""test_admission.py: host-wide admission control. With a capacity of
1024 MiB (memory_capacity_mib) and the default 64 MiB overhead, a 512 MiB VM
starts, a second one is refused with a clear error (409, field memory_mib,
naming what is committed), and starts once the first has stopped; a 2 GiB VM
starts only with memory_overcommit 2.5."""

from cellad import ConsoleTail, Daemon, check, main, memwriter_rounds


def run_one(d, name):
    d.action(name, "start")
    t = ConsoleTail(d, name, 0)
    memwriter_rounds(t, 1)
    t.close()


def test(args):
    with Daemon(args, config={"memory_capacity_mib": 1024}) as d:
        for name in ("a", "b"):
            d.define(name, "memwriter", "mib=4 rounds=0 pause_ms=50", memory_mib=512)
        run_one(d, "a")
        r = d.post("/v1/vms/b/start")
        err = r.json.get("error", {}) if r.status != 200 else {}
        check(r.status == 409 and err.get("field") == "memory_mib" and
              "576 of 1024 MiB are committed" in err.get("reason", ""),
              f"the second start is refused: {r.status} {err}")
        check(d.vm("b")["state"] == "defined", "b did not start")
        d.action("a", "kill")
        run_one(d, "b")
        check(True, "b starts once a has stopped")
        d.action("b", "kill")
        d.define("big", "memwriter", "mib=4 rounds=0 pause_ms=50", memory_mib=2048)
        r = d.post("/v1/vms/big/start")
        check(r.status == 409, f"2 GiB on a 1 GiB host is refused: {r.status}")
    with Daemon(args, config={"memory_capacity_mib": 1024, "memory_overcommit": 2.5}) as d:
        d.define("big", "memwriter", "mib=4 rounds=0 pause_ms=50", memory_mib=2048)
        run_one(d, "big")
        check(True, "with memory_overcommit 2.5 the 2 GiB VM starts")
        d.action("big", "kill")


if __name__ == "__main__":
    main(test)
