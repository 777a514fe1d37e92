#!/usr/bin/env python3
"""dynmem_overcommit.py: memory overcommit with dynamic memory, longer than
the suite's daemon-dynmem_overcommit (tests/daemon/test_dynmem_overcommit.py,
whose run() it calls): VMs whose memory adds up to --factor times the
host's RAM, memload working sets that fit, half of them growing to
--grow-mib; nothing may be OOM-killed. Prints the figures as a Markdown
table (host MemAvailable before and at the peak, the workers' RssShmem,
the time it took).

Usage: bench/dynmem_overcommit.py [--build DIR] [--factor F] [--vm-mib M]
                                  [--grow-mib G] [--count N]
"""
import argparse
import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
import test_dynmem_overcommit as oc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--factor", type=float, default=3.0)
    ap.add_argument("--vm-mib", type=int, default=oc.VM_MIB)
    ap.add_argument("--grow-mib", type=int, default=512)
    ap.add_argument("--count", type=int, default=None)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    args = {"cellad": os.path.join(b, "daemon", "cellad"), "cella": os.path.join(b, "cli", "cella"),
            "cella_vm": os.path.join(b, "cella-vm"),
            "guests": {"memload": os.path.join(b, "guest", "memload.elf")}}
    r = oc.run(args, count=a.count, vm_mib=a.vm_mib, factor=a.factor, grow_mib=a.grow_mib)
    print(f"\n## Overcommit with dynamic memory ({r['vms']} x {r['vm_mib']} MiB on a "
          f"{r['host_mib']} MiB host)\n")
    print("| what | figure |\n|---|---|")
    print(f"| guest memory / host RAM | {r['vms'] * r['vm_mib']} / {r['host_mib']} MiB |")
    print(f"| host MemAvailable before / at the peak | {r['available_before_mib']} / "
          f"{r['available_peak_mib']} MiB |")
    print(f"| workers' RssShmem at the peak | {r['workers_rss_shmem_mib']} MiB |")
    print(f"| start to all checked and stopped | {r['seconds']} s |")


if __name__ == "__main__":
    main()
