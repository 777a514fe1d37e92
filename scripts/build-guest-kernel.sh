#!/usr/bin/env bash
# build-guest-kernel.sh: build the microVM guest kernel (Debian's
# linux-source-6.1 + guest/linux/microvm-6.1.config) into a cache outside the
# tree and print the path of its bzImage (vmlinux and System.map lie beside it).
#
#   scripts/build-guest-kernel.sh            build if needed, print .../bzImage
#   CELLA_CACHE=DIR                          cache root (default ~/.cache/cella)
#   CELLA_KEEP_KSRC=1                        keep the unpacked, built source tree
#   CELLA_KERNEL_FRAGMENT=FILE               another config fragment (a kernel variant)
#
# The cache directory is named after a hash of the config fragment, the
# recipe version and the linux-source package version, so a second run is instant and
# a changed config builds a new kernel. About 5 minutes on 2 cores.
# Progress goes to stderr; stdout carries only the path.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
fragment="${CELLA_KERNEL_FRAGMENT:-$here/guest/linux/microvm-6.1.config}"
tarball=/usr/src/linux-source-6.1.tar.xz
cache="${CELLA_CACHE:-${HOME:-/var/tmp}/.cache/cella}"

say() { echo "build-guest-kernel: $*" >&2; }

need_pkgs=()
[ -f "$tarball" ] || need_pkgs+=(linux-source-6.1)
for tool in flex:flex bison:bison bc:bc make:make gcc:gcc xz:xz-utils; do
	command -v "${tool%%:*}" >/dev/null || need_pkgs+=("${tool#*:}")
done
dpkg-query -W -f='${Status}' libelf-dev 2>/dev/null | grep -q "install ok installed" ||
	need_pkgs+=(libelf-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]}"
	SUDO=
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi

# Bump when the recipe below changes what is built (not for cosmetic edits).
recipe=2
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)
hash=$( (cat "$fragment"; echo "recipe=$recipe $src_version") | sha256sum | cut -c1-16)
out="$cache/linux-$hash"
if [ -f "$out/bzImage" ] && [ -f "$out/vmlinux" ]; then
	echo "$out/bzImage"
	exit 0
fi

# One build per configuration at a time (test suites run in parallel): the
# others wait here, then find the result.
mkdir -p "$cache"
exec 9>"$out.lock"
if ! flock -n 9; then
	say "another build of this configuration is running; waiting for it"
	flock 9
fi
if [ -f "$out/bzImage" ] && [ -f "$out/vmlinux" ]; then
	echo "$out/bzImage"
	exit 0
fi
work="$out.build"
rm -rf "$work"
mkdir -p "$work"
start=$(date +%s)
say "unpacking linux-source-6.1 ($src_version) into $work"
tar -xf "$tarball" -C "$work" --strip-components=1
cd "$work"
make -s tinyconfig >&2
KCONFIG_CONFIG=.config scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s olddefconfig >&2

# Every setting of the fragment must have survived Kconfig's dependency
# resolution; a dropped one would silently give another kernel.
bad=0
while IFS= read -r line; do
	case "$line" in
	"# CONFIG_"*" is not set")
		sym=${line#\# }
		sym=${sym%% *}
		if grep -q "^$sym=" .config; then
			say "config: $sym is set, the fragment wants it off"
			bad=1
		fi
		;;
	CONFIG_*)
		if ! grep -qx -- "$line" .config; then
			say "config: '$line' did not survive (got: $(grep "^${line%%=*}=" .config || echo unset))"
			bad=1
		fi
		;;
	esac
done <"$fragment"
[ "$bad" -eq 0 ] || { say "the config fragment does not apply cleanly"; exit 1; }

say "building bzImage with $(nproc) jobs (log: $work/build.log)"
if ! make -j"$(nproc)" bzImage >"$work/build.log" 2>&1; then
	tail -30 "$work/build.log" >&2
	say "kernel build failed"
	exit 1
fi
mkdir -p "$out.tmp"
cp arch/x86/boot/bzImage vmlinux System.map "$out.tmp/"
cp .config "$out.tmp/config"
echo "$(( $(date +%s) - start ))" >"$out.tmp/build-seconds"
cd "$cache"
rm -rf "$out"
mv "$out.tmp" "$out"
if [ "${CELLA_KEEP_KSRC:-0}" = 1 ]; then
	mv "$work" "$out/src"
else
	rm -rf "$work"
fi
say "built in $(cat "$out/build-seconds") s"
echo "$out/bzImage"
