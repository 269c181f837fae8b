#!/usr/bin/env bash
# Installs libshadowattn for C/C++ build systems: the shared and static library, the header and
# a pkg-config file, under a prefix.
#
#   bash capi/install.sh <prefix> [--debug]      # e.g. /usr/local, or $HOME/.local
#
# Then: cc app.c $(PKG_CONFIG_PATH=<prefix>/lib/pkgconfig pkg-config --cflags --libs shadowattn)
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="${1:?usage: bash capi/install.sh <prefix> [--debug]}"
profile=release
if [ "${2:-}" = "--debug" ]; then
  profile=debug
fi
if [ "$profile" = release ]; then
  cargo build --quiet --release -p shadowattn-capi
else
  cargo build --quiet -p shadowattn-capi
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
prefix="$(cd "$prefix" && pwd)"
cp "target/$profile/libshadowattn.so" "target/$profile/libshadowattn.a" "$prefix/lib/"
cp capi/include/shadowattn.h "$prefix/include/"
cat > "$prefix/lib/pkgconfig/shadowattn.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: shadowattn
Description: shadowAttn, NPU-centric sparse attention for LLMs (libshadowattn)
Version: $version
Libs: -L\${libdir} -lshadowattn
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
echo "installed libshadowattn $version ($profile) under $prefix"
