#!/usr/bin/env bash
# setup.sh: install the Debian 12 packages that building and testing cella need.
# Idempotent: does nothing when everything is already installed. Run as root
# (or with sudo available).
set -euo pipefail
pkgs=(
	gcc clang libclang-rt-14-dev meson ninja-build pkg-config  # toolchain (+ libFuzzer)
	libjansson-dev liburing-dev libseccomp-dev libcmocka-dev   # libraries
	libcapstone-dev                                            # x86 decoder (emulation fallback)
	zlib1g-dev libssl-dev                                       # qcow2 compression, TLS (migration)
	libzstd-dev                                                 # replication: compressed change sets
	qemu-utils dmsetup                                          # qemu-img interop and storage-loss tests
	libmicrohttpd-dev libsqlite3-dev libcurl4-openssl-dev      # cellad and cella
	libgnutls28-dev                                            # cellad: the API's TLS
	libwslay-dev                                               # cellad: WebSocket framing (web console)
	libargon2-dev                                               # cellad: web console password hashes
	libnl-3-dev libnl-route-3-dev nftables libnftables-dev      # cellad: switches (bridges, taps over netlink; port rules)
	iperf3 ethtool                                              # port policy bandwidth tests (tests/net)
	etcd-server etcd-client                                     # pool store tests (tests/pool)
	python3 iproute2 e2fsprogs                                  # integration tests
	libext2fs-dev                                               # cellad: booting an image's own kernel (disk/bootfs.c)
	xfsprogs dosfstools                                         # tests: images cellad must refuse to boot (xfs, vfat)
	acpica-tools                                                # iasl: the ACPI tables test (arch-acpi)
	passt                                                       # user-mode networking (--net user, it-passt)
	dnsmasq-base                                                # DHCP on the Linux guest's tap
	qemu-system-x86 hyperfine fio                               # benchmarks (side by side)
	chromium                                                    # web console browser tests (tests/web)
	linux-source-6.1 flex bison bc make xz-utils libelf-dev     # the microVM guest kernel (scripts/build-guest-kernel.sh;
	                                                            # test.sh builds it in the background: no apt-get there)
)
# node and npm build the web console (web/). Only when missing: a nodejs
# from another source (nodesource) conflicts with Debian's npm package.
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	SUDO=
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The web console's npm packages, exactly as web/package-lock.json pins them
# (the build runs the same `npm ci` when they are missing).
web=$(cd "$(dirname "$0")/../web" && pwd)
if [ ! -x "$web/node_modules/.bin/esbuild" ]; then
	echo "setup: npm ci in web/"
	(cd "$web" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
