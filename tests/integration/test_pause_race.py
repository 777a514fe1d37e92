#!/usr/bin/env python3
"""it-pause-race: a pause that must not miss the vCPU (vmm/core/vcpu.c,
vcpu_pause_point). The guest is blkverify mode=seq: while it waits for a
write's completion it polls the used ring in ring 3 and makes no exit to
the VMM, so only the pause's kick (immediate_exit and a signal) brings its
vCPU out of KVM_RUN. A kick that landed between the pause point's unlock and
its clearing of immediate_exit used to be undone: the vCPU ran on, the pause
(on the I/O loop) waited for it, and the guest waited for a completion that
loop owed it: the worker and the guest stuck for good (under replication,
every round's disk-export-group pauses the VM; seen as a guest that stops
writing and a worker that no longer answers).

- CELLA_TEST_VCPU_PAUSE_GAP_US=300 (a sleep right after each pause point,
  which widened the old window: the old code hung within a few cycles):
  pause/resume cycles for 6 s, every pause answered within 10 s, the
  guest still writing after;
- the same without the gap for 6 s (the old code hung after 20 000 to
  400 000 cycles here, seconds to a minute)."""
import os
import queue
import re
import tempfile
import time

import blkutil
import harness
from test_export import SEQ

CYCLE_S = 6


def flushed_after(g, n, timeout=60):
    """The guest's rounds go on: the lines printed so far read, then a
    "flushed" line n rounds past the newest of them."""
    newest = 0
    while True:
        try:
            line = g._q.get_nowait()
        except queue.Empty:
            break
        if line is None:
            raise harness.TestFailure("the guest's console closed")
        m = re.match(r"flushed (\d+)", line)
        newest = int(m.group(1)) if m else newest
    while True:
        r = int(g.wait_for(r"^flushed (\d+)", timeout=timeout).group(1))
        if r >= newest + n:
            return r


def cycles(ctl, secs):
    n, worst = 0, 0.0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        t = time.monotonic()
        rep = blkutil.control(ctl, {"cmd": "pause"}, timeout=10)
        worst = max(worst, time.monotonic() - t)
        if not rep.get("ok") or rep.get("state") != "paused":
            raise harness.TestFailure(f"pause: {rep}")
        rep = blkutil.control(ctl, {"cmd": "resume"}, timeout=10)
        if not rep.get("ok"):
            raise harness.TestFailure(f"resume: {rep}")
        n += 1
    return n, worst


def test(args):
    for gap in ("300", ""):
        with tempfile.TemporaryDirectory(prefix="cella-it-pause-") as tmp:
            img = os.path.join(tmp, "data.raw")
            with open(img, "wb") as f:
                f.truncate(64 << 20)
            ctl = os.path.join(tmp, "ctl.sock")
            if gap:
                os.environ["CELLA_TEST_VCPU_PAUSE_GAP_US"] = gap
            else:
                os.environ.pop("CELLA_TEST_VCPU_PAUSE_GAP_US", None)
            g = harness.run_guest(args["guests"]["blkverify"], "mode=seq batch=16 qd=8 " + SEQ,
                                  name="pause", cella_vm=args["cella_vm"],
                                  disks=[img + ",id=data"], extra=["--control", ctl],
                                  wrapper=blkutil.MERGE_STDERR)
            with g:
                flushed_after(g, 16)
                try:
                    n, worst = cycles(ctl, CYCLE_S)
                except OSError as e:
                    raise harness.TestFailure(f"gap {gap or 0} us: a pause got no answer "
                                              f"({e}): the vCPU missed it")
                harness.log(f"gap {gap or 0} us: {n} pause/resume cycles in {CYCLE_S} s, "
                            f"slowest pause {worst * 1e3:.1f} ms")
                flushed_after(g, 64)  # the guest goes on writing
    os.environ.pop("CELLA_TEST_VCPU_PAUSE_GAP_US", None)
    print("PASS pause-race")


if __name__ == "__main__":
    harness.main(test)
