"""test_dynmem.py: dynamic memory (docs/memory.md, "Dynamic memory").

The field's errors (minimum <= startup <= maximum, the balloon, ranges) and
the CLI's --dynamic-memory; then two memload guests (used 64 MiB, cache
64 MiB, buffer 100 %: each wants 128 MiB of its 256) of weights 1000 and
9000 on a simulated host (dynmem.test_host_file: the host has N MiB for
these VMs and nothing else, so the pressure is exactly what the test
says): the balancer takes them from 256 to 128 MiB when idle; under
pressure the low-weight VM gives first (its worker's RssShmem falls, the
other's does not), no VM goes below its minimum, memory comes back to the
high weight first, then to all; every decision is a memory-balance event;
a live change of the minimum applies; the guests' memory is intact."""

import json
import os
import time

from cellad import Daemon, TestFailure, check, log, main, status_fields


def rss_shmem_mib(d, name):
    pid = d.vm(name)["pid"]
    return int(status_fields(pid)["RssShmem"][0]) / 1024


def dm(d, name):
    return d.get(f"/v1/vms/{name}/metrics").json.get("dynamic_memory") or {}


def wait_target(d, name, want, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        m = dm(d, name)
        if m.get("target_mib") == want:
            return m
        if time.monotonic() > deadline:
            raise TestFailure(f"{name}: dynamic memory target {m.get('target_mib')}, want {want}"
                              f" ({m})")
        time.sleep(0.1)  # polling the API with a deadline


def wait_balloon(d, name, mib, timeout=60):
    """The guest's balloon holds mib MiB (it followed the target)."""
    deadline = time.monotonic() + timeout
    while True:
        b = d.get(f"/v1/vms/{name}/metrics").json.get("balloon") or {}
        if b.get("inflated_bytes") == mib << 20:
            return b
        if time.monotonic() > deadline:
            raise TestFailure(f"{name}: balloon holds {b.get('inflated_bytes')}, want {mib} MiB")
        time.sleep(0.1)  # polling the API with a deadline


def balance_events(d, name, since):
    return [e for e in d.events(since=since, vm=name) if e["event"] == "memory-balance"]


def set_host(path, mib):
    with open(path + ".tmp", "w") as f:
        json.dump({"memory_mib": mib, "psi_some_avg10": 0}, f)
    os.rename(path + ".tmp", path)


def field_errors(d, kernel):
    base = {"name": "bad", "kernel": kernel, "memory_mib": 256, "balloon": True}
    cases = [
        ({"balloon": False, "dynamic_memory": {"enabled": True}}, "dynamic_memory.enabled",
         "balloon"),
        ({"dynamic_memory": {"enabled": True, "minimum_mib": 300}},
         "dynamic_memory.minimum_mib", "startup"),
        ({"dynamic_memory": {"enabled": True, "maximum_mib": 128}},
         "dynamic_memory.maximum_mib", "startup"),
        ({"dynamic_memory": {"enabled": True, "maximum_mib": 512}},
         "dynamic_memory.maximum_mib", "virtio-mem"),
        ({"dynamic_memory": {"weight": 0}}, "dynamic_memory.weight", ""),
        ({"dynamic_memory": {"weight": 10001}}, "dynamic_memory.weight", ""),
        ({"dynamic_memory": {"buffer_pct": 4}}, "dynamic_memory.buffer_pct", ""),
        ({"dynamic_memory": {"bogus": 1}}, "dynamic_memory.bogus", "unknown"),
        ({"dynamic_memory": 5}, "dynamic_memory", "object"),
    ]
    for extra, field, word in cases:
        body = dict(base, **extra)
        r = d.post("/v1/vms", body)
        check(r.status == 400 and r.json["error"]["field"] == field and
              word in r.json["error"]["reason"],
              f"{extra} refused naming {field}: {r.status} {r.body[:160]}")
    p = d.cli("vm", "create", "cli1", "--kernel", kernel, "--memory", "256", "--balloon",
              "--dynamic-memory", "min=64,max=256,buffer=50,weight=700")
    got = d.vm("cli1")["dynamic_memory"]
    check(got == {"enabled": True, "minimum_mib": 64, "maximum_mib": 256, "buffer_pct": 50,
                  "weight": 700}, f"CLI --dynamic-memory: {got}")
    p = d.cli("vm", "set", "cli1", "--dynamic-memory", "nope=1", expect=None)
    check(p.returncode != 0 and "min=MIB" in p.stderr, f"bad CLI key: {p.stderr}")
    d.cli("vm", "set", "cli1", "--no-dynamic-memory")
    got = d.vm("cli1")["dynamic_memory"]
    check(got["enabled"] is False and got["weight"] == 700, f"--no-dynamic-memory: {got}")
    r = d.request("PATCH", "/v1/vms/cli1", {"dynamic_memory": {"maximum_mib": None}})
    check(r.status == 200, f"maximum back to its default: {r.status}")
    d.cli("vm", "set", "cli1", "--memory", "128")
    check(d.vm("cli1")["dynamic_memory"]["maximum_mib"] == 128,
          "maximum defaults to the startup memory")
    r = d.request("DELETE", "/v1/vms/cli1")
    check(r.status in (200, 204), f"delete cli1: {r.status}")


def test(args):
    kernel = args["guests"]["memload"]
    with Daemon(args) as d0:
        field_errors(d0, kernel)
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"cella-dynmem-{os.getpid()}.json")
    set_host(tmp, 100000)
    cfg = {"dynmem": {"period_ms": 200, "test_host_file": tmp, "host_reserve_mib": 0,
                      "min_change_mib": 4, "shrink_delay_ms": 600},
           "console_history_kib": 256}
    try:
        with Daemon(args, config=cfg) as d:
            for name, weight in (("lo", 1000), ("hi", 9000)):
                d.define(name, "memload", "use=64 cache=64", memory_mib=256, balloon=True,
                         dynamic_memory={"enabled": True, "minimum_mib": 64, "buffer_pct": 100,
                                         "weight": weight})
                d.action(name, "start")
            for name in ("lo", "hi"):
                out = d.wait_console(name, "memload: ready")
                log(name + ": " + out[out.index("memload: ready"):].splitlines()[0])
            since = d.events()[-1]["seq"]

            # Idle: 256 -> demand 64 + 100 % = 128 MiB, after the shrink delay.
            for name in ("lo", "hi"):
                m = wait_target(d, name, 128)
                check(m["demand_mib"] == 64 and m["desired_mib"] == 128, f"{name}: {m}")
                wait_balloon(d, name, 128)
                ev = balance_events(d, name, 0)
                check(ev and ev[0]["reason"] == "idle" and ev[0]["old_target_mib"] == 256 and
                      ev[0]["new_target_mib"] == 128, f"{name}: idle event {ev[:1]}")
            rss0 = {n: rss_shmem_mib(d, n) for n in ("lo", "hi")}
            log(f"RssShmem before pressure: {rss0}")

            # Pressure: 48 MiB short. The low weight gives its cache.
            seq = d.events()[-1]["seq"]
            set_host(tmp, 256 - 48)
            m = wait_target(d, "lo", 80)
            check(m["squeezed"] and m["last_reason"] == "host-pressure", f"lo: {m}")
            wait_balloon(d, "lo", 256 - 80)
            out = d.wait_console("lo", "balloon 176 ")
            log("lo: " + out[out.rindex("memload: used"):].splitlines()[0])
            check(dm(d, "hi")["target_mib"] == 128, "hi keeps its 128 MiB")
            rss1 = {n: rss_shmem_mib(d, n) for n in ("lo", "hi")}
            log(f"RssShmem under pressure: {rss1}")
            check(rss0["lo"] - rss1["lo"] >= 40,
                  f"lo's worker gave memory back: {rss0['lo']:.1f} -> {rss1['lo']:.1f} MiB")
            check(abs(rss1["hi"] - rss0["hi"]) < 4,
                  f"hi's worker kept its memory: {rss0['hi']:.1f} -> {rss1['hi']:.1f} MiB")
            ev = balance_events(d, "lo", seq)
            check(any(e["reason"] == "host-pressure" and e["new_target_mib"] == 80 and
                      e["host_pressure"] for e in ev), f"lo's pressure event: {ev}")
            check(not balance_events(d, "hi", seq), "no event for hi")
            check(any(e["event"] == "memory-pressure" and e["detail"].startswith("on")
                      for e in d.events(since=seq)), "memory-pressure on")

            # Deeper: 96 short. lo stops at its minimum, hi gives the rest.
            set_host(tmp, 256 - 96)
            wait_target(d, "lo", 64)
            wait_target(d, "hi", 96)

            # Easing: room for 224. The high weight is whole again first.
            seq = d.events()[-1]["seq"]
            set_host(tmp, 224)
            wait_target(d, "hi", 128)
            wait_target(d, "lo", 96)
            ev_hi, ev_lo = balance_events(d, "hi", seq), balance_events(d, "lo", seq)
            check(ev_hi and ev_hi[0]["reason"] == "pressure-eased" and ev_lo and
                  ev_lo[0]["reason"] == "pressure-eased" and ev_hi[0]["seq"] < ev_lo[0]["seq"],
                  f"given back, hi first: {ev_hi} {ev_lo}")

            # The end of pressure: everyone has what it wants.
            set_host(tmp, 100000)
            wait_target(d, "lo", 128)
            check(any(e["event"] == "memory-pressure" and e["detail"].startswith("off")
                      for e in d.events(since=seq)), "memory-pressure off")

            # A live change: lo's minimum goes to 160; its target follows.
            r = d.request("PATCH", "/v1/vms/lo", {"dynamic_memory": {"minimum_mib": 160}})
            check(r.status == 200, f"live change of the minimum: {r.status} {r.body[:200]}")
            m = wait_target(d, "lo", 160)
            check(m["last_reason"] == "limits", f"lo after the change: {m}")
            r = d.request("PUT", "/v1/vms/lo/balloon", {"target_mib": 10})
            check(r.status == 409 and "dynamic memory" in r.body,
                  f"balloon by hand refused: {r.status}")

            ev = balance_events(d, "lo", 0) + balance_events(d, "hi", 0)
            check(ev and min(e["new_target_mib"] for e in ev) == 64,
                  f"no VM ever below its minimum of 64 MiB ({len(ev)} decisions)")
            text = d.get("/metrics").body
            check('cella_dynmem_target_bytes{vm="lo"} ' + str(160 << 20) in text and
                  'cella_dynmem_target_bytes{vm="hi"} ' + str(128 << 20) in text and
                  "cella_dynmem_host_pressure 0" in text and
                  'cella_dynmem_actual_bytes{vm="hi"}' in text, "Prometheus cella_dynmem_*")
            for name in ("lo", "hi"):
                r = d.post(f"/v1/vms/{name}/console", raw=b"check\n",
                           headers={"Content-Type": "application/octet-stream"})
                check(r.status in (200, 204), f"console input: {r.status} {r.body[:100]}")
                d.wait_console(name, "memload: check ok (64 MiB)")
            for name in ("lo", "hi"):
                d.action(name, "stop", {"timeout_s": 0}, expect=202)
    finally:
        os.unlink(tmp)


if __name__ == "__main__":
    main(test)
