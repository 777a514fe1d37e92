"""test_replica_rpo.py: a small run of bench/replica.py's measurement, for
what it checks rather than its figures. Two cellads in network namespaces
(test_move.py's setup); a VM writes 64 KiB random writes at 4 MB/s, each
4 KiB stamped (guest/tests/blkwriter.c), replicated every second. Then
every recovery point made in the window is read on the target: none holds a
torn or foreign unit, each holds at least every write the guest had
completed before the point before it was made, the newest point read
through its whole backing chain is intact; and the RPO figures come out
(at least one round, finite lags; their size is the bench's business, not
asserted). Then 4 KiB writes, plain (no compression), the same checks,
and the sets carry about what the guest wrote (4 KiB sets), not the
64 KiB tracking blocks around it.

Needs root (network namespaces), ip, openssl and qemu-img; skips loudly
otherwise."""
import argparse
import os
import sys

from cellad import TestFailure, check, log, main
import replutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bench"))
import replica as bench  # noqa: E402


def run(a, b, work, bs, comp):
    o = argparse.Namespace(interval=1.0, seconds=5.0, span_mib=16, failover_run=False)
    try:
        name, res = bench.one_run(a, b, work, 4.0, bs, comp, o)
    except SystemExit as e:
        raise TestFailure(f"bs={bs} {comp}: {e}")
    log(f"bs={bs} {comp}: {res['guest_mbs']:.2f} MB/s written, RPO worst "
        f"{res['rpo_max_ms']:.0f} ms, median {res['rpo_p50_ms']:.0f} ms over "
        f"{res['rounds_measured']} rounds; points' newest writes {res['newest_writes']}")
    check(res["rounds_measured"] >= 1 and res["rpo_max_ms"] > 0 and res["guest_mbs"] > 0,
          f"bs={bs} {comp}: every point holds what it must, {res['rounds_measured']} rounds "
          f"measured")
    check(res["newest_point_units"] > 0, f"bs={bs} {comp}: the newest point, read whole, "
          f"holds {res['newest_point_units']} intact stamped units and none torn")
    if bs == 4096:
        # 4 KiB sets (blk_fine.c): what is sent is what was written, not
        # the 64 KiB tracking blocks around it (16 times as much at most).
        check(res["changed_per_written"] < 1.5, f"bs={bs} {comp}: "
              f"{res['changed_per_written']:.2f} bytes changed per byte written")


def test(args):
    if "blkwriter" not in args["guests"]:
        raise TestFailure("no blkwriter guest given")

    def both(a, b, net, work):
        run(a, b, work, 65536, "zstd")
        run(a, b, work, 4096, "none")
    replutil.two_hosts(args, "rpo", both)


if __name__ == "__main__":
    main(test)
