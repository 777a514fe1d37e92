#!/usr/bin/env python3
"""net.py: virtio-net guest -> host throughput and packet rate, cella-vm
against QEMU's user-space virtio-net (-netdev tap,vhost=off), the same test
guest (guest/tests/netperf.c, its loop in ring 3) on the same kind of tap,
and the host's own veth as the ceiling.

Cases, guest -> host: 1500-byte frames (1514 on the wire, partial checksum
offload), 64 KiB TCP segments handed over whole with TSO
(VIRTIO_NET_F_HOST_TSO4), and 60-byte frames (packet rate); host -> guest
("rx"): 1514- and 60-byte frames from an AF_PACKET socket on the tap
(bench/netsend.c, sendmmsg straight to the tap's queue; --sender python is
the earlier Python loop, which cost more per frame than either VMM's
receive path and so set the rate), counted by the guest; "offered" is what
reached the tap (delivered plus dropped on its full queue). Each run is a fresh VM in a fresh network
namespace with one tap, up, nobody listening: the host drops the frames in
its IP layer (another host's MAC), so what is measured is the VMM's path
from the guest's ring into the host kernel. Rounds alternate cella and QEMU
so that a loaded host hurts both alike; the median of the rounds is shown.

cella-thp: cella-vm with "memory": {"thp": true}, anonymous RAM in
transparent huge pages, as QEMU's RAM is; the default memfd RAM cannot have
them on a host whose /sys/kernel/mm/transparent_hugepage/shmem_enabled is
"never" (this one). The host copies every transmitted frame out of guest
RAM, and from 4 KiB pages that copy costs about 30 % more per byte here.
(--vmm cella-anon: the "merge" backing, anonymous 4 KiB pages.)

CPU per gigabit: CPU seconds of the VMM's threads other than the vCPU (the
guest polls its ring, so the vCPU is always busy) per gigabit moved.

The guest keeps the whole ring full, whatever size each VMM offers (as
Linux's driver does): cella-vm offers 1024 entries, QEMU 256 (its tap back
end takes no larger tx ring).

--baseline CELLA_VM also runs another build's cella-vm as cella-base (same
guest), so before/after figures come from the same rounds; --nice N runs
every VMM and the rx sender at that nice value; the per-round column is
each round's VMM against the QEMU run next to it (lowest-highest), which
shows the spread a loaded host gives.

Needs root (network namespaces), qemu-system-x86_64 and a build with the
guest programs. Usage: bench/net.py [--rounds N] [--secs N] [--build DIR]
[--baseline CELLA_VM] [--nice N] [--case NAME]... [--vmm VMM]...
[--sender c|python]
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import common
import harness

VMMS = ("cella", "cella-thp", "qemu")
MORE_VMMS = ("cella-anon",)
CASES = [("1500 B", 1514, "tx"), ("64 KiB TSO", 65549, "tx"), ("60 B", 60, "tx"),
         ("1500 B rx", 1514, "rx"), ("60 B rx", 60, "rx")]
RESULT = re.compile(r"^netperf: (?:tx|rx) frames=(\d+) bytes=(\d+) ms=(\d+)$")
# Host -> guest: frames to the guest's MAC from an AF_PACKET socket on the
# tap, as fast as Python sends them (argv: tap, mac, size, seconds).
SENDER = r"""
import socket, sys, time
tap, mac, size, secs = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((tap, 0))
f = mac + b'\x02\x00\x00\x00\x00\x09\x88\xb5' + bytes(size - 14)
end, n = time.monotonic() + secs, 0
while time.monotonic() < end:
    for _ in range(64):
        try:
            s.send(f)
            n += 1
        except OSError:
            pass
