#!/usr/bin/env bash
# boot-debian-kernel.sh: opt-in check (not in the test suite) of how far a
# stock Debian cloud kernel (linux-image-cloud-amd64) gets on cella-vm, and
# how long it takes. Downloads the package with apt-get download into the
# cache, extracts vmlinuz, boots it without an initramfs (its virtio drivers
# are modules, so the expected end is "VFS: Unable to mount root fs" and a
# panic, which reboots: cella-vm exits with status 8), and prints timestamps.
# With --init, the initramfs holds only the project's static /init
# (guest/linux/init, built with gcc -static): the kernel then gets to "Run
# /init as init process", the furthest point on a host where Linux user
# space cannot run (docs/linux-guests.md); on other hosts /init prints its
# marker and powers off.
#
# The command line carries cryptomgr.notests unless --selftests.
#
#   scripts/boot-debian-kernel.sh [--cella-vm PATH] [--timeout SECONDS] [--init] [--selftests]
#   CELLA_CACHE=DIR   cache root (default ~/.cache/cella)
# Output: the console log in $CELLA_CACHE/debian-cloud/boot.log, a summary on
# stdout (milestones with host seconds since spawn, the last kernel line).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cella_vm="$here/build/cella-vm"
timeout_s=1800
with_init=0
with_selftests=0
while [ $# -gt 0 ]; do
	case "$1" in
	--cella-vm) cella_vm=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--init) with_init=1; shift ;;
	--selftests) with_selftests=1; shift ;;
	*) echo "usage: $0 [--cella-vm PATH] [--timeout SECONDS] [--init] [--selftests]" >&2; exit 2 ;;
	esac
done
[ -x "$cella_vm" ] || { echo "boot-debian-kernel: $cella_vm not built" >&2; exit 2; }

cache="${CELLA_CACHE:-$HOME/.cache/cella}/debian-cloud"
mkdir -p "$cache"
cd "$cache"
# The metapackage names the current versioned image package.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || { echo "boot-debian-kernel: cannot resolve linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
if ! ls "$pkg"_*.deb >/dev/null 2>&1; then
	echo "boot-debian-kernel: apt-get download $pkg" >&2
	apt-get download "$pkg" >&2
fi
deb=$(ls "$pkg"_*.deb | head -1)
if [ ! -d "extract-$pkg" ]; then
	dpkg-deb -x "$deb" "extract-$pkg.tmp"
	mv "extract-$pkg.tmp" "extract-$pkg"
fi
vmlinuz=$(ls "extract-$pkg"/boot/vmlinuz-* | head -1)
echo "boot-debian-kernel: booting $vmlinuz (timeout ${timeout_s} s)" >&2

# The crypto manager's self-tests include RSA private-key operations, which
# take many minutes under an emulated ring 0 (docs/linux-guests.md): skipped
# unless --selftests.
notests=cryptomgr.notests
if [ "$with_selftests" = 1 ]; then notests=; fi
initrd_args=()
if [ "$with_init" = 1 ]; then
	# A newc cpio written here (the cpio tool is not always installed):
	# /dev, /dev/console (5:1) and /init.
	gcc -static -Os -o "$cache/init" "$here/guest/linux/init/init.c"
	python3 - "$cache/initrd.cpio" "$cache/init" <<'PY'
import sys
out, ino = open(sys.argv[1], "wb"), 1
def entry(name, mode, data=b"", rdev=(0, 0)):
    global ino
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    b = b"070701" + "".join("%08x" % v for v in fields).encode() + name.encode() + b"\0"
    out.write(b + b"\0" * (-len(b) % 4) + data + b"\0" * (-len(data) % 4))
    ino += 1
entry("dev", 0o040755)
entry("dev/console", 0o020600, rdev=(5, 1))
entry("init", 0o100755, open(sys.argv[2], "rb").read())
entry("TRAILER!!!", 0)
PY
	initrd_args=(--initrd "$cache/initrd.cpio")
fi

log="$cache/boot.log"
start=$(date +%s.%N)
set +e
timeout --signal=TERM "$timeout_s" "$cella_vm" --kernel "$vmlinuz" --mem 512 --stats "${initrd_args[@]}" \
	--cmdline "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd $notests" \
	2>&1 | while IFS= read -r line; do
		printf '%8.1f %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"
	done >"$log"
status=${PIPESTATUS[0]}
set -e
end=$(date +%s.%N)

echo "Debian cloud kernel: $(basename "$vmlinuz") ($pkg)"
echo "cella-vm exit status: $status; wall time $(echo "$end - $start" | bc | cut -d. -f1) s"
for m in "Linux version" "x86/fpu: x87 FPU will use" "smp: Brought up" \
	"clocksource: Switched to clocksource tsc" "Serial: 8250/16550 driver" \
	"Unpacking initramfs" "Freeing unused kernel image" "VFS: Unable to mount root" \
	"Run /init" "CELLA-INIT" "segfault" "Kernel panic"; do
	line=$(grep -m1 -F "$m" "$log" || true)
	[ -n "$line" ] && echo "  $(echo "$line" | awk '{print $1}') s  $m"
done
echo "last kernel line: $(grep -E '^ *[0-9.]+ \[' "$log" | tail -1 | cut -c1-160)"
grep -E "stats: emulation|instruction not emulated" "$log" | sed 's/^ *[0-9.]* /  /' || true
