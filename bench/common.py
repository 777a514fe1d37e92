"""common.py: shared helpers for the bench/ drivers: locating the build,
building VMM command lines (the integration harness's, so the benchmarks boot
exactly what the tests boot) and running a guest while timestamping its
serial lines on the host clock."""
import os
import re
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402  (build_command)


def build_dir(path=None):
    return path or os.environ.get("CELLA_BUILD", os.path.join(TOP, "build"))


def guest(build, name):
    return os.path.join(build, "guest", f"{name}.elf")


def run_timed(cmd, timeout=600):
    """Runs cmd, returns [(host_seconds_since_spawn, line)] for its stdout and
    its exit status."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, text=True)
    lines = []
    for line in p.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    p.wait(timeout=timeout)
    return lines, p.returncode


def phases(lines, prog):
    """Host-timed phases between '<prog>: begin X' and '<prog>: end X' lines,
    plus the guest's own 'key=value' figures on '<prog>: X ...' lines."""
    begin, out = {}, {}
    for t, line in lines:
        m = re.match(rf"^{prog}: (begin|end) (\S+)$", line)
        if m:
            if m.group(1) == "begin":
                begin[m.group(2)] = t
            else:
                out.setdefault(m.group(2), {})["host_s"] = t - begin[m.group(2)]
            continue
        m = re.match(rf"^{prog}: (\S+) (.*=.*)$", line)
        if m and m.group(1) in out:
            for kv in m.group(2).split():
                k, _, v = kv.partition("=")
                if v.isdigit():
                    out[m.group(1)][k] = int(v)
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")
