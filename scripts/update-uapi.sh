#!/usr/bin/env bash
# update-uapi.sh: refresh the pinned Linux UAPI headers in include/uapi/.
# Usage: scripts/update-uapi.sh [HEADERS_DIR]
#   HEADERS_DIR is a tree from `make headers_install` (default: /usr/include,
#   Debian's linux-libc-dev). Review the diff before committing: these headers
#   define the ABI that the VMM speaks to KVM and to virtio drivers.
set -euo pipefail
src=${1:-/usr/include}
top=$(cd "$(dirname "$0")/.." && pwd)
asm=$src/asm
[ -d "$asm" ] || asm=$src/x86_64-linux-gnu/asm
for f in kvm.h virtio_blk.h virtio_config.h virtio_ids.h virtio_mmio.h \
         virtio_net.h virtio_ring.h virtio_rng.h virtio_types.h virtio_balloon.h; do
	install -m 0644 "$src/linux/$f" "$top/include/uapi/linux/$f"
done
install -m 0644 "$asm/kvm.h" "$top/include/uapi/asm/kvm.h"
echo "updated include/uapi from $src"
