#!/usr/bin/env bash
# Installs what the tests need on a fresh machine. Idempotent: safe to run again.
set -euo pipefail

need_component() {
  local tool=$1 component=$2
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    echo "ci/setup.sh: installing rustup component $component"
    rustup component add "$component"
  fi
}

need_component fmt rustfmt
need_component clippy clippy

# cargo-nextest runs the suite (and shards it with --partition in CI matrices).
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "ci/setup.sh: installing cargo-nextest from crates.io"
  cargo install cargo-nextest --locked
fi

# The ggml baseline (baselines/ggml, llama-cpp-sys-2) builds llama.cpp's ggml with CMake and
# generates its bindings with bindgen, which needs libclang and clang's own headers (the same
# clang 15 that PoCL, for the OpenCL tests, depends on).
ggml_packages=(cmake libclang1-15 libclang-common-15-dev)
if ! command -v cmake >/dev/null 2>&1 || ! dpkg -s "${ggml_packages[@]:1}" >/dev/null 2>&1; then
  echo "ci/setup.sh: installing ${ggml_packages[*]} (for the ggml baseline)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${ggml_packages[@]}" >/dev/null
fi
