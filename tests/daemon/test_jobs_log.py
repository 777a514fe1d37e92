"""test_jobs_log.py: what the web console shows while it waits.

Jobs: a checkpoint delete (its layer merged into its child's) announces its
phases on the event stream in order (begun, merging, layer-merged at 100 %,
ended), each a job-phase event with the job's id, and GET /v1/jobs then
lists it finished with its last phase. A save whose worker is held
(SIGSTOP) is listed running in phase "saving" by GET /v1/jobs, and filtered
by ?vm=. Starts and stops announce no job phases (they have their events).
GET /v1/host's usage sums the running worker's figures.

Worker log: GET /v1/vms/{name}/log gives the last lines of the VM's
cella-vm log (what the worker printed when it started), ?tail=N the last N
with truncated set; a log past 256 KiB is read from its end only, bytes
that are not UTF-8 come back as U+FFFD; a VM that never ran has an empty
log; an unknown VM is 404, tail=0 400."""

import json
import os
import signal
import threading
import time

from cellad import Daemon, TestFailure, check, log, main


def phases(d, job_id):
    return [(e["phase"], e.get("percent")) for e in d.events(since=0)
            if e["event"] == "job-phase" and e.get("job") == job_id]


def jobs(d, q=""):
    r = d.get("/v1/jobs" + q)
    check(r.status == 200, f"GET /v1/jobs{q}: {r.status}")
    return r.json["jobs"]


def checkpoint_part(d, tmp):
    base = os.path.join(tmp, "base.img")
    with open(base, "wb") as f:
        f.truncate(8 << 20)
    d.define("c", "hello", disks=[{"path": base, "id": "d0"}])
    for cp in ("cp1", "cp2", "cp3"):
        r = d.post("/v1/vms/c/checkpoints", {"name": cp, "kind": "production"})
        check(r.status in (200, 201), f"checkpoint {cp}: {r}")
    # cp1's layer is the base image (the caller's file: kept); cp2's is an
    # overlay cellad made, merged into cp3's when cp2 goes.
    r = d.request("DELETE", "/v1/vms/c/checkpoints/cp2")
    check(r.status in (200, 204), f"delete cp2 (merged into cp3): {r}")
    evs = [e for e in d.events(since=0) if e["event"] == "job-phase" and e.get("kind") ==
           "checkpoint-delete"]
    check(evs, "the checkpoint delete announced job-phase events")
    jid = evs[0]["job"]
    got = phases(d, jid)
    log(f"checkpoint-delete phases: {got}")
    check([p for p, _ in got] == ["begun", "merging", "layer-merged", "ended"],
          f"phases in order: {got}")
    check(dict(got)["layer-merged"] == 100, f"layer-merged at 100 %: {got}")
    check(all(e["vm"] == "c" and e["detail"].startswith("checkpoint-delete: ") for e in evs),
          f"each names the VM and says the phase: {evs}")
    seqs = [e["seq"] for e in d.events(since=0)]
    deleted = [e["seq"] for e in d.events(since=0) if e["event"] == "checkpoint-deleted"]
    check(deleted and evs[0]["seq"] < deleted[0] < evs[-1]["seq"],
          "checkpoint-deleted comes inside the job's phases")
    check(seqs == sorted(seqs), "sequence numbers increase")
    done = [j for j in jobs(d) if j["id"] == jid]
    check(len(done) == 1 and not done[0]["running"] and done[0]["phase"] == "layer-merged" and
          done[0]["kind"] == "checkpoint-delete" and done[0]["vm"] == "c" and
          done[0]["percent"] == 100 and
          done[0]["ended_at"] >= done[0]["started_at"], f"GET /v1/jobs lists it finished: {done}")
    # Each create was a job too, listed after the delete (newest first).
    kinds = [j["kind"] for j in jobs(d, "?vm=c")]
    check(kinds[:4] == ["checkpoint-delete"] + ["checkpoint-create"] * 3,
          f"newest first: {kinds}")
    check(jobs(d, "?vm=nobody") == [], "?vm= filters")


