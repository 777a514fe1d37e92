#!/usr/bin/env python3
"""it-restore_prefetch: restored memory filled ahead of the guest
(docs/state-format.md, "The memory order record" and "Filling restored
memory").

- memwriter (32 MiB) saved while it runs (restored under --seccomp): the save samples its writes (the
  reply's order_pages, a valid "mem-order" section in the file); restored,
  the prefetch runs (status and stats: restore_prefetch done, every page of
  the buffer written ahead), and the guest re-reads and verifies every word
  of its buffer, then carries on with the right checksums. Twice: through
  userfaultfd (this test runs as root: method "userfaultfd", the worker's
  guest memory in transparent huge pages, /proc/PID/smaps_rollup), and with
  CELLA_RESTORE_FILL=populate (the copy-on-write file mapping, method
  "populate");
- host-side identity: a guest parked in a long pause is saved (without a
  sample: no record, as older files), restored, and saved again once the
  prefetch is done: the two files' guest memory is byte for byte the same;
- a restored VM stopped at once (SIGTERM, the prefetch may still run) exits
  cleanly with status 12;
- live migration started right after a restore: the prefetch stops
  (state "stopped" or already "done"), the guest goes on at the destination
  with every word verified.
"""
import os
import re
import signal
import struct
import tempfile
import time

import harness
from harness import TestFailure, log
import test_migrate as tm

EXIT_SAVED, EXIT_STOPPED, EXIT_MIGRATED = 14, 12, 16
MW_RE = re.compile(r"^memwriter: round (\d+) checksum 0x([0-9a-f]{16})$")


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)
    log(f"ok: {msg}")


def cella(args, cmdline, mem, extra=()):
    return [args["cella_vm"], "--kernel", args["guests"]["memwriter"], "--cmdline", cmdline,
            "--mem", str(mem)] + list(extra)


def save(guest, ctl, path, **kw):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        rep = harness.control(ctl, {"cmd": "save", "fd": 0, **kw}, fds=[fd], timeout=180)
    finally:
        os.close(fd)
    check(rep.get("ok") is True, f"save reply {rep}")
    check(guest.wait_exit(60) == EXIT_SAVED, "the saved worker exited with status 14")
    return rep


def sections(path):
    """{id: (version, payload)} of a state file (format version 2)."""
    with open(path, "rb") as f:
        hdr = f.read(128)
        check(hdr[:8] == b"CELLASTF" and struct.unpack_from("<I", hdr, 8)[0] == 2,
              f"{os.path.basename(path)} is a version 2 state file")
        off, length, mem_off = struct.unpack_from("<QQQ", hdr, 32)
        f.seek(off)
        data = f.read(length)
    out, pos = {}, 0
    while pos < len(data):
        sid = data[pos:pos + 48].rstrip(b"\0").decode()
        ver, _crc, plen = struct.unpack_from("<IIQ", data, pos + 48)
        out[sid] = (ver, data[pos + 64:pos + 64 + plen])
        pos += 64 + plen
    return out, mem_off


def order_runs(payload):
    shift, rsvd, n = struct.unpack_from("<IIQ", payload, 0)
    check(shift == 12 and rsvd == 0 and len(payload) == 16 + 16 * n,
          f"mem-order header: page shift {shift}, {n} runs")
    return [struct.unpack_from("<QII", payload, 16 + 16 * i) for i in range(n)]


