"""test_replica_ops.py: operating replication (docs/replica.md, "Operating
replication") between two cellads in network namespaces (test_replica.py's
setup). VMs run blkverify mode=seq on their first disk.

- Durations: --interval and --keep-for refuse what is not a duration of at
  least 1 s (usage errors, nothing sent); --consistent-every 0 is refused.
- A two-disk VM replicated every second with --keep-for 5s and
  --consistent-every 3: `cella replica points` on the target lists each point
  with its cut time (from the source), size and consistency, every third
  flushed; retention by age keeps no point older than the age (plus a round),
  the latest always; /metrics on the source has the replication series with
  the VM label and health normal.
- Pause: status paused, replica-paused event, nothing shipped (the lag grows
  until the health turns warning: a replica-health event, the points on the
  target unchanged); pausing twice is refused; a restarted source cellad is
  still paused at the same point; resume: replica-resumed, new points on
  from the last one (no full copy on either side), health back to normal.
- A target whose storage fills up (its replica directory on a small tmpfs,
  then filled): the source's status says paused, "target storage full", with
  a replica-paused event, the target's points stay as they were, whole
  (qemu-img check), no half-written set or layer; room again (the filler
  removed): replication resumes by itself (replica-resumed), new points.

Needs root (network namespaces, mount), ip, openssl and qemu-img; skips
loudly otherwise."""

import errno
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from cellad import TestFailure, check, log, main, skip
from replutil import until
from test_move import ADDR, PORT, Net, NsDaemon, make_certs

SMALL = 16 << 20
# blkverify over the first 8 MiB: slots of 32 KiB.
SEQ = "mode=seq batch=16 qd=8 seed=7 slots=256 stride=32768"


def status(a, name):
    r = a.get(f"/v1/vms/{name}/replica")
    if r.status != 200:
        raise TestFailure(f"replica status: {r}")
    return r.json


def replica(b, name):
    r = b.get(f"/v1/replicas/{name}")
    return r.json if r.status == 200 else None


def points(b, name):
    rep = replica(b, name)
    return rep["points"] if rep else []


def flushed(a, name):
    rounds = re.findall(r"^flushed (\d+)", a.console(name, history=1 << 22), re.M)
    return int(rounds[-1]) if rounds else 0


def events(d, name, kind):
    return [e for e in d.events(vm=name) if e["event"] == kind]


def layers(b, name):
    """Every file of every disk store of the replica."""
    root = os.path.join(b.state, "replicas", name)
    out = []
    for d in sorted(os.listdir(root)):
        if d.startswith("disk-") and os.path.isdir(os.path.join(root, d)):
            out += [os.path.join(root, d, f) for f in sorted(os.listdir(os.path.join(root, d)))]
    return out


def qemu_check(b, name):
    for f in layers(b, name):
        if f.endswith(".qcow2"):
            subprocess.run(["qemu-img", "check", "-q", f], check=True)


def image(work, name):
    img = os.path.join(work, name)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(SMALL)], check=True)
    return img