def save_part(d):
    d.define("s", "memwriter", cmdline="mib=4 rounds=0 pause_ms=50")
    d.action("s", "start")
    check(not [e for e in d.events(vm="s") if e["event"] == "job-phase"],
          "a start announces no job phases")
    pid = d.vm("s")["pid"]
    # GET /v1/host sums what the workers use (the dashboard's one request).
    deadline = time.monotonic() + 60
    while True:
        u = d.get("/v1/host").json["usage"]
        if u["cpu_ns"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling the API with a deadline (CPU time counts in ticks)
    check(u["running"] == 1 and u["rss_bytes"] > 1 << 20 and u["cpu_ns"] > 0 and
          u["read_bytes"] >= 0 and u["rx_bytes"] == 0, f"host usage of the running VM: {u}")
    result = {}

    def save():
        result["r"] = d.post("/v1/vms/s/save", timeout=120)

    os.kill(pid, signal.SIGSTOP)
    t = threading.Thread(target=save)
    t.start()
    try:
        deadline = time.monotonic() + 60
        running = []
        while not running:
            running = [j for j in jobs(d, "?vm=s") if j["running"] and j["kind"] == "save" and
                       j["phase"] == "saving"]
            if time.monotonic() > deadline:
                raise TestFailure(f"no running save in GET /v1/jobs: {jobs(d)}")
            time.sleep(0.02)  # polling the API with a deadline
        log(f"running: {running}")
        check(running[0]["vm"] == "s" and "percent" not in running[0] and
              "ended_at" not in running[0], f"a running save, no percent: {running}")
    finally:
        os.kill(pid, signal.SIGCONT)
        t.join(120)
    check(result["r"].status == 200 and d.vm("s")["state"] == "saved", f"saved: {result['r']}")
    got = phases(d, running[0]["id"])
    check([p for p, _ in got] == ["begun", "saving", "saved", "ended"], f"save phases: {got}")
    check(not [j for j in jobs(d, "?vm=s") if j["running"]], "nothing running afterwards")
    r = d.request("DELETE", "/v1/vms/s/state")
    check(r.status in (200, 204), f"delete-state: {r}")


def log_part(d):
    d.define("l", "echo")
    r = d.get("/v1/vms/l/log")
    check(r.status == 200 and r.json == {"name": "l", "size": 0, "truncated": False, "lines": []},
          f"never ran: an empty log: {r}")
    d.action("l", "start")
    d.wait_console("l", "echo: ready")
    d.action("l", "kill")
    r = d.get("/v1/vms/l/log")
    check(r.status == 200 and r.json["lines"] and r.json["size"] > 0,
          f"the worker's lines: {r.json}")
    path = os.path.join(d.state, "logs", "l.log")
    with open(path, "rb") as f:
        want = f.read().decode("utf-8", "replace").rstrip("\n").split("\n")
    check(r.json["lines"] == want[-200:], f"as in the file: {r.json['lines']} vs {want}")
    r = d.get("/v1/vms/l/log?tail=1")
    check(r.json["lines"] == want[-1:] and r.json["truncated"] == (len(want) > 1),
          f"tail=1: {r.json}")
    # A long log with bytes that are not UTF-8: read from its end only.
    with open(path, "ab") as f:
        for i in range(40000):
            f.write(b"filler line %s %05d\n" % (b"." * 80, i))
        f.write(b"bad \xff\xfe bytes \xc3( and \xe2\x82\xac euro\n")
        f.write(b"last line\n")
    size = os.path.getsize(path)
    r = d.get("/v1/vms/l/log?tail=5000")
    check(r.status == 200 and r.json["size"] == size and r.json["truncated"],
          f"size {size}, truncated: {r.json['size']} {r.json['truncated']}")
    lines = r.json["lines"]
    check(lines[-1] == "last line" and lines[-2] == "bad \ufffd\ufffd bytes \ufffd( and \u20ac euro",
          f"the end, invalid bytes replaced: {lines[-2:]}")
    check(sum(len(x) + 1 for x in lines) <= 256 << 10 and lines[0].startswith("filler line ") and
          len(lines) < 5000, f"only the last 256 KiB, whole lines: {len(lines)}, {lines[0]!r}")
    nums = [int(x.split()[-1]) for x in lines[:-2]]
    check(nums == list(range(nums[0], 40000)), "contiguous up to the end")
    check(d.get("/v1/vms/nope/log").status == 404, "unknown VM: 404")
    for q in ("tail=0", "tail=5001", "tail=x", "other=1"):
        r = d.get(f"/v1/vms/l/log?{q}")
        check(r.status == 400, f"{q}: 400 ({r.status})")
    check(json.loads(d.get("/v1/vms/l/log?tail=3").body)["lines"][-1] == "last line", "tail=3")


def test(args):
    with Daemon(args) as d:
        checkpoint_part(d, d.dir)
        save_part(d)
        log_part(d)


if __name__ == "__main__":
    main(test)
