#!/usr/bin/env bash
# Type-checks the workspace for aarch64-unknown-linux-gnu and runs the CPU kernel tests (NEON path)
# under qemu-user. Installs what it needs (idempotent): the rustup target, Debian's
# gcc-aarch64-linux-gnu linker and qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"

echo "== aarch64: type-check the workspace"
# `check` compiles every crate for aarch64 (its cfg(target_arch) paths included) without the
# code generation a build would spend on crates no test below runs; the kernel crates are built
# and linked by the tests. The ggml baseline is left out: it cross-compiles llama.cpp with
# CMake, and only times x86 here.
cargo check --workspace --exclude shadowattn-ggml --target "$target" --quiet
echo "== aarch64: CPU kernel tests under qemu"
cargo test -p shadowattn-hal -p shadowattn-cpu --target "$target"
