#!/usr/bin/env bash
# run.sh: every benchmark of the worker, side by side with QEMU microvm, as
# Markdown tables on stdout (paste them into docs/benchmarks.md).
# Usage: bench/run.sh [BUILD_DIR]   (default: build/, built if needed)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
"$top/scripts/setup.sh"
"$top/scripts/build.sh" "$build"
export CELLA_BUILD=$build
echo "Host: $(nproc) CPUs, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "QEMU: $(qemu-system-x86_64 --version | head -1)"
echo
python3 "$top/bench/startup.py" --build "$build" --runs 20
echo
python3 "$top/bench/exits.py" --build "$build" --runs 3
echo
python3 "$top/bench/blk.py" --build "$build" --runs 3