print(n, flush=True)
"""
TICK = os.sysconf("SC_CLK_TCK")
SENDER_KIND = ["c"]  # --sender: "c" (bench/netsend.c) or "python" (SENDER above)


def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def thread_cpu(pid):
    """{thread name: cpu seconds} of pid's threads."""
    out = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
            name = s[s.index("(") + 1:s.rindex(")")]
            fields = s[s.rindex(")") + 2:].split()
            out[f"{name}/{tid}"] = (int(fields[11]) + int(fields[12])) / TICK
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def io_cpu(before, after):
    """CPU seconds of the non-vCPU threads between two samples."""
    total = 0.0
    for k, v in after.items():
        name = k.split("/")[0]
        if name.startswith("vcpu") or re.match(r"CPU \d+/KVM", name):
            continue
        total += v - before.get(k, 0.0)
    return total


def vmm_cmd(vmm, build, tap, size, secs, extra="", mode="tx", baseline=None):
    kernel = common.guest(build, "netperf")
    cmdline = f"mode={mode} size={size} secs={secs} {extra}".strip()
    if vmm == "cella-base":
        # Another build's cella-vm (--baseline), same guest: before/after
        # figures from the same run.
        return harness.build_command("cella", baseline, kernel, cmdline, net_tap=tap)
    if vmm.startswith("cella"):
        more = []
        if vmm in ("cella-anon", "cella-thp"):
            # Anonymous private RAM: 4 KiB pages (the KSM backing, "merge")
            # or transparent huge pages ("thp"), as QEMU's RAM gets.
            key = "merge" if vmm == "cella-anon" else "thp"
            cfg = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                               f"cella-bnet-{os.getpid()}-{key}.json")
            with open(cfg, "w") as f:
                f.write('{"memory": {"%s": true}}' % key)
            more = ["--config", cfg]
        return harness.build_command("cella", os.path.join(build, "cella-vm"), kernel, cmdline,
                                     net_tap=tap, extra=more)
    cmd = harness.build_command("qemu", None, kernel, cmdline)
    return cmd + ["-name", "netperf,debug-threads=on","-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off",
                  "-device", "virtio-net-device,netdev=n0"]


def tap_stat(ns, tap, what):
    r = subprocess.run(["ip", "netns", "exec", ns, "cat",
                        f"/sys/class/net/{tap}/statistics/{what}"],
                       stdout=subprocess.PIPE, text=True, check=True)
    return int(r.stdout)


