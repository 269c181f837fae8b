#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of the files where a wrong number is silent: each area names
# its files, the package whose tests cover them and the test arguments. Every mutant that
# survives must be listed with the reason it is equivalent (or harmless) in
# ci/mutants-survivors.txt; the script prints each survivor with its reason and fails on any
# survivor without one. Not part of the default CI (each mutant is a rebuild plus tests).
#
#   bash ci/mutants.sh                  every area
#   bash ci/mutants.sh select executor  some areas
#   bash ci/mutants.sh --list           the areas
#   MUTANTS_BASE=main bash ci/mutants.sh     only mutants in lines changed since `main`
#   MUTANTS_SHARD=0/4 bash ci/mutants.sh     one shard of each area
#   MUTANTS_TIMEOUT=120                      seconds per test run (default 300)
#
# Results: target/mutants/<area>/mutants.out/{caught,missed,timeout,unviable}.txt.
# The QNN area runs the emulator tests: SHADOWATTN_QNN_LIB or `bash ci/qnn-emulator.sh` first.
# Installs cargo-mutants from crates.io when it is missing (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

# area ; files (comma-separated) ; test package ; mutant-name filter (regex, or .) ; test args
AREAS=(
  "translate;backends/npu/qnn/src/backend/translate.rs;shadowattn-qnn;.;--lib --test emulator"
  "select;sparse-attn/src/select.rs;shadowattn-sparse-attn;.;"
  "executor;sparse-attn/src/executor.rs;shadowattn-sparse-attn;.;"
  "bank;sparse-attn/src/bank.rs;shadowattn-sparse-attn;.;"
  "pilot;sparse-attn/src/pilot.rs;shadowattn-sparse-attn;.;"
  "prepare;sparse-attn/src/prepare.rs;shadowattn-sparse-attn;.;"
  "reference;backends/cpu/src/reference/kernels.rs,backends/cpu/src/reference/arith.rs;shadowattn-cpu;.;"
  "fast-softmax;backends/cpu/src/fast/kernels.rs,backends/cpu/src/fast/tile.rs,backends/cpu/src/fast/group.rs;shadowattn-cpu;attend|softmax|exp|scale|valid;"
  "budget;hal/src/compute/budget/mod.rs,hal/src/compute/budget/threshold.rs;shadowattn-hal;.;"
  "model;models/src/model/config.rs,models/src/model/rope.rs,models/src/model/weights.rs,models/src/gguf/writer.rs;shadowattn-models;.;--test architectures"
  "sim-numerics;simulator/src/npu/functional.rs,simulator/src/npu/numerics.rs;shadowattn-simulator;.;--lib --test simulator"
)

if [[ "${1:-}" == "--list" ]]; then
  for a in "${AREAS[@]}"; do
    IFS=';' read -r name files pkg _ <<<"$a"
    echo "$name: $files (tests of $pkg)"
  done
  exit 0
fi

if ! command -v cargo-mutants >/dev/null 2>&1; then
  cargo install --locked cargo-mutants@27.1.0
fi
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" CARGO_INCREMENTAL=0

survivors_file=ci/mutants-survivors.txt
diff_file=""
if [[ -n "${MUTANTS_BASE:-}" ]]; then
  diff_file="$(mktemp)"
  git diff "$MUTANTS_BASE" -- '*.rs' >"$diff_file"
fi

# The reason recorded for survivor `$1`, or nothing.
reason_of() {
  { grep -F -- "$1 ::" "$survivors_file" 2>/dev/null || true; } | head -1 | sed 's/.* :: //'
}

unexplained=0
for a in "${AREAS[@]}"; do
  IFS=';' read -r name files pkg filter test_args <<<"$a"
  if [[ $# -gt 0 ]] && [[ ! " $* " == *" $name "* ]]; then
    continue
  fi
  out="target/mutants/$name"
  mkdir -p "$out"
  # nextest runs each test in its own process, as CI does (the QNN emulator is not safe to load
  # into several test threads of one process).
  args=(--no-shuffle -j 1 --output "$out" --test-package "$pkg" --test-tool nextest
    --timeout "${MUTANTS_TIMEOUT:-300}")
  IFS=',' read -ra fs <<<"$files"
  for f in "${fs[@]}"; do args+=(-f "$f"); done
  [[ "$filter" != "." ]] && args+=(--re "$filter")
  [[ -n "${MUTANTS_SHARD:-}" ]] && args+=(--shard "$MUTANTS_SHARD")
  [[ -n "$diff_file" ]] && args+=(--in-diff "$diff_file")
  echo "== mutants: $name ($files; tests of $pkg${test_args:+ $test_args})"
  # shellcheck disable=SC2086 # test_args is a list of words.
  cargo mutants "${args[@]}" -- $test_args || true
  missed="$out/mutants.out/missed.txt"
  [[ -f "$missed" ]] || continue
  while IFS= read -r m; do
    [[ -z "$m" ]] && continue
    why="$(reason_of "$m")"
    if [[ -n "$why" ]]; then
      echo "   survives (explained): $m :: $why"
    else
      echo "   SURVIVES (no reason in $survivors_file): $m"
      unexplained=$((unexplained + 1))
    fi
  done <"$missed"
done
[[ -n "$diff_file" ]] && rm -f "$diff_file"
if [[ $unexplained -gt 0 ]]; then
  echo "$unexplained surviving mutants have no test and no reason" >&2
  exit 1
fi
echo "== every surviving mutant is explained"
