"""test_memory_move.py: live and quick moves (test_move.py's two hosts) of
VMs with memory backing options (docs/memory.md, "Save, restore and
moves"): a memwriter guest (it checks all of its memory every round) with
memory.merge and prealloc, then one with memory.hugepages, go A -> B live
and back B -> A quick; the rounds carry on intact, and the destination's
worker has the same backing (KSM-mergeable RAM; the hugetlb memfd). The
host's KSM run mode and nr_hugepages are put back at the end.

Needs root (network namespaces, huge pages), ip and openssl."""

import os
import shutil
import tempfile

from cellad import check, log, main, skip
from test_move import (ADDR, GUEST, PORT, Follower, Net, NsDaemon, check_contiguous,
                       console_bytes, make_certs, move_cli, wait_rounds)

NR_HUGE = "/proc/sys/vm/nr_hugepages"
KSM_RUN = "/sys/kernel/mm/ksm/run"


def smaps(d, name):
    with open(f"/proc/{d.vm(name)['pid']}/smaps") as f:
        return f.read()


def there_and_back(a, b, name, memory, backing_seen):
    a.define(name, "memwriter", cmdline=GUEST, memory=memory)
    a.action(name, "start")
    wait_rounds(a, name, 0, 3)
    check(backing_seen(smaps(a, name)), f"{name}: the source worker has the backing")
    f = Follower(a, name)
    res = move_cli(a, name, "--to", "b")
    log(f"{name}: live move {res['total_ms']} ms, downtime {res['downtime_ms']} ms")
    src = f.wait()
    check(b.vm(name)["memory"] == dict({"merge": False, "hugepages": False, "prealloc": False,
                                        "thp": False},
                                       **memory), f"{name}: the backing moved with the VM")
    wait_rounds(b, name, 0, 3)
    check_contiguous(src, console_bytes(b, name), f"{name} live")
    check(backing_seen(smaps(b, name)), f"{name}: the destination worker has the backing")
    f = Follower(b, name)
    res = move_cli(b, name, "--to", "a", "--quick")
    log(f"{name}: quick move {res['total_ms']} ms, downtime {res['downtime_ms']} ms")
    src = f.wait()
    wait_rounds(a, name, 0, 3)
    check_contiguous(src, console_bytes(a, name), f"{name} quick")
    check(backing_seen(smaps(a, name)), f"{name}: restored with the backing")
    a.action(name, "kill")


def test(args):
    for tool in ("ip", "openssl"):
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the two hosts, huge pages")
    certs = tempfile.mkdtemp(prefix="cella-mm-certs-")
    args["certs"] = certs
    net = Net()
    old_huge = open(NR_HUGE).read().strip()
    old_run = open(KSM_RUN).read().strip()  # cellad turns KSM on for "mg"
    try:
        make_certs(certs)
        net.up()
        with NsDaemon(args, "a", net.ns["a"], certs) as a, \
                NsDaemon(args, "b", net.ns["b"], certs) as b:
            a.cli("host", "add", "b", "--url", f"https://{ADDR['b']}:{PORT}", "--token-file",
                  f"{certs}/b.token")
            b.cli("host", "add", "a", "--url", f"https://{ADDR['a']}:{PORT}", "--token-file",
                  f"{certs}/a.token")
            there_and_back(a, b, "mg", {"merge": True, "prealloc": True},
                           lambda s: " mg" in s)
            with open(NR_HUGE, "w") as f:  # source and destination at once: 2 x 32
                f.write("72")
            there_and_back(a, b, "hp", {"hugepages": True},
                           lambda s: "cella-guest-ram-2m" in s)
    finally:
        with open(NR_HUGE, "w") as f:
            f.write(old_huge)
        if old_run == "0":
            for v in ("2", "0"):  # unmerge what was merged, then off as before
                with open(KSM_RUN, "w") as f:
                    f.write(v)
        net.down()
        shutil.rmtree(certs, ignore_errors=True)


if __name__ == "__main__":
    main(test)