def run_one(vmm, build, size, secs, tag, extra="", mode="tx", baseline=None, env=None,
            nice=None):
    ns, tap = f"cella-b-net-{tag}", "bnet0"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
        sh("ip", "-n", ns, "link", "set", tap, "up")
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        f"net.ipv6.conf.{tap}.disable_ipv6=1"], check=False)
        prio = ["nice", "-n", str(nice)] if nice is not None else []
        cmd = ["ip", "netns", "exec", ns] + prio + vmm_cmd(vmm, build, tap, size, secs, extra,
                                                          mode, baseline)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, text=True,
                             env=dict(os.environ, **env) if env else None)
        cpu0 = cpu1 = None
        res = None
        t0 = t1 = None
        mac, snd = None, None
        tx0 = tx1 = (0, 0)
        try:
            for line in p.stdout:
                line = line.rstrip("\n")
                if line.startswith("netperf: features"):
                    mac = line.split()[-1]
                if line == f"netperf: begin {mode}":
                    cpu0, t0 = thread_cpu(p.pid), time.monotonic()
                    if mode == "rx":
                        tx0 = (tap_stat(ns, tap, "tx_packets"),
                               tap_stat(ns, tap, "tx_dropped"))
                        sender = ([os.path.join(build, "bench", "bench-netsend")]
                                  if SENDER_KIND[0] == "c" else [sys.executable, "-c", SENDER])
                        snd = subprocess.Popen(["ip", "netns", "exec", ns] + prio + sender +
                                               [tap, mac, str(size), str(secs)],
                                               stdout=subprocess.PIPE, text=True)
                elif line == f"netperf: end {mode}":
                    cpu1, t1 = thread_cpu(p.pid), time.monotonic()
                    if mode == "rx":
                        tx1 = (tap_stat(ns, tap, "tx_packets"),
                               tap_stat(ns, tap, "tx_dropped"))
                m = RESULT.match(line)
                if m:
                    res = tuple(int(x) for x in m.groups())
                if line.startswith(("PASS", "FAIL")):
                    break
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            if snd:
                snd.communicate(timeout=60)
        if not res or cpu0 is None or cpu1 is None:
            raise RuntimeError(f"{vmm} size={size}: no result from the guest")
        # Rates over the host's clock between the guest's begin and end
        # lines (the guest's own ms= is printed for reference).
        frames, nbytes, _ = res
        if mode == "tx":
            wire = tap_stat(ns, tap, "rx_bytes")
            pkts = tap_stat(ns, tap, "rx_packets")
        else:  # what the guest received (the sender overruns the tap's queue)
            wire, pkts = nbytes, frames
        gbit = wire * 8 / 1e9
        secs_host = t1 - t0
        out = {"gbps": gbit / secs_host, "kpps": pkts / secs_host / 1000, "frames": frames,
               "cpu_per_gbit": io_cpu(cpu0, cpu1) / gbit if gbit else float("nan")}
        if mode == "rx":
            # Offered: what reached the tap, delivered to the VMM or dropped
            # on its full queue (the sender's own rate, within the run).
            offered = tx1[0] - tx0[0] + tx1[1] - tx0[1]
            out["offered_kpps"] = offered / secs_host / 1000
        return out
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def veth_ceiling(secs, tag):
    """TCP over a veth pair between two namespaces (GSO/TSO 64 KiB
    segments), in this process's threads."""
    a, b = f"cella-b-neta-{tag}", f"cella-b-netb-{tag}"
    sh("ip", "netns", "add", a)
    try:
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", "bnetva", "netns", a, "type", "veth", "peer", "name", "bnetvb",
           "netns", b)
        sh("ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", "bnetva")
        sh("ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", "bnetvb")
        for ns, dev in ((a, "bnetva"), (b, "bnetvb")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        code = (
            "import socket,sys,time,threading\n"
            "secs=float(sys.argv[1])\n"
            "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "s.bind(('10.77.0.2',5201));s.listen(1)\n"
            "print('ready',flush=True)\n"
            "c,_=s.accept();buf=bytearray(1<<20);n=0;t0=time.monotonic()\n"
            "while True:\n"
            "    k=c.recv_into(buf)\n"
            "    if not k: break\n"
            "    n+=k\n"
            "print(n*8/1e9/(time.monotonic()-t0),flush=True)\n")
        rx = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", code, str(secs)],
                              stdout=subprocess.PIPE, text=True)
        try:
            if rx.stdout.readline().strip() != "ready":
                raise RuntimeError("veth receiver did not start")
            send = ("import socket,sys,time\n"
                    "c=socket.create_connection(('10.77.0.2',5201));buf=b'x'*(1<<20)\n"
                    "end=time.monotonic()+float(sys.argv[1])\n"
                    "while time.monotonic()<end: c.sendall(buf)\n"
                    "c.close()\n")
            subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", send, str(secs)],
                           check=True)
            return float(rx.stdout.readline())
        finally:
            if rx.poll() is None:
                rx.kill()
            rx.wait()
    finally:
        subprocess.run(["ip", "netns", "del", a], check=False)
        subprocess.run(["ip", "netns", "del", b], check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=3)
    ap.add_argument("--build", default=None)
    ap.add_argument("--guest-args", default="", help="more netperf arguments (batch=N)")
    ap.add_argument("--case", action="append", help="only these cases (names as printed)")
    ap.add_argument("--vmm", choices=VMMS + MORE_VMMS, action="append",
                    help="only these VMMs (default all)")
    ap.add_argument("--baseline", metavar="CELLA_VM",
                    help="also run this cella-vm binary (another build) as cella-base")
    ap.add_argument("--nice", type=int, default=None,
                    help="run every VMM (and the rx sender) at this nice value, e.g. -20: "
                         "on a host shared with other work, closer to a quiet host's figures")
    ap.add_argument("--sender", choices=("c", "python"), default="c",
                    help="host -> guest sender: bench-netsend (sendmmsg) or the earlier "
                         "Python loop")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE",
                    help="also run cella-vm with this environment as NAME")
    args = ap.parse_args()
    build = common.build_dir(args.build)
    if os.geteuid() != 0:
        sys.exit("bench/net.py needs root (network namespaces and taps)")
    if not shutil.which(harness.QEMU):
        sys.exit(f"{harness.QEMU} is needed for the comparison")
    if not os.path.exists(common.guest(build, "netperf")):
        sys.exit(f"no {common.guest(build, 'netperf')}: build with the guest programs")
    SENDER_KIND[0] = args.sender
    if args.sender == "c" and not os.path.exists(os.path.join(build, "bench", "bench-netsend")):
        sys.exit(f"no {build}/bench/bench-netsend: build it (ninja -C {build}) or --sender python")
    vmms = list(args.vmm or VMMS)
    envs = {}
    if args.baseline:
        vmms.insert(0, "cella-base")
    for v in args.variant:
        name, _, assign = v.partition(":")
        var, _, val = assign.partition("=")
        if not name or not var:
            sys.exit(f"--variant {v!r}: NAME:VAR=VALUE")
        envs[name] = {var: val}
        vmms.append(name)
    tag = str(os.getpid() % 100000)
    load0 = os.getloadavg()
    results = {}
    for name, size, mode in CASES:
        if args.case and name not in args.case:
            continue
        for r in range(args.rounds):
            for vmm in vmms:
                res = run_one("cella" if vmm in envs else vmm, build, size, args.secs, tag,
                              args.guest_args, mode, args.baseline, envs.get(vmm), args.nice)
                results.setdefault((name, vmm), []).append(res)
                offered = (f", offered {res['offered_kpps']:.0f} kpps"
                           if "offered_kpps" in res else "")
                print(f"# {name:11} {vmm:10} round {r + 1}: {res['gbps']:.2f} Gbit/s "
                      f"{res['kpps']:.0f} kpps, {res['cpu_per_gbit']:.3f} CPU s/Gbit{offered}",
                      flush=True)
    ceiling = None if (args.vmm or args.case) else veth_ceiling(args.secs, tag)
    load = os.getloadavg()
    print(f"\nhost: {os.cpu_count()} CPUs, load average {load0[0]:.1f} {load0[1]:.1f} "
          f"{load0[2]:.1f} before, {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} after "
          "(shared with other work: figures are loaded-host figures)")
    if args.nice is not None:
        print(f"every VMM and the rx sender ran at nice {args.nice}")
    print(f"median of {args.rounds} rounds of {args.secs} s (\"rx\": host -> guest); "
          "per-round: each round's VMM against the QEMU run next to it, lowest-highest\n")
    print("| case | VMM | Gbit/s | kpps | vs QEMU | per-round | CPU s/Gbit (I/O threads) |")
    print("|---|---|---|---|---|---|---|")
    med = lambda rs, k: common.median([x[k] for x in rs])  # noqa: E731
    for name, _, _ in CASES:
        if (name, "qemu") not in results:
            continue
        qs = results[(name, "qemu")]
        q = med(qs, "gbps")
        for vmm in vmms:
            rs = results[(name, vmm)]
            g = med(rs, "gbps")
            pr = sorted(a["gbps"] / b["gbps"] for a, b in zip(rs, qs))
            print(f"| {name} | {vmm} | {g:.2f} | {med(rs, 'kpps'):.0f} | {g / q:.2f}x | "
                  f"{pr[0]:.2f}-{pr[-1]:.2f} | {med(rs, 'cpu_per_gbit'):.3f} |")
    if ceiling is not None:
        print(f"| veth ceiling | host kernel TCP, GSO | {ceiling:.2f} | | | | |")


if __name__ == "__main__":
    main()
