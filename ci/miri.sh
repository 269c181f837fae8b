#!/usr/bin/env bash
# Miri (undefined-behaviour checker) over the code whose unsafe or shared state does not cross a
# foreign function: HAL tensor views and buffers, the fast CPU kernels' SIMD intrinsics (AVX2+FMA
# path and portable path) and the sparse-attention executor's threads and queues (a Miri-sized
# run of the concurrency stress test). Installs a nightly toolchain with Miri when missing
# (idempotent). Float results are made deterministic: Miri otherwise adds rounding noise to
# float operations on purpose, which breaks tests that compare exact float values.
set -euo pipefail
cd "$(dirname "$0")/.."

# A dated nightly: Miri's checks and flags change between nightlies; this one passes here.
toolchain="${SHADOWATTN_MIRI_TOOLCHAIN:-nightly-2026-05-20}"
if ! cargo +"$toolchain" miri --version >/dev/null 2>&1; then
  echo "ci/miri.sh: installing the $toolchain toolchain with miri and rust-src"
  rustup toolchain install "$toolchain" --profile minimal --component miri,rust-src
fi
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-deterministic-floats}"
# One target directory per toolchain: Miri artifacts of another nightly with the same rustc
# version would otherwise be reused and fail to link (E0463).
target="target/miri-$toolchain"
export CARGO_TARGET_DIR="$target"

echo "== miri: hal (tensor views, buffers)"
cargo +"$toolchain" miri test -q -p shadowattn-hal --lib
echo "== miri: sparse-attn (unit tests, executor threads under the stress test)"
cargo +"$toolchain" miri test -q -p shadowattn-sparse-attn --lib --test stress
echo "== miri: cpu kernels, portable path"
cargo +"$toolchain" miri test -q -p shadowattn-cpu --lib
echo "== miri: cpu kernels, AVX2+FMA intrinsics"
# A separate target directory: other RUSTFLAGS would otherwise rebuild the runs above each time.
CARGO_TARGET_DIR="$target-avx2" RUSTFLAGS="-C target-feature=+avx2,+fma" \
  cargo +"$toolchain" miri test -q -p shadowattn-cpu --lib
