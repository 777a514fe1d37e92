#!/usr/bin/env python3
"""migrate.py: live migration of a 1 GiB guest that dirties memory at a steady
rate (guest program dirtier: fill=1 makes its whole working set resident
first), over loopback, cella-vm to cella-vm (TLS 1.3, mutual certificates)
and, side by side, QEMU to QEMU (same guest under -M microvm -enable-kvm,
-incoming + QMP migrate, downtime-limit set to the same budget, no bandwidth
cap and auto-converge on as cella, TLS with the same certificates unless
--qemu-plain).

Prints total time, pre-copy rounds, bytes sent and the guest's downtime for
each dirty rate, and cella/QEMU ratios.

  python3 bench/migrate.py [--build DIR] [--rates 16,64,256] [--mem 1024]
                           [--wss 768] [--downtime 30] [--no-qemu]
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import common

sys.path.insert(0, os.path.join(common.TOP, "tests", "integration"))
import harness  # noqa: E402
import test_migrate as itm  # noqa: E402  (certificates, control client)


class Proc:
    """A VMM process whose stdout lines are collected on a thread."""

    def __init__(self, cmd, pass_fds=()):
        self.lines = []
        self.cv = threading.Condition()
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, pass_fds=pass_fds, text=True)
        self.err = []
        threading.Thread(target=self._read, args=(self.p.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.p.stderr, self.err), daemon=True).start()

    def _read(self, f, into):
        for line in f:
            with self.cv:
                into.append(line.rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_line(self, pattern, timeout=120, start=0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i in range(start, len(self.lines)):
                    if rx.search(self.lines[i]):
                        return i
                if self.p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no line {pattern!r}: {self.err[-5:]}")
                self.cv.wait(timeout=1)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def guest_args(rate, wss):
    return f"mib={wss} rate={rate} tick_ms=200 fill=1"


def make_disks(tmp, size_mib, alloc_mib):
    """--storage: a raw source disk of size_mib with alloc_mib of random data
    (scattered 1 MiB pieces), and an empty destination disk of the same size."""
    src, dst = os.path.join(tmp, "src.raw"), os.path.join(tmp, "dst.raw")
    for path in (src, dst):
        with open(path, "wb") as f:
            f.truncate(size_mib << 20)
    with open(src, "r+b") as f:
        step = max(1, size_mib // max(alloc_mib, 1))
        for i in range(alloc_mib):
            f.seek((i * step % size_mib) << 20)
            f.write(os.urandom(1 << 20))
    return src, dst


def cella_once(build, pki, tmp, rate, mem, wss, downtime, disks=None):
    kernel = common.guest(build, "dirtier")
    vm = os.path.join(build, "cella-vm")
    ctl_path = os.path.join(tmp, f"ctl-{rate}.sock")
    src_disk = ["--disk", disks[0]] if disks else []
    dst_disk = ["--disk", disks[1]] if disks else []
    src = Proc(harness.build_command("cella", vm, kernel, guest_args(rate, wss), mem=mem,
                                     extra=src_disk + ["--control", ctl_path]))
    sock, port = itm.listener()
    dst = Proc(harness.build_command("cella", vm, kernel, guest_args(rate, wss), mem=mem,
                                     extra=dst_disk + ["--incoming", f"fd:{sock.fileno()}",
                                            "--tls-cert", f"{pki}/dst.crt", "--tls-key",
                                            f"{pki}/dst.key", "--tls-ca", f"{pki}/ca.crt"]),
               pass_fds=(sock.fileno(),))
    sock.close()
    try:
        i = src.wait_line(r"^dirtier: ready", 180)
        src.wait_line(r"^dirtier: tick 5 ", 60, i)   # a second of steady dirtying
        ctl = itm.Control(ctl_path)
        req = {"cmd": "migrate", "host": "127.0.0.1", "port": port, "downtime_ms": downtime,
               "tls": {"cert": itm.read(pki, "src.crt"), "key": itm.read(pki, "src.key"),
                       "ca": itm.read(pki, "ca.crt"), "name": "dst.cella.test"}}
        if disks:
            req["include_storage"] = True
        rep = ctl.call(req, timeout=600)
        ctl.close()
        if not rep.get("ok"):
            raise RuntimeError(f"cella migration failed: {rep}")
        n = len(dst.lines)
        dst.wait_line(r"^dirtier: tick ", 30, n)  # the guest goes on at the destination
        fails = [l for l in dst.lines if l.startswith("FAIL")]
        if fails:
            raise RuntimeError(f"guest failed after the move: {fails[0]}")
        why = [l.split("migration: ", 1)[1] for l in src.err + dst.err
               if "stop-and-copy:" in l or "incoming migration complete" in l]
        if disks and subprocess.run(["cmp", "-s", disks[0], disks[1]]).returncode:
            raise RuntimeError("the destination disk differs from the source's")
        return {"total_ms": rep["total_ms"], "rounds": rep["rounds"], "bytes": rep["bytes"],
                "downtime_ms": rep["downtime_ms"], "breakdown": why,
                "disk_bytes": rep.get("disk_bytes")}
    finally:
        src.kill()
        dst.kill()


class QMP:
    def __init__(self, path, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # QEMU creates the socket during start-up
        self.f = self.s.makefile("r")
        json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            m = json.loads(self.f.readline())
            if "return" in m:
                return m["return"]
            if "error" in m:
                raise RuntimeError(f"QMP {name}: {m['error']}")


def qemu_tls_dir(pki, tmp, side):
    d = os.path.join(tmp, f"qemu-tls-{side}")
    os.makedirs(d, exist_ok=True)
    shutil.copy(f"{pki}/ca.crt", f"{d}/ca-cert.pem")
    if side == "server":
        shutil.copy(f"{pki}/dst.crt", f"{d}/server-cert.pem")
        shutil.copy(f"{pki}/dst.key", f"{d}/server-key.pem")
    else:
        shutil.copy(f"{pki}/src.crt", f"{d}/client-cert.pem")
        shutil.copy(f"{pki}/src.key", f"{d}/client-key.pem")
    return d


def qemu_once(build, pki, tmp, rate, mem, wss, downtime, plain):
    kernel = common.guest(build, "dirtier")
    port = itm.listener()
    port[0].close()
    port = port[1]
    qs, qd = os.path.join(tmp, f"qmp-src-{rate}"), os.path.join(tmp, f"qmp-dst-{rate}")
    base = harness.build_command("qemu", None, kernel, guest_args(rate, wss), mem=mem)
    src_cmd = base + ["-qmp", f"unix:{qs},server=on,wait=off"]
    dst_cmd = base + ["-qmp", f"unix:{qd},server=on,wait=off", "-incoming", "defer"]
    if not plain:
        src_cmd += ["-object", f"tls-creds-x509,id=tls0,endpoint=client,verify-peer=on,"
                    f"dir={qemu_tls_dir(pki, tmp, 'client')}"]
        dst_cmd += ["-object", f"tls-creds-x509,id=tls0,endpoint=server,verify-peer=on,"
                    f"dir={qemu_tls_dir(pki, tmp, 'server')}"]
    src, dst = Proc(src_cmd), Proc(dst_cmd)
    try:
        i = src.wait_line(r"^dirtier: ready", 180)
        src.wait_line(r"^dirtier: tick 5 ", 60, i)
        ms, md = QMP(qs), QMP(qd)
        # Like cella: no bandwidth cap (QEMU's default is 128 MiB/s) and
        # auto-converge (vCPU throttling) on.
        params = {"downtime-limit": downtime, "max-bandwidth": 64 << 30}
        ms.cmd("migrate-set-capabilities",
               capabilities=[{"capability": "auto-converge", "state": True}])
        if not plain:
            params.update({"tls-creds": "tls0", "tls-hostname": "dst.cella.test"})
        md.cmd("migrate-set-parameters", **({"tls-creds": "tls0"} if not plain else {}))
        md.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        ms.cmd("migrate-set-parameters", **params)
        ms.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        deadline = time.monotonic() + 600
        while True:
            st = ms.cmd("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("QEMU migration did not finish")
            time.sleep(0.05)  # QMP has no blocking wait for completion
        if st["status"] != "completed":
            raise RuntimeError(f"QEMU migration {st['status']}: {st.get('error-desc')}")
        n = len(dst.lines)
        dst.wait_line(r"^dirtier: tick ", 30, n)
        fails = [l for l in dst.lines if l.startswith("FAIL")]
        if fails:
            raise RuntimeError(f"guest failed after the QEMU move: {fails[0]}")
        return {"total_ms": st["total-time"], "rounds": st["ram"].get("dirty-sync-count"),
                "bytes": st["ram"]["transferred"], "downtime_ms": float(st["downtime"])}
    finally:
        src.kill()
        dst.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=None)
    ap.add_argument("--rates", default="16,64,256")
    ap.add_argument("--mem", type=int, default=1024)
    ap.add_argument("--wss", type=int, default=768, help="dirtier working set, MiB")
    ap.add_argument("--downtime", type=int, default=30)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--qemu-plain", action="store_true", help="QEMU without TLS")
    ap.add_argument("--storage", default=None, metavar="SIZE,ALLOC",
                    help="include_storage: a raw disk of SIZE MiB with ALLOC MiB of data "
                         "(cella only), e.g. 256,64")
    a = ap.parse_args()
    if a.storage:
        return storage_main(a)
    build = common.build_dir(a.build)
    have_qemu = not a.no_qemu and shutil.which(harness.QEMU)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cella-bench-migrate-") as tmp:
        pki = os.path.join(tmp, "pki")
        os.mkdir(pki)
        itm.make_pki(pki)
        for rate in [int(r) for r in a.rates.split(",")]:
            c = cella_once(build, pki, tmp, rate, a.mem, a.wss, a.downtime)
            q = None
            if have_qemu:
                try:
                    q = qemu_once(build, pki, tmp, rate, a.mem, a.wss, a.downtime, a.qemu_plain)
                except Exception as e:  # noqa: BLE001 - reported in the table
                    q = {"error": str(e)[:200]}
            rows.append((rate, c, q))
            print(f"# rate {rate}: cella {c} qemu {q}", flush=True)
    print(f"\nLive migration, {a.mem} MiB guest, {a.wss} MiB working set, loopback, "
          f"downtime budget {a.downtime} ms ({'QEMU plain TCP' if a.qemu_plain else 'both TLS'})")
    hdr = (f"{'MiB/s':>6} | {'cella total ms':>14} {'rounds':>6} {'MiB sent':>8} "
           f"{'downtime ms':>11} | {'QEMU total ms':>13} {'syncs':>5} {'MiB sent':>8} "
           f"{'downtime ms':>11} | {'total':>6} {'downtime':>8}")
    print(hdr)
    print("-" * len(hdr))
    for rate, c, q in rows:
        line = (f"{rate:>6} | {c['total_ms']:>14} {c['rounds']:>6} {c['bytes'] / 2**20:>8.0f} "
                f"{c['downtime_ms']:>11.1f} | ")
        if q and "error" not in q:
            line += (f"{q['total_ms']:>13} {q['rounds']:>5} {q['bytes'] / 2**20:>8.0f} "
                     f"{q['downtime_ms']:>11.1f} | {c['total_ms'] / max(q['total_ms'], 1):>6.2f} "
                     f"{c['downtime_ms'] / max(q['downtime_ms'], 0.001):>8.2f}")
        else:
            line += f"QEMU: {q['error'] if q else 'not run'}"
        print(line)
    print("\nratios: cella / QEMU (lower is better)")
    print("reproduce: python3 bench/migrate.py --build " + build)


def storage_main(a):
    """One move with a disk copied along (include_storage); cella only:
    QEMU 7.2's block migration (migrate -b) is deprecated."""
    size, alloc = (int(x) for x in a.storage.split(","))
    build = common.build_dir(a.build)
    rate = int(a.rates.split(",")[0])
    with tempfile.TemporaryDirectory(prefix="cella-bench-migrate-") as tmp:
        pki = os.path.join(tmp, "pki")
        os.mkdir(pki)
        itm.make_pki(pki)
        disks = make_disks(tmp, size, alloc)
        c = cella_once(build, pki, tmp, rate, a.mem, a.wss, a.downtime, disks)
    print(f"# {c}")
    print(f"\nLive migration with storage: {a.mem} MiB guest ({a.wss} MiB dirtied at "
          f"{rate} MiB/s), raw disk {size} MiB with {alloc} MiB of data, loopback, TLS")
    print(f"total {c['total_ms']} ms, {c['rounds']} rounds, {c['bytes'] / 2**20:.0f} MiB sent "
          f"({(c['disk_bytes'] or 0) / 2**20:.0f} MiB disk data), downtime "
          f"{c['downtime_ms']:.1f} ms; destination disk identical (cmp)")
    print(f"reproduce: python3 bench/migrate.py --build {build} --storage {a.storage} "
          f"--mem {a.mem} --wss {a.wss} --rates {rate}")


if __name__ == "__main__":
    main()
