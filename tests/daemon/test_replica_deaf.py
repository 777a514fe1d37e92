"""test_replica_deaf.py: a planned failover whose guest ignores the graceful
stop (docs/replica.md, "Planned failover and reverse replication"), with the
two cellads in network namespaces of test_replica.py.

The guest is blkverify mode=seq resume=1 qd=1 without shutdown=1: it never
reads the keyboard controller, so the host's Ctrl-Alt-Del goes unanswered.
One write in flight at a time (qd=1), so the disk always holds rounds 1..M
exactly, whatever instant the VM is turned off.

- Without --force: POST .../replica/failover {planned, shutdown_timeout_s: 2}
  is refused (409) after the timeout, saying the failover is abandoned; the
  VM is running at once, with the same worker (pid) and the same boot (one
  "resumed" line on its console: no reboot); its events are stopping then
  stop-cancelled, never stopped or starting, and replica-planned-failover-
  abandoned; the guest goes on writing; b still replicates and new rounds
  arrive there.
- With --force --no-start --no-reverse: the guest is turned off after the
  timeout and the failover happens (answer forced: true); a's image and b's
  failed-over disk hold the same data (qemu-img compare: every block the
  guest wrote is on the replica); b's guest then starts and finds rounds
  1..M on its disk, 0 bad, M at least the last round a's guest flushed.

Needs root (network namespaces), ip, openssl and qemu-img; skips loudly
otherwise."""

import json
import os
import re
import subprocess

from cellad import check, log, main
import replutil
from test_replica import replica, status, until

import test_export  # noqa: E402  (sys.path set by test_replica)

SIZE = 64 << 20
DEAF = "mode=seq resume=1 batch=16 qd=1 " + test_export.SEQ
RESUMED = r"resumed at round (\d+): every slot holds its last write \((\d+) bad\)"


def flushed(d, name):
    rounds = re.findall(r"^flushed (\d+)", d.console(name, history=1 << 22), re.M)
    return int(rounds[-1]) if rounds else 0


def test(args):
    replutil.two_hosts(args, "rdf", scenario)


def scenario(a, b, net, work):
    img = os.path.join(work, "deaf.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(SIZE)], check=True)
    a.define("deaf", "blkverify", DEAF, disks=[{"path": img, "id": "data", "cbt": True}])
    a.action("deaf", "start")
    a.cli("replica", "enable", "deaf", "--to", "b", "--interval", "1s")
    until("a point of deaf on b", lambda: (lambda x: x if x and x["points"] else None)(
        replica(b, "deaf")))
    until("the guest writes", lambda: flushed(a, "deaf") > 0)

    # Without --force: abandoned, the VM untouched.
    before = a.vm("deaf")
    seq0 = max([e["seq"] for e in a.events()] or [0])
    r = a.post("/v1/vms/deaf/replica/failover", {"planned": True, "shutdown_timeout_s": 2},
               timeout=120)
    log(f"planned failover of a deaf guest: {r.status} {r.body}")
    check(r.status == 409 and "did not shut down within 2 s" in r.body and
          "abandoned" in r.body and "untouched" in r.body, f"a deaf guest: {r}")
    now = a.vm("deaf")
    check(now["state"] == "running" and now["pid"] == before["pid"] and
          now["uptime_ms"] > before["uptime_ms"],
          f"the VM runs on with the same worker: before {before}, after {now}")
    evs = [e["event"] for e in a.events(since=seq0, vm="deaf") if e["seq"] > seq0]
    log(f"events: {evs}")
    check("stopping" in evs and "stop-cancelled" in evs and
          evs.index("stopping") < evs.index("stop-cancelled"), f"stopping, stop-cancelled: {evs}")
    check("replica-planned-failover-abandoned" in evs, f"abandoned event: {evs}")
    check(not {"stopped", "starting", "started", "crashed"} & set(evs),
          f"no power-off and no start: {evs}")
    f0 = flushed(a, "deaf")
    until("the guest goes on writing", lambda: flushed(a, "deaf") > f0 + 2, 60)
    boots = re.findall(RESUMED, a.console("deaf", history=1 << 22))
    check(len(boots) == 1, f"one boot (no reboot): {boots}")
    check(replica(b, "deaf")["state"] == "replicating", "b did not fail over")
    r0 = status(a, "deaf")["rounds"]
    until("deaf: replication goes on", lambda: (lambda s: s["state"] == "normal" and
                                                s["rounds"] > r0)(status(a, "deaf")), 90)
    # The CLI says the same, and a second try behaves the same.
    p = a.cli("replica", "failover", "deaf", "--planned", "--shutdown-timeout", "1", expect=None)
    check(p.returncode != 0 and "abandoned" in p.stderr, f"cli: {p.returncode} {p.stderr}")
    check(a.vm("deaf")["state"] == "running", "still running after the CLI's try")

    # --force: turned off after the timeout, every block on the replica.
    p = a.cli("--json", "replica", "failover", "deaf", "--planned", "--shutdown-timeout", "2",
              "--force", "--no-start", "--no-reverse")
    log(f"forced planned failover: {p.stdout.strip()}")
    check(json.loads(p.stdout).get("forced") is True, f"forced: {p.stdout}")
    last = flushed(a, "deaf")
    fp = [x for x in replica(b, "deaf")["disks"][0]["points"]
          if x["name"] == json.loads(p.stdout)["point"]]
    check(fp and fp[0]["consistency"] == "crash",
          f"the forced last point is crash-consistent (turned off): {fp}")
    a.wait_state("deaf", ("stopped",), timeout=30)
    vm_b = b.vm("deaf")
    path_b = vm_b["disks"][0]["path"]
    c = subprocess.run(["qemu-img", "compare", "-U", img, path_b], capture_output=True,
                       text=True)
    check(c.returncode == 0, f"a's image and b's disk are identical: {c.stdout} {c.stderr}")
    log(f"qemu-img compare {img} {path_b}: {c.stdout.strip()}")
    b.action("deaf", "start")
    m = until("b's guest checks its disk", lambda: re.findall(
        RESUMED, b.console("deaf", history=1 << 22)), 120)
    rnd, bad = int(m[-1][0]), int(m[-1][1])
    log(f"b's guest resumed at round {rnd} ({bad} bad); a's last flushed round {last}")
    check(bad == 0 and rnd >= last, f"b: round {rnd}, {bad} bad; a flushed {last}")
    check(any(e["event"] == "replica-planned-failover" and "turned off" in e.get("detail", "")
              for e in a.events(vm="deaf")), "the failover event says it was forced")


if __name__ == "__main__":
    main(test)
