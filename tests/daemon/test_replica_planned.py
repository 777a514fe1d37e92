"""test_replica_planned.py: planned failover and reverse replication
(docs/replica.md, "Planned failover and reverse replication"), with the two
cellads in network namespaces of test_replica.py.

The VM runs blkverify mode=seq resume=1 shutdown=1: it writes numbered
rounds into checksummed slots all the time; the host's graceful stop (a key
from the keyboard controller) makes it stop after a flushed batch, print
"shut down after round R" and power off; at every start it first checks that
every slot holds the last of rounds 1..M that wrote it, M the newest round
on the disk ("resumed at round M ... (0 bad)"), and goes on from M + 1.

- Refused: a planned failover of a VM that is not replicated (404); with
  the target unreachable (link cut): a clear error, the VM still runs here,
  replication goes on once the link is back; of a guest that ignores the
  graceful stop (blkverify without shutdown=1, --timeout 2): a clear error,
  nothing failed over, the VM runs on here (its stop cancelled: no reboot,
  test_replica_deaf.py) and replication goes on.
- `cella replica failover rv --planned` on a: the guest shuts down after
  round R, b runs the VM, whose guest finds exactly rounds 1..R on its disk
  (M == R, 0 bad): nothing lost.
- Reverse replication b -> a at once, without a copy: a's store for the disk
  has as its base the common point, a qcow2 layer over a's old image (no
  resynchronisation replaces it while points arrive); b's first sets are
  incrementals since that point. a's VM is the replica's definition now
  (marked; a plain start refused).
- Failback, planned, from b: a runs the VM again on its store, the guest
  finds exactly the rounds written on a and then on b; replication a -> b
  again, the b's old layer made a point of its store (no copy).
- An unplanned failover (to b) while a's VM still runs: `reverse` is refused
  until a's VM is off; then it reverses with a full resynchronisation and
  says so (warning, event).

Needs root (network namespaces), ip, openssl and qemu-img; skips loudly
otherwise."""

import json
import os
import re
import subprocess
import time

from cellad import TestFailure, check, log, main
import replutil
from replutil import store_points
from test_move import Follower
from test_replica import net_cut, replica, status, until

import test_export  # noqa: E402  (sys.path set by test_replica)

SIZE = 64 << 20
SEQ = "mode=seq resume=1 shutdown=1 batch=16 qd=8 " + test_export.SEQ


def flushed(d, name="rv"):
    rounds = re.findall(r"^flushed (\d+)", d.console(name, history=1 << 22), re.M)
    return int(rounds[-1]) if rounds else 0


def shut_round(follower):
    """The round after which the guest shut down, from its whole console
    (followed until the VM left the host: it became the replica)."""
    m = re.findall(rb"shut down after round (\d+)", follower.wait(120))
    return int(m[-1]) if m else None


def resumed(d, name="rv", after=0):
    """The newest resume line (the guest's check of its disk at start)."""
    pat = r"resumed at round (\d+): every slot holds its last write \((\d+) bad\)"

    def line():
        m = re.findall(pat, d.console(name, history=1 << 22))
        return m if len(m) > after else None
    m = until(f"{name}: the guest's check of its disk", line, 120)
    return int(m[-1][0]), int(m[-1][1])


def backing_of(path):
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                                     capture_output=True, text=True, check=True).stdout)
    return info.get("full-backing-filename") or info.get("backing-filename")


def check_layers(d):
    for p in store_points(d):
        subprocess.run(["qemu-img", "check", "-q", "-U", p["path"]], check=True)


def test(args):
    replutil.two_hosts(args, "rpl", scenario, both_ways=True)