def test(args):
    for tool in ("ip", "openssl", "qemu-img", "mount"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the two hosts, a tmpfs for a full target")
    certs = tempfile.mkdtemp(prefix="cella-repops-certs-")
    work = tempfile.mkdtemp(prefix="cella-repops-")
    net = Net()
    mounts = []
    try:
        make_certs(certs)
        net.up()
        a = NsDaemon(args, "a", net.ns["a"], certs)
        b = NsDaemon(args, "b", net.ns["b"], certs)
        # b's replica of rf on a small tmpfs, mounted before b starts: b's
        # mount namespace (ip netns exec) is a copy of this one.
        full_root = os.path.join(b.state, "replicas", "rf")
        os.makedirs(full_root)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "cella-repops",
                        full_root], check=True)
        mounts.append(full_root)
        with a, b:
            a.cli("host", "add", "b", "--url", f"https://{ADDR['b']}:{PORT}", "--token-file",
                  f"{certs}/b.token")
            durations(a, work)
            operations(args, a, b, work)
            target_full(a, b, work)
    finally:
        for m in mounts:
            subprocess.run(["umount", "-l", m], check=False)
        net.down()
        shutil.rmtree(certs, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def durations(a, work):
    a.define("rd", "blkverify", SEQ, memory_mib=64,
             disks=[{"path": image(work, "rd.qcow2"), "id": "data", "cbt": True}])
    for bad in (["--interval", "0.5s"], ["--interval", "5x"], ["--interval", "-5s"],
                ["--interval", "25h"], ["--keep-for", "0"], ["--keep-for", "abc"],
                ["--keep-for", "10"], ["--consistent-every", "0"],
                ["--consistent-every", "x"]):
        p = a.cli("replica", "enable", "rd", "--to", "b", *bad, expect=2)
        check(bad[0] in p.stderr, f"{bad}: a clear error naming the option: {p.stderr!r}")
    r = a.post("/v1/vms/rd/replica", {"to": "b", "keep_for_s": -1})
    check(r.status == 400 and r.json["error"]["field"] == "keep_for_s", f"keep_for_s -1: {r}")
    r = a.post("/v1/vms/rd/replica", {"to": "b", "consistent_every": "x"})
    check(r.status == 400, f"consistent_every 'x': {r}")
    check(a.get("/v1/vms/rd/replica").status == 404, "nothing enabled by refused requests")
    a.request("DELETE", "/v1/vms/rd")


def operations(args, a, b, work):
    name = "ro"
    a.define(name, "blkverify", SEQ, memory_mib=64,
             disks=[{"path": image(work, "ro.qcow2"), "id": "data", "cbt": True},
                    {"path": image(work, "ro-logs.qcow2"), "id": "logs", "cbt": True}])
    a.action(name, "start")
    until("the guest flushes", lambda: flushed(a, name) >= 2)
    t0 = time.time() * 1000
    a.cli("replica", "enable", name, "--to", "b", "--interval", "1s", "--keep-for", "5s",
          "--consistent-every", "3")
    st = status(a, name)
    check(st["keep_for_s"] == 5 and st["consistent_every"] == 3 and st["keep"] == 1000,
          f"settings: {st}")

    # Points with their cut time and consistency; retention by age.
    until("ten rounds", lambda: status(a, name)["rounds"] >= 10, 90)
    rep = until("points on b", lambda: replica(b, name))
    check(rep.get("keep_for_s") == 5, f"b keeps by age: {rep.get('keep_for_s')}")
    now = time.time() * 1000
    infos = {}
    for d in rep["disks"]:
        for p in d["points"]:
            infos.setdefault(p["name"], p)
            check(t0 - 1000 <= p["cut_at"] <= now + 1000,
                  f"point {p['name']}'s cut time from the source: {p['cut_at']} ({t0}..{now})")
    cons = {n: infos[n]["consistency"] for n in rep["points"]}
    st = status(a, name)
    check(st["flushed_points"] >= 2, f"every third point flushed: {st}")
    check(st["disks_cut_together"] is True and "cut in turn" not in a.log(),
          f"both disks cut at one instant (disk-export-group): {st}")
    check(all(c in ("flushed", "crash") for c in cons.values()), f"consistency: {cons}")
    oldest = min(infos[n]["cut_at"] for n in rep["points"])
    # The oldest may wait for the next upload to merge (a round, and its time).
    check(oldest >= now - 5000 - 4000 and 1 <= len(rep["points"]) <= 10,
          f"retention by age (5 s): points {rep['points']}, oldest cut {now - oldest:.0f} ms ago")
    out = b.cli("replica", "points", name).stdout
    log(out.rstrip())
    check("CUT (UTC)" in out and "crash-consistent" in out,
          f"cella replica points: a table of points: {out!r}")
    until("a flushed point listed", lambda: "flushed" in b.cli("replica", "points", name).stdout,
          30)
    js = json.loads(b.cli("--json", "replica", "points", name).stdout)
    check(js["points"] and all("cut_at" in p and "consistency" in p
                               for d in js["disks"] for p in d["points"]),
          "points --json: cut_at and consistency")

    # Metrics with the VM label.
    m = a.request("GET", "/metrics").body
    for series in ("cella_replica_lag_seconds", "cella_replica_bytes_sent_total",
                   "cella_replica_bytes_changed_total", "cella_replica_rounds_total",
                   "cella_replica_failures_total", "cella_replica_last_point_timestamp_seconds"):
        check(re.search(rf'^{series}{{vm="{name}"}} [0-9.]+$', m, re.M),
              f"/metrics has {series} for {name}")
    check(re.search(rf'^cella_replica_health{{vm="{name}",health="normal"}} 1$', m, re.M),
          "/metrics: health normal")
    sent = float(re.search(rf'^cella_replica_bytes_sent_total{{vm="{name}"}} ([0-9.]+)$', m,
                           re.M).group(1))
    check(sent > 0, f"bytes sent: {sent}")

    # Pause: nothing ships, the lag grows (health warning), settings stay.
    out = a.cli("replica", "pause", name).stdout
    log(out.strip())
    st = until("paused", lambda: (lambda s: s if s["state"] == "paused" else None)(
        status(a, name)))
    check(st["paused"] and "operator" in st["paused_reason"], f"paused status: {st}")
    a.cli("replica", "pause", name, expect=5)
    check(events(a, name, "replica-paused"), "a: replica-paused event")
    # (A round in flight when the pause came may still end: counted from
    # the warning on, when the last cut is two intervals old.)
    until("a replica-health event to warning while paused",
          lambda: any("-> warning" in e.get("detail", "")
                      for e in events(a, name, "replica-health")), 30)
    st = status(a, name)
    rounds, last = st["rounds"], st["last_point"]
    until("health critical while paused", lambda: status(a, name)["health"] == "critical", 30)
    st = status(a, name)
    check(st["rounds"] == rounds and st["last_point"] == last and points(b, name)[-1] == last,
          f"nothing shipped while paused: {st['rounds']} rounds (were {rounds}), b's latest "
          f"{points(b, name)[-1]}, last {last}")
    m = a.request("GET", "/metrics").body
    check(re.search(rf'^cella_replica_paused{{vm="{name}"}} 1', m, re.M), "/metrics: paused 1")

    # A restarted source cellad stays paused at the same point.
    real = args["cellad"]
    a.stop()
    a.args = dict(a.args, cellad=real)  # NsDaemon.start wraps it again
    a.start()
    st = status(a, name)
    check(st["state"] == "paused" and st["paused"] and st["last_point"] == last and
          st["keep_for_s"] == 5 and st["consistent_every"] == 3,
          f"after a restart: still paused at {last}: {st}")
    check(a.vm(name)["state"] == "running", "the VM ran on")

    # Resume: on from the last point, incrementally.
    a.cli("replica", "resume", name)
    check(events(a, name, "replica-resumed"), "a: replica-resumed event")
    a.cli("replica", "resume", name, expect=5)
    until("points after the resume", lambda: (lambda s: s if s["state"] == "normal" and
          s["last_point"] != last else None)(status(a, name)), 60)
    until("b has them", lambda: points(b, name) and points(b, name)[-1] != last, 30)
    until("health normal again", lambda: status(a, name)["health"] == "normal", 30)
    until("a replica-health event back to normal",
          lambda: any("-> normal" in e.get("detail", "")
                      for e in events(a, name, "replica-health")), 30)
    check("sending a full copy" not in a.log() and "resynchronised" not in b.log(),
          "no full copy after the resume")
    qemu_check(b, name)
    a.cli("replica", "disable", name)
    a.action(name, "kill")


def fill(path):
    """Write path until the file system is full (unbuffered: 1 MiB, then 4 KiB
    writes until ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096):
            chunk = b"\xa5" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def target_full(a, b, work):
    name = "rf"
    root = os.path.join(b.state, "replicas", name)  # a tmpfs of 48 MiB (test())
    a.define(name, "blkverify", SEQ, memory_mib=64,
             disks=[{"path": image(work, "rf.qcow2"), "id": "data", "cbt": True}])
    a.action(name, "start")
    until("the guest flushes", lambda: flushed(a, name) >= 2)
    a.cli("replica", "enable", name, "--to", "b", "--interval", "1s", "--keep", "3")
    until("two points on b", lambda: len(points(b, name)) >= 2, 60)
    filler = os.path.join(root, "filler")
    fill(filler)
    log(f"b's replica storage filled: {shutil.disk_usage(root)}")
    st = until("paused: target storage full", lambda: (lambda s: s if s["state"] == "paused" and
               "target storage full" in (s.get("error") or "") else None)(status(a, name)), 60)
    log(f"a: {st['state']}: {st['error']}")
    check(st["paused"] and st["paused_reason"] == "target storage full", f"status: {st}")
    check(any(e.get("detail") == "target storage full" for e in events(a, name, "replica-paused")),
          "a: replica-paused event (target storage full)")
    held = points(b, name)
    f0 = status(a, name)["failures"]
    until("more rounds refused", lambda: status(a, name)["failures"] >= f0 + 2, 60)
    check(points(b, name) == held, f"no point while full: {points(b, name)} (had {held})")

    def partial():
        return [f for f in layers(b, name) if ".tmp" in os.path.basename(f)] + \
            [f for f in os.listdir(root) if f.endswith(".set")]
    # A refused upload's set goes at once (each retry makes one for a while).
    until("no half-written set or layer between the retries", lambda: not partial(), 30)
    qemu_check(b, name)

    os.unlink(filler)
    st = until("resumed by itself", lambda: (lambda s: s if s["state"] == "normal" else None)(
        status(a, name)), 60)
    check(not st["paused"], f"not paused: {st}")
    check(any(e.get("detail", "").startswith("target storage has room")
              for e in events(a, name, "replica-resumed")), "a: replica-resumed event")
    until("new points on b", lambda: points(b, name) and points(b, name)[-1] not in held, 30)
    qemu_check(b, name)
    a.cli("replica", "disable", name)
    a.action(name, "kill")


if __name__ == "__main__":
    main(test)
