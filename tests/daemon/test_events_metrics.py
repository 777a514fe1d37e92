"""test_events_metrics.py: the event stream a client follows sees the
lifecycle in order; per-VM metrics (JSON) and the Prometheus endpoint carry
state, uptime, vCPU time, exits by kind, memory, disk and NIC counters; the
console history is served by the API and the CLI."""

import json
import re
import threading

from cellad import Daemon, TestFailure, UnixHTTPConnection, check, log, main


def follow_events(d, out, ready, stop_after):
    c = UnixHTTPConnection(d.sock, timeout=60)
    c.request("GET", "/v1/events?vm=ev1")
    r = c.getresponse()
    ready.set()
    buf = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                ev = json.loads(line)
                out.append(ev)
                if ev["event"] == stop_after:
                    c.close()
                    return
    c.close()


def test(args):
    with Daemon(args) as d:
        events, ready = [], threading.Event()
        t = threading.Thread(target=follow_events, args=(d, events, ready, "deleted"),
                             daemon=True)
        t.start()
        ready.wait(10)
        d.define("ev1", "memwriter", "rounds=0 mib=4")
        d.action("ev1", "start")
        d.action("ev1", "pause")
        d.action("ev1", "resume")
        d.action("ev1", "stop", {"timeout_s": 0}, expect=202)
        d.wait_state("ev1", "stopped")
        r = d.request("PATCH", "/v1/vms/ev1", {"cpus": 2})
        d.request("DELETE", "/v1/vms/ev1")
        t.join(30)
        got = [e["event"] for e in events]
        want = ["defined", "starting", "started", "paused", "resumed", "stopping", "stopped",
                "changed", "deleted"]
        check(got == want, f"followed events in order: {got}")
        check(all(events[i]["seq"] < events[i + 1]["seq"] for i in range(len(events) - 1)),
              "sequence numbers increase")
        check(events[6]["state"] == "stopped" and "status 12" in events[6].get("detail", ""),
              "stopped event carries the exit")

        # Metrics.
        d.define("m1", "memwriter", "rounds=0 mib=8", cpus=2)
        d.action("m1", "start")
        d.wait_console("m1", "round 1")
        m = d.get("/v1/vms/m1/metrics").json
        for key in ("state", "uptime_ms", "vcpu_time_ns", "exits", "vcpus", "memory", "disk_io",
                    "nics", "restarts"):
            check(key in m, f"metrics has {key}")
        check(m["exits"]["io"] > 0 and len(m["vcpus"]) == 2, "exits counted, per vCPU")
        check(m["vcpu_time_ns"] > 0, "vCPU time measured")
        check(m["memory"]["VmRSS_kib"] > 0 and m["memory"]["guest_mib"] == 64,
              "worker memory and guest size")
        m2 = d.get("/v1/vms/m1/metrics").json
        check(m2["exits"]["io"] >= m["exits"]["io"] and m2["uptime_ms"] >= m["uptime_ms"],
              "counters only grow")
        text = d.get("/metrics")
        check(text.status == 200 and text.headers.get("Content-Type", "").startswith(
            "text/plain"), "Prometheus endpoint")
        body = text.body
        for pat in (r'^cella_vm_state\{vm="m1",state="running"\} 1$',
                    r'^cella_vm_exits_total\{vm="m1",kind="io"\} \d+$',
                    r'^cella_vm_vcpu_seconds_total\{vm="m1"\} [0-9.]+$',
                    r'^cella_vm_uptime_seconds\{vm="m1"\} [0-9.]+$',
                    r'^cella_vm_worker_resident_bytes\{vm="m1"\} \d+$',
                    r'^cella_vm_disk_read_bytes_total\{vm="m1"\} \d+$',
                    r'^cella_daemon_resident_bytes \d+$',
                    r'^cella_daemon_cpu_seconds_total [0-9.]+$'):
            check(re.search(pat, body, re.M), f"prometheus: {pat}")
        for line in body.splitlines():
            if line and not line.startswith("#") and not re.match(
                    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? -?[0-9.e+]+$', line):
                raise TestFailure(f"bad exposition line: {line!r}")
        log("ok: every exposition line is well formed")
        host = d.get("/v1/host").json
        check(host["states"].get("running") == 1 and host["daemon"]["resident_kib"] > 0,
              "host summary")

        # Console history through the CLI.
        p = d.cli("vm", "console", "m1", "--no-follow")
        check("memwriter: ready" in p.stdout, "cella vm console --no-follow prints the history")
        p = d.cli("--json", "vm", "metrics", "m1")
        check(json.loads(p.stdout)["name"] == "m1", "cella vm metrics --json")
        d.action("m1", "kill")


if __name__ == "__main__":
    main(test)