def deaf_guest(a, b, work):
    """A guest that ignores the graceful stop: a clear error, nothing failed
    over, the VM runs again here and replication goes on."""
    img = os.path.join(work, "deaf.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(SIZE)], check=True)
    a.define("deaf", "blkverify", "mode=seq batch=16 qd=8 " + test_export.SEQ, memory_mib=64,
             disks=[{"path": img, "id": "data", "cbt": True}])
    a.action("deaf", "start")
    a.cli("replica", "enable", "deaf", "--to", "b", "--interval", "1s")
    until("a point of deaf on b", lambda: (lambda x: x if x and x["points"] else None)(
        replica(b, "deaf")))
    p = a.cli("replica", "failover", "deaf", "--planned", "--timeout", "2", expect=None)
    check(p.returncode != 0 and "did not shut down within 2 s" in p.stderr and
          "nothing was failed over" in p.stderr, f"a deaf guest: exit {p.returncode}: {p.stderr}")
    check(replica(b, "deaf")["state"] == "replicating", "b did not fail over")
    a.wait_state("deaf", "running", timeout=60)
    r0 = status(a, "deaf")["rounds"]
    until("deaf: replication goes on", lambda: (lambda s: s["state"] == "normal" and
                                                s["rounds"] > r0)(status(a, "deaf")), 90)
    a.cli("replica", "disable", "deaf")
    a.action("deaf", "kill")
    b.cli("replica", "delete", "deaf")


def scenario(a, b, net, work):
    img = os.path.join(work, "rv.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(SIZE)], check=True)
    a.define("rv", "blkverify", SEQ, memory_mib=128,
             disks=[{"path": img, "id": "data", "cbt": True}])
    # Refused: not replicated (and no such VM).
    r = a.post("/v1/vms/rv/replica/failover", {"planned": True})
    check(r.status == 404 and "not replicated" in r.body, f"planned, not replicated: {r}")
    r = a.post("/v1/vms/nope/replica/failover", {"planned": True})
    check(r.status == 404, f"planned, no such VM: {r}")
    r = a.post("/v1/vms/rv/replica/failover", {"planned": True, "bogus": 1})
    check(r.status == 400, f"an unknown field: {r}")
    deaf_guest(a, b, work)
    a.action("rv", "start")
    m0, bad0 = resumed(a)
    check(m0 == 0 and bad0 == 0, f"a fresh disk: resumed at {m0}, {bad0} bad")
    until("the guest flushes", lambda: flushed(a) >= 3)
    a.cli("replica", "enable", "rv", "--to", "b", "--interval", "1s", "--keep", "4")
    until("two points on b", lambda: (lambda x: x if x and len(x["points"]) >= 2
                                      else None)(replica(b)))

    # The target unreachable: a clear error, the VM runs on, nothing changed.
    net_cut(net, True)
    try:
        p = a.cli("replica", "failover", "rv", "--planned", "--reverse-to", "a", expect=None)
        check(p.returncode != 0 and "nothing was done" in p.stderr,
              f"planned failover, target unreachable: exit {p.returncode}: {p.stderr}")
        check(a.vm("rv")["state"] == "running", "the VM still runs on a")
    finally:
        net_cut(net, False)
    before = status(a)["rounds"]
    until("replication goes on", lambda: (lambda s: s["state"] == "normal" and
                                          s["rounds"] > before)(status(a)), 90)

    # Planned failover: nothing lost.
    until("more rounds", lambda: flushed(a) >= 20)
    fa = Follower(a, "rv")
    p = a.cli("--json", "replica", "failover", "rv", "--planned", "--reverse-to", "a")
    res = json.loads(p.stdout)
    log(f"planned failover: {res}")
    last = shut_round(fa)
    check(last is not None, "the guest shut down on the graceful stop")
    check(res["point"] and res["started"] and "error" not in (res.get("reverse") or {"error": 1}),
          f"failed over, started, reversed: {res}")
    # a's VM is the replica now (docs/replica.md, "The replica as a VM
    # definition"): still defined, marked, its start refused.
    va = a.vm("rv")
    check(va.get("replica") and va["state"] in ("stopped", "defined"),
          f"a's VM is the replica now (marked, off): {va}")
    r = a.post("/v1/vms/rv/start")
    check(r.status == 409 and "cella replica failover rv" in r.body,
          f"a's replica refuses a plain start: {r}")
    m, bad = resumed(b)
    log(f"b: resumed at round {m} ({bad} bad); a shut down after round {last}")
    check(bad == 0 and m == last, f"b's disk holds exactly rounds 1..{last}: resumed at {m}, "
          f"{bad} bad")
    check(any(e["event"] == "replica-planned-failover" for e in a.events(vm="rv")),
          "a: replica-planned-failover event")
    check(any(e["event"] == "replica-reversed" for e in a.events(vm="rv")),
          "a: replica-reversed event (no copy)")

    # Reverse replication b -> a, since the common point, without a copy.
    base = store_points(a)[0]
    check(base["name"] == res["point"] and os.path.realpath(backing_of(base["path"])) ==
          os.path.realpath(img), f"a's base is the common point over a's old image: {base}")
    first = until("a reverse round", lambda: (lambda s: s if s["rounds"] >= 1 and
                                              s["state"] == "normal" else None)(status(b)), 90)
    per_round = first["bytes_changed"] / first["rounds"]
    log(f"reverse: {first['rounds']} round(s) at first look: {first['bytes_changed']} bytes "
        f"changed, {first['bytes_sent']} sent, for a {SIZE}-byte disk")
    check(per_round < SIZE / 2, f"the first reverse sets are incremental: {per_round} bytes "
          f"changed a round, of {SIZE}")
    until("three reverse rounds", lambda: (lambda s: s["state"] == "normal" and
                                           s["rounds"] >= 3)(status(b)), 90)
    st = status(b)
    pts = store_points(a)
    log(f"reverse: {st['rounds']} rounds, {st['bytes_sent']} bytes sent, "
        f"{st['bytes_changed']} changed; a's points {[x['name'] for x in pts]}")
    check(pts[0]["name"] == res["point"] and pts[0]["path"] == base["path"] and
          os.path.realpath(backing_of(pts[0]["path"])) == os.path.realpath(img),
          f"no resynchronisation: a's base is still the common point: {pts[0]}")
    check(os.path.getsize(base["path"]) < (4 << 20), "the base layer holds no copy")
    check(len(pts) >= 2, f"points on a from b: {pts}")
    check(not any(e["event"] == "replica-reversed-full" for e in a.events(vm="rv")),
          "no full resynchronisation")
    check_layers(a)

    # Failback, planned, from b: the history goes on across both hosts.
    until("rounds on b", lambda: flushed(b) >= last + 20)
    fb = Follower(b, "rv")
    # a's VM is the same one again (its replica definition made ordinary):
    # its console still has the first run's lines; count those.
    seen_a = len(re.findall(r"resumed at round \d+:", a.console("rv", history=1 << 22)))
    p = b.cli("--json", "replica", "failover", "rv", "--planned", "--reverse-to", "b")
    res2 = json.loads(p.stdout)
    log(f"failback: {res2}")
    last2 = shut_round(fb)
    check(last2 is not None and last2 > last, f"b's guest shut down after round {last2}")
    check("error" not in (res2.get("reverse") or {"error": 1}), f"reversed again: {res2}")
    check("replica" not in a.vm("rv") and b.vm("rv").get("replica"),
          "failback: a's VM ordinary again, b's the replica")
    m2, bad2 = resumed(a, after=seen_a)
    check(bad2 == 0 and m2 == last2, f"a's disk holds exactly rounds 1..{last2}: resumed at "
          f"{m2}, {bad2} bad")
    names = [x["name"] for x in store_points(b)]
    check(res2["point"] in names, f"b's old layer is a point of its store: {names}")
    until("replication a -> b again", lambda: (lambda s: s["state"] == "normal" and
                                               s["rounds"] >= 2)(status(a)), 90)
    check(not any(e["event"] == "replica-reversed-full" for e in b.events(vm="rv")),
          "no full resynchronisation on b")
    check_layers(b)

    # Unplanned: b fails over while a's VM runs on; reverse waits for a's VM
    # to be off, then resynchronises from a full copy, and says so.
    b.cli("replica", "failover", "rv")
    b.wait_state("rv", "running", timeout=60)
    r = b.post("/v1/vms/rv/replica/reverse", {"to": "a"})
    check(r.status == 502 or r.status == 409, f"reverse while a's VM runs: {r}")
    check("runs here" in r.body, f"reverse while a's VM runs says why: {r.body}")
    a.action("rv", "kill")
    a.wait_state("rv", ("stopped", "crashed"), timeout=30)
    p = b.cli("replica", "reverse", "rv", "--to", "a", "--interval", "1s")
    log(p.stdout.strip())
    check("full copy" in p.stdout and "changed here after point" in p.stdout,
          f"cella replica reverse after an unplanned failover: a full copy, and why: {p.stdout}")
    rs = status(b)
    check(rs["to"] == "a" and rs["interval_ms"] == 1000, f"b replicates to a: {rs}")
    check(any(e["event"] == "replica-reversed-full" for e in a.events(vm="rv")),
          "a: replica-reversed-full event")
    until("a full copy on a", lambda: (lambda x: x if x and len(x["points"]) >= 1
                                       else None)(replica(a)), 90)
    full = until("the full round's figures", lambda: (lambda s: s if s["rounds"] >= 1 and
                                                      s["state"] == "normal" else None)(
        status(b)), 90)
    log(f"full resynchronisation: {full['bytes_changed']} bytes changed, {full['bytes_sent']} "
        f"sent in {full['rounds']} round(s)")
    check_layers(a)


if __name__ == "__main__":
    main(test)
