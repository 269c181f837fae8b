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
