#!/usr/bin/env bash
# gen_corpus.sh: regenerate the fuzz-qcow2 seed corpus with qemu-img/qemu-io
# (qemu-utils): tiny images of several shapes, a few KiB each.
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)/corpus-qcow2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out"
mkdir -p "$out"
mk() { qemu-img create -q -f qcow2 "$@"; }
mk -o cluster_size=512 "$tmp/c512" 64K
qemu-io -c 'write -P 1 0 3K' -c 'write -z 8K 1K' -c 'write -P 2 20K 512' "$tmp/c512" >/dev/null
mk -o cluster_size=1024,compat=0.10 "$tmp/v2" 64K
qemu-io -c 'write -P 3 1K 2K' "$tmp/v2" >/dev/null
mk -o cluster_size=512 "$tmp/base.qcow2" 32K
mk -o cluster_size=512 -b base.qcow2 -F qcow2 "$tmp/backing" 32K
qemu-io -c 'write -P 4 0 1K' -c 'write -z 4K 2K' "$tmp/backing" >/dev/null
mk -o cluster_size=512,lazy_refcounts=on "$tmp/lazy" 32K
qemu-io -c 'write -P 5 0 2K' -c abort "$tmp/lazy" >/dev/null 2>&1 || true
mk -o cluster_size=512 "$tmp/plain" 16K
qemu-io -c 'write -P 6 0 4K' "$tmp/plain" >/dev/null
qemu-img convert -c -O qcow2 -o cluster_size=4096 "$tmp/plain" "$tmp/compressed"
mk -o cluster_size=512,refcount_bits=1 "$tmp/rc1" 16K
qemu-io -c 'write -P 7 0 1K' "$tmp/rc1" >/dev/null
mk -o cluster_size=512,refcount_bits=64 "$tmp/rc64" 16K
qemu-io -c 'write -P 8 512 1K' "$tmp/rc64" >/dev/null
mk -o cluster_size=512,preallocation=metadata "$tmp/prealloc" 16K
rm "$tmp/base.qcow2"
for f in "$tmp"/*; do cp "$f" "$out/$(basename "$f").qcow2"; done
ls -l "$out"
