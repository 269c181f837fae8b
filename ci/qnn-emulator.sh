#!/usr/bin/env bash
# Fetches Qualcomm's HTP emulator for x86-64 Linux (libQnnHtp.so inside the PyPI wheel
# onnxruntime-qnn 2.7.0) into a cache under target/, and prints the library's path.
# Idempotent: a cache whose wheel hash matches is reused. The binaries are Qualcomm-licensed:
# they are never committed.
set -euo pipefail
cd "$(dirname "$0")/.."

version=2.7.0
sha256=c56c01562b8534fe8980cfea4601408d950c065f8251fb862ce82101c52c9849
cache="${SHADOWATTN_QNN_CACHE:-target/qnn-emulator}"
stamp="$cache/$sha256.ok"

if [ ! -f "$stamp" ]; then
  command -v unzip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq unzip >/dev/null; }
  rm -rf "$cache" && mkdir -p "$cache/wheel"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_35_x86_64 --python-version 311 \
    "onnxruntime-qnn==$version" -d "$cache/wheel" >&2
  wheel=$(ls "$cache"/wheel/onnxruntime_qnn-"$version"-*.whl)
  echo "$sha256  $wheel" | sha256sum --check --quiet >&2
  unzip -q -o "$wheel" 'onnxruntime_qnn/libQnnHtp.so' 'onnxruntime_qnn/libQnnSystem.so' \
    'onnxruntime_qnn.libs/*' -d "$cache"
  rm -rf "$cache/wheel"
  touch "$stamp"
fi
realpath "$cache/onnxruntime_qnn/libQnnHtp.so"
