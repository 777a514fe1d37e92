#!/usr/bin/env bash
# demo.sh: the main job. Installs what is missing, builds cella, and boots the
# bundled demo VM: the test guest's `demo` program on 2 vCPUs with a virtio
# disk and a virtio-rng. The guest says what it is doing on its serial console
# and powers the VM off; cella-vm's last log line says how the VM ended.
#
# demo.sh --service: instead, start the management service cellad in the
# foreground (state in a temporary directory) for a quick try with the cella
# CLI from another terminal and the web console in a browser (it prints the
# URL and a login token); ^C stops it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh"
"$top/scripts/build.sh" "$top/build"
if [ ! -e /dev/kvm ]; then
	echo "demo: /dev/kvm is missing: this machine cannot run VMs" >&2
	exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "${1:-}" = "--service" ]; then
	# The web console: HTTPS on 127.0.0.1:8419 with a throwaway certificate,
	# and plain HTTP on 127.0.0.1:8420 (loopback only) for a local browser.
	port=${CELLA_DEMO_PORT:-8419}
	http_port=${CELLA_DEMO_HTTP_PORT:-8420}
	token=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
	printf '%s\n' "$token" >"$work/token"
	chmod 600 "$work/token"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cella demo" \
		-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-keyout "$work/tls.key" -out "$work/tls.pem" >/dev/null 2>&1
	ui=${CELLA_UI_DIR:-$top/build/web/ui}
	ui_conf=""
	[ -d "$ui" ] && ui_conf="\"ui_dir\": \"$ui\","
	cat >"$work/cellad.json" <<JSON
{ $ui_conf
  "tcp": {"address": "127.0.0.1", "port": $port, "token_file": "$work/token"},
  "tls": {"cert": "$work/tls.pem", "key": "$work/tls.key", "ca": "$work/tls.pem"},
  "http_loopback_port": $http_port }
JSON
	cat <<TXT
demo: starting cellad in the foreground. In another terminal:
  export CELLA_SOCKET=$work/cellad.sock
  $top/build/cli/cella vm create demo --kernel $top/build/guest/echo.elf --cmdline '' --memory 64
  $top/build/cli/cella vm start demo
  $top/build/cli/cella vm console demo     # type lines; 'quit' ends the guest; Ctrl-] detaches
  $top/build/cli/cella vm list
  echo 'a long password' | $top/build/cli/cella user add me --role admin   # a console login

Web console: http://127.0.0.1:$http_port/   (loopback only; or https://127.0.0.1:$port/,
  a self-signed certificate). Log in with the token:
  $token
TXT
	[ -d "$ui" ] || echo "demo: no web console build at $ui (meson builds it into build/web/ui): the API only"
	"$top/build/daemon/cellad" --config "$work/cellad.json" --socket "$work/cellad.sock" \
		--state-dir "$work/state" --run-dir "$work/run"
	exit $?
fi
truncate -s 64M "$work/disk.img"
echo "demo: booting build/guest/demo.elf (2 vCPUs, 128 MiB, virtio-blk on a 64 MiB image, virtio-rng)"
set +e
"$top/build/cella-vm" --kernel "$top/build/guest/demo.elf" --cpus 2 --mem 128 \
	--disk "$work/disk.img" --rng --cmdline "console=ttyS0 demo=1" "$@"
status=$?
set -e
case $status in
0) echo "demo: the guest powered the VM off cleanly (exit status 0)" ;;
*) echo "demo: cella-vm exited with status $status (see the last log line)"; exit "$status" ;;
esac
