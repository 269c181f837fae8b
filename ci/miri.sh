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
# Miri interprets one thread at a time: cargo-nextest (installed when missing, as ci/setup.sh
# does) runs each test in its own Miri process, two at a time (`SHADOWATTN_MIRI_JOBS`), the
# slowest first (`.config/nextest.toml`).
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "ci/miri.sh: installing cargo-nextest from crates.io"
  cargo install cargo-nextest --locked
fi
jobs="${SHADOWATTN_MIRI_JOBS:-2}"
miri_nextest() {
  cargo +"$toolchain" miri nextest run --no-fail-fast -j "$jobs" "$@"
}
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-deterministic-floats}"
# One target directory per toolchain: Miri artifacts of another nightly with the same rustc
# version would otherwise be reused and fail to link (E0463).
target="target/miri-$toolchain"
export CARGO_TARGET_DIR="$target"

echo "== miri: hal (tensor views, buffers), sparse-attn (unit tests, executor threads under the" \
  "stress test), cpu kernels' portable path"
miri_nextest -p shadowattn-hal -p shadowattn-sparse-attn -p shadowattn-cpu --lib --test stress
echo "== miri: cpu kernels, AVX2+FMA intrinsics"
# A separate target directory: other RUSTFLAGS would otherwise rebuild the runs above each time.
# Under Miri run-time feature detection sees the compile-time features alone: the kernels take
# the AVX2 path only with POPCNT enabled too (a unit test checks it). F16C stays off: Miri
# cannot run the `half` crate's F16C conversions, so the f16 gathers run their portable code.
CARGO_TARGET_DIR="$target-avx2" RUSTFLAGS="-C target-feature=+avx2,+fma,+popcnt" \
  miri_nextest -p shadowattn-cpu --lib
