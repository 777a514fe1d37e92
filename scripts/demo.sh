#!/usr/bin/env bash
# demo.sh: the main job. Installs what is missing, builds cella, and boots the
# bundled demo VM: the test guest's `demo` program on 2 vCPUs with a virtio
# disk and a virtio-rng. The guest says what it is doing on its serial console
# and powers the VM off; cella-vm's last log line says how the VM ended.
#
# demo.sh --service: instead, start the management service cellad in the
# foreground (state in a temporary directory) for a quick try with the cella
# CLI from another terminal; ^C stops it.
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
	cat <<TXT
demo: starting cellad in the foreground. In another terminal:
  export CELLA_SOCKET=$work/cellad.sock
  $top/build/cli/cella vm create demo --kernel $top/build/guest/echo.elf --cmdline '' --memory 64
  $top/build/cli/cella vm start demo
  $top/build/cli/cella vm console demo     # type lines; 'quit' ends the guest; Ctrl-] detaches
  $top/build/cli/cella vm list
TXT
	"$top/build/daemon/cellad" --socket "$work/cellad.sock" --state-dir "$work/state" \
		--run-dir "$work/run"
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
