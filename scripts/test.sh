#!/usr/bin/env bash
# test.sh: the whole test suite: unit, fuzz (brief) and integration tests in a
# normal build, again in an ASan+UBSan build, and the fuzz targets with
# libFuzzer (clang). Prints "N passed, N failed, N skipped" last.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/setup.sh" || { echo "setup failed"; exit 1; }

passed=0 failed=0 skipped=0
digest=$(mktemp)
trap 'rm -f "$digest"' EXIT
run_suite() { # DIR LABEL [meson test args...]
	local dir=$1 label=$2
	shift 2
	echo "=== $label ==="
	meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
	local log=$dir/meson-logs/testlog.json
	if [ -f "$log" ]; then
		read -r p f s < <(python3 - "$log" "$label" "$digest" <<'PY'
import json, sys
p = f = s = 0
with open(sys.argv[3], "a") as d:
    for line in open(sys.argv[1]):
        t = json.loads(line)
        r = t["result"]
        if r in ("OK", "EXPECTEDFAIL"): p += 1
        elif r == "SKIP": s += 1
        else:
            f += 1
            # Why it failed, in a few lines: a CI log shows its last part.
            out = (t.get("stdout") or "").splitlines()
            err = (t.get("stderr") or "").splitlines()
            why = [l for l in out if "FAIL" in l or "Error" in l][-3:] + err[-6:]
            d.write(f"--- {sys.argv[2]}: {t['name']}: {r} ({t.get('duration', 0):.1f} s)\n")
            for l in why:
                d.write("    " + l[:400] + "\n")
print(p, f, s)
PY
)
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	else
		failed=$((failed + 1))
	fi
}

# The microVM guest kernel that the linux suite boots takes 4-8 minutes to
# build on a fresh machine (cached in ~/.cache/cella after). Build it from the
# start, at the lowest CPU priority, in the time the C builds and the tests
# leave idle (the daemon tests mostly wait on guests and timers): it-linux-boot
# then finds it built, or waits on the build's lock, instead of building it
# while the whole suite waits for that test alone.
kbuild_log=$(mktemp) kbuild_pid=
if [ -e /dev/kvm ]; then
	nice -n 19 "$top/scripts/build-guest-kernel.sh" >/dev/null 2>"$kbuild_log" &
	kbuild_pid=$!
fi
trap 'rm -f "$digest" "$kbuild_log"' EXIT

if [ ! -e /dev/kvm ]; then
	echo "##### WARNING: /dev/kvm is missing: integration tests that boot guests will SKIP #####"
fi

"$top/scripts/build.sh" "$top/build" || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
run_suite "$top/build" "normal build"

"$top/scripts/build.sh" "$top/build-asan" -Dsanitize=true || { echo "asan build failed"; failed=$((failed + 1)); }
# The Linux kernel boot (about two minutes here) runs once, in the normal
# build; the instruction emulator it exercises has unit and fuzz tests that do
# run under the sanitizers. The browser tests (suite web) run once too: what
# they drive in C (sessions, static files, the WebSocket console) has its
# own daemon tests (daemon-web_*) and fuzz targets, which do run here. So do
# the long scenario tests (suite slow: HA fencing, etcd away, bandwidth-capped
# transfers, overcommit, storage migration, the replication, pool-host and
# stateful-ACL scenarios), whose time is spent waiting on timers, transfers
# and guests: shorter tests (daemon-replica, pool-place, daemon-switch, the
# unit tests) run the same code under ASan.
[ -f "$top/build-asan/build.ninja" ] && ASAN_OPTIONS=detect_leaks=1 run_suite "$top/build-asan" "ASan+UBSan build" --no-suite linux --no-suite web --no-suite slow

CC=clang "$top/scripts/build.sh" "$top/build-fuzz" -Dfuzz=true -Dsanitize=true -Dguest=false || { echo "fuzz build failed"; failed=$((failed + 1)); }
[ -f "$top/build-fuzz/build.ninja" ] && FUZZ_SECONDS=${FUZZ_SECONDS:-10} run_suite "$top/build-fuzz" "libFuzzer" --suite fuzz

if [ -n "$kbuild_pid" ] && ! wait "$kbuild_pid"; then # its failure shows in it-linux-boot too
	echo "=== guest kernel build (background) failed ==="
	tail -20 "$kbuild_log"
fi

echo
if [ -s "$digest" ]; then
	echo "=== failures ==="
	cat "$digest"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
