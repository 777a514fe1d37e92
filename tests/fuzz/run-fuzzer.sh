#!/usr/bin/env bash
# run-fuzzer.sh EXE CORPUS MODE: run one fuzz target briefly.
#   MODE=libfuzzer: libFuzzer for FUZZ_SECONDS (default 10) on a scratch copy
#   of the seed corpus (the source tree is never written).
#   MODE=standalone: replay the corpus plus FUZZ_ITERS random mutations.
set -euo pipefail
exe=$1 corpus=$2 mode=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
if [ -d "$corpus" ]; then cp -r "$corpus"/. "$work/corpus/"; fi
if [ "$mode" = libfuzzer ]; then
	exec "$exe" -max_total_time="${FUZZ_SECONDS:-10}" -rss_limit_mb=2048 -timeout=10 \
		-artifact_prefix="$work/" "$work/corpus"
else
	exec "$exe" "$work/corpus"
fi