def wait_prefetch(ctl, timeout=120):
    """Poll the status until the prefetch is no longer running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pf = harness.control(ctl, {"cmd": "status"}).get("restore_prefetch")
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise TestFailure(f"{ctl} never answered")
            time.sleep(0.02)  # the worker creates its socket while it starts
            continue
        if pf is None or pf["state"] != "running":
            return pf
        if time.monotonic() > deadline:
            raise TestFailure(f"prefetch still running after {timeout} s: {pf}")
        time.sleep(0.05)  # polling the worker's status with a deadline


def rounds(lines):
    return [(int(m.group(1)), m.group(2)) for m in map(MW_RE.match, lines) if m]


def anon_huge_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        m = re.search(r"^AnonHugePages:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def thp_possible():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def case_prefetch(args, d, fill="userfaultfd"):
    mib, mem = 32, 128
    cmdline = f"mib={mib} rounds=0 pause_ms=20"
    ctl, state = os.path.join(d, "a.sock"), os.path.join(d, "a.state")
    with harness.Guest(cella(args, cmdline, mem, ["--control", ctl]), "mw") as g:
        g.wait_for(r"^memwriter: round 3 checksum", 180)
        rep = save(g, ctl, state)
    check(rep.get("order_pages", 0) > 0 and rep.get("sample_ms", 0) > 0,
          f"the save sampled {rep.get('order_pages')} written pages in {rep.get('sample_ms')} ms")
    secs, _ = sections(state)
    check("mem-order" in secs and secs["mem-order"][0] == 1, "the file has a mem-order section")
    runs = order_runs(secs["mem-order"][1])
    pages = sum(r[1] for r in runs)
    check(pages == rep["order_pages"] and all(r[2] == 1 for r in runs),
          f"{len(runs)} runs of {pages} pages, all marked written")
    last = rounds(g.lines)[-1][0]
    tail = g.lines[-1] if g.lines and not MW_RE.match(g.lines[-1]) else ""
    ctl2 = os.path.join(d, f"b-{fill}.sock")
    # Under the worker's seccomp filters: the prefetch thread stacks its own.
    # (The worker inherits the environment: populate is its opt-out.)
    if fill == "populate":
        os.environ["CELLA_RESTORE_FILL"] = "populate"
    try:
        g2 = harness.Guest(cella(args, cmdline, mem, ["--restore", state, "--control", ctl2,
                                                      "--seccomp"]), f"mw-restored-{fill}")
        g2.start()
    finally:
        os.environ.pop("CELLA_RESTORE_FILL", None)
    try:
        pf = wait_prefetch(ctl2)
        check(pf is not None and pf["state"] == "done" and pf["errors"] == 0,
              f"prefetch finished: {pf}")
        check(pf["method"] == fill, f"filled by {fill}")
        if fill == "userfaultfd" and thp_possible():
            huge = anon_huge_kib(g2.proc.pid)
            check(huge >= (mib << 10) // 2,
                  f"guest memory in huge pages: AnonHugePages {huge} kB (buffer {mib} MiB)")
        check(pf["recorded_pages"] == pages, "it took the recorded pages")
        check(pf["written_pages"] >= (mib << 20) // 4096,
              f"{pf['written_pages']} pages filled ahead (the {mib} MiB buffer at least)")
        st = harness.control(ctl2, {"cmd": "stats"})
        check(st["memory"].get("restore_prefetch", {}).get("state") == "done",
              "stats carry memory.restore_prefetch (cellad's metrics)")
        g2.wait_for(rf"^memwriter: round {last + 3} checksum", 180)
    finally:
        g2.kill()
    after = list(g2.lines)
    if after and tail:
        after[0] = tail + after[0]
    got = rounds(after)
    check([r for r, _ in got][:3] == [last + 1, last + 2, last + 3],
          f"rounds after restore {[r for r, _ in got]} follow round {last}")
    check(not any(l.startswith("FAIL") for l in g2.lines),
          "the guest re-read and verified every word of its buffer")
    check(any("restore prefetch done" in l for l in g2.stderr_lines), "the worker logged it")
    return state


def case_identity(args, d):
    """Memory after the prefetch is the saved memory, byte for byte."""
    mib, mem = 16, 64
    cmdline = f"mib={mib} rounds=0 pause_ms=600000"
    ctl, s1, s2 = os.path.join(d, "c.sock"), os.path.join(d, "c1.state"), \
        os.path.join(d, "c2.state")
    with harness.Guest(cella(args, cmdline, mem, ["--control", ctl]), "idle") as g:
        base = int(g.wait_for(r"^memwriter: ready .* base=(0x[0-9a-f]+)", 180).group(1), 16)
        g.wait_for(r"^memwriter: round 1 checksum", 180)
        rep = save(g, ctl, s1, sample_ms=0)
    check(rep.get("order_pages") == 0, "sample_ms 0: no sample")
    check("mem-order" not in sections(s1)[0], "and no mem-order section (as older files)")
    ctl2 = os.path.join(d, "d.sock")
    with harness.Guest(cella(args, cmdline, mem, ["--restore", s1, "--control", ctl2]),
                       "idle-restored") as g2:
        pf = wait_prefetch(ctl2)
        check(pf["state"] == "done" and pf["recorded_pages"] == 0 and
              pf["written_pages"] >= (mib << 20) // 4096,
              f"without a record the prefetch fills the file's data: {pf}")
        save(g2, ctl2, s2, sample_ms=0)
    _, m1 = sections(s1)
    _, m2 = sections(s2)
    with open(s1, "rb") as f1, open(s2, "rb") as f2:
        f1.seek(m1 + base)
        f2.seek(m2 + base)
        a, b = f1.read(mib << 20), f2.read(mib << 20)
    check(len(a) == len(b) == mib << 20 and a == b,
          f"the {mib} MiB buffer at 0x{base:x} is identical in both files")
    words = struct.unpack_from("<4Q", a, 0)
    want = [((1 << 40) | i) * 0x9E3779B97F4A7C15 & (2**64 - 1) for i in range(4)]
    check(list(words) == want, "and holds round 1's values")


def case_stop(args, d, state):
    cmdline = "mib=32 rounds=0 pause_ms=20"
    g = harness.Guest(cella(args, cmdline, 128, ["--restore", state]), "stop-at-once")
    with g:
        deadline = time.monotonic() + 60
        while not any("restore: state loaded" in l for l in g.stderr_lines):
            if time.monotonic() > deadline or g.proc.poll() is not None:
                raise TestFailure("the restored worker never got to run")
            time.sleep(0.001)  # polling its log, with a deadline
        g.proc.send_signal(signal.SIGTERM)
        status = g.wait_exit(60)
    check(status == EXIT_STOPPED, f"stopped right after restore: exit status {status}")
    check(not any("seccomp" in l or "Sanitizer" in l for l in g.stderr_lines),
          "no crash or blocked call")


def case_migrate(args, d, state):
    pki = os.path.join(d, "pki")
    os.mkdir(pki)
    tm.make_pki(pki)
    cmdline = "mib=32 rounds=0 pause_ms=20"
    ctl = os.path.join(d, "m.sock")
    sock, port = tm.listener()
    dcmd = cella(args, cmdline, 128, ["--incoming", f"fd:{sock.fileno()}",
                                      "--tls-cert", f"{pki}/dst.crt", "--tls-key",
                                      f"{pki}/dst.key", "--tls-ca", f"{pki}/ca.crt",
                                      "--tls-peer", "src.cella.test"])
    dst = harness.Guest(dcmd, "dst").start(pass_fds=(sock.fileno(),))
    sock.close()
    # (No --seccomp: the request has the worker connect, which its filter
    # leaves to cellad, who passes a connected socket.)
    src = harness.Guest(cella(args, cmdline, 128, ["--restore", state, "--control", ctl]),
                        "src-restored").start()
    try:
        c = tm.Control(ctl)
        req = {"cmd": "migrate", "host": "127.0.0.1", "port": port,
               "tls": {"cert": tm.read(pki, "src.crt"), "key": tm.read(pki, "src.key"),
                       "ca": tm.read(pki, "ca.crt"), "name": "dst.cella.test"}}
        rep = c.call(req, 300)
        check(rep.get("ok") is True, f"migration right after the restore: {rep}")
        c.close()
        check(src.wait_exit(60) == EXIT_MIGRATED, "the source exited with status 16")
        check(any(re.search(r"restore prefetch (stopped|done)", l) for l in src.stderr_lines),
              "its prefetch ended (stopped by the migration, or done before)")
        first = int(dst.wait_for(r"^memwriter: round (\d+) checksum", 180).group(1))
        dst.wait_for(rf"^memwriter: round {first + 1} checksum", 180)
        check(not any(l.startswith("FAIL") for l in dst.lines),
              "the destination's guest verified every word")
    finally:
        src.kill()
        dst.kill()


def test(args):
    harness.require_kvm()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as d:
        if os.geteuid() != 0:
            log("SKIP (userfaultfd part): not root, so no /dev/userfaultfd; the restore "
                "maps the file")
        state = case_prefetch(args, d, "userfaultfd" if os.geteuid() == 0 else "populate")
        case_prefetch(args, d, "populate")
        case_identity(args, d)
        case_stop(args, d, state)
        case_migrate(args, d, state)


if __name__ == "__main__":
    harness.main(test)
