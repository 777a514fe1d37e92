#!/usr/bin/env bash
# build.sh [DIR [MESON_OPTIONS...]]: configure (once) and build cella into DIR (default build/).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$top/build}
shift || true
if [ ! -f "$dir/build.ninja" ]; then
	meson setup "$dir" "$top" "$@" >/dev/null
fi
ninja -C "$dir" >/dev/null
