#!/bin/sh
# build.sh OUT DEPFILE STAMP: the web console's build step (called by meson).
# Installs the npm packages pinned by package-lock.json when they are missing
# or older than the lock file (npm ci), then bundles (build.mjs).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/node_modules/.bin/esbuild" ] ||
	[ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
	echo "web: npm ci (packages pinned by web/package-lock.json)" >&2
	(cd "$here" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
fi
exec node "$here/build.mjs" "$@"
