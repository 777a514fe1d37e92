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
	rc=0
	"$exe" -max_total_time="${FUZZ_SECONDS:-10}" -rss_limit_mb=2048 -timeout=10 \
		-error_exitcode=1 -timeout_exitcode=1 \
		-artifact_prefix="$work/" "$work/corpus" || rc=$?
	# The scratch directory goes away: print what libFuzzer saved, so a
	# crash found by chance in CI can be replayed from the log.
	for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
		[ -f "$f" ] || continue
		echo "=== $(basename "$f") ($(stat -c %s "$f") bytes), base64:"
		head -c 65536 "$f" | base64 -w 76
		if [ -n "${FUZZ_ARTIFACTS:-}" ]; then mkdir -p "$FUZZ_ARTIFACTS" && cp "$f" "$FUZZ_ARTIFACTS/"; fi
	done
	exit "$rc"
else
	exec "$exe" "$work/corpus"
fi
