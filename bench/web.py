#!/usr/bin/env python3
"""web.py: the web console's figures (issue 15), as a Markdown table.

Runs bench/web.mjs in node (Debian's chromium through playwright-core
against a private cellad with test guests): bytes of JavaScript and CSS
shipped, time to interactive of the dashboard with 200 VMs, keystroke to
echo in the browser console, cellad's threads and memory with 20 consoles
open. Adds the host's load average before and after the run, since every
time it prints depends on it (docs/benchmarks.md says which load each
recorded figure was measured under).

Usage: bench/web.py [--build DIR] [--quick] [--tti-only]
(--quick: 20 VMs instead of 200; --tti-only: the bytes and the dashboard only)
Exits 77 (skipped) where node, chromium or /dev/kvm is missing.
"""
import argparse
import os
import shutil
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load():
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.environ.get("CELLA_BUILD", os.path.join(TOP, "build")))
    ap.add_argument("--quick", action="store_true", help="20 VMs instead of 200")
    ap.add_argument("--tti-only", action="store_true",
                    help="only the bytes shipped and the dashboard's time to interactive")
    a = ap.parse_args()
    node = shutil.which("node")
    if not node:
        print("bench/web: skipped: node is missing (scripts/setup.sh installs it)", file=sys.stderr)
        return 77
    if not os.path.exists(os.path.join(a.build, "web", "ui", "manifest.json")):
        print(f"bench/web: {a.build}/web/ui is not built (meson -Dweb=enabled, then ninja)",
              file=sys.stderr)
        return 1
    before = load()
    cmd = [node, os.path.join(TOP, "bench", "web.mjs"), os.path.abspath(a.build)]
    if a.quick:
        cmd.append("--quick")
    if a.tti_only:
        cmd.append("--tti-only")
    p = subprocess.run(cmd, cwd=TOP, stdout=subprocess.PIPE, text=True)
    if p.returncode:
        sys.stdout.write(p.stdout)
        return p.returncode
    sys.stdout.write(p.stdout)
    print(f"\nLoad average (1, 5, 15 min): {before} before, {load()} after the run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
