#!/bin/sh
# install-ui.sh SRC DIR: meson install step: copies the built console (SRC)
# into DESTDIR/prefix/DIR (share/cella/ui), replacing an older copy.
set -eu
src=$1
dst="${MESON_INSTALL_DESTDIR_PREFIX:?}/$2"
mkdir -p "$dst"
find "$dst" -mindepth 1 -maxdepth 1 -type f -delete
cp -p "$src"/* "$dst"/
echo "Installing web console to $dst"
