#!/usr/bin/env bash
# The C API from C: installs libshadowattn into a prefix under target/ (capi/install.sh, with
# its pkg-config file), builds the C example and the C error-path test against it with the
# system compiler through pkg-config (shared and static), runs them, and checks that the
# example prints the accuracy lines `shadowattn run` prints for the same calibration, shape and
# seed. The committed header is checked by `cargo test -p shadowattn-capi --test header`.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/capi
prefix="$out/prefix"
mkdir -p "$out"
bash capi/install.sh "$prefix" --debug
export PKG_CONFIG_PATH="$PWD/$prefix/lib/pkgconfig"
cflags=(-std=c11 -Wall -Wextra -Werror)
cc "${cflags[@]}" capi/examples/prefill.c $(pkg-config --cflags --libs shadowattn) -o "$out/prefill"
cc "${cflags[@]}" capi/tests/c/errors.c $(pkg-config --cflags --libs shadowattn) -o "$out/errors"
cc "${cflags[@]}" capi/examples/prefill.c $(pkg-config --cflags shadowattn) \
  "$prefix/lib/libshadowattn.a" $(pkg-config --libs-only-l --static shadowattn | sed 's/-lshadowattn//') \
  -o "$out/prefill-static"
export LD_LIBRARY_PATH="$PWD/$prefix/lib"

cargo build --quiet -p shadowattn-cli
cli=target/debug/shadowattn
"$cli" calibrate --out "$out/calibration.json" --layers 1 --q-heads 4 --kv-heads 2 --head-dim 32 >/dev/null
"$cli" calibrate --out "$out/other.json" --layers 1 --q-heads 8 --kv-heads 2 --head-dim 16 >/dev/null

echo "== capi: the C example"
"$out/prefill" "$out/calibration.json" 4 2 16 64 32 1 | tee "$out/prefill.txt"
"$out/prefill-static" "$out/calibration.json" 4 2 16 64 32 1 > "$out/prefill-static.txt"
# The C API's context runs the per-head pilot (its options have no pilot choice yet).
"$cli" run --calibration "$out/calibration.json" --compute cpu --q-heads 4 --kv-heads 2 --q-len 16 --kv-len 64 \
  --head-dim 32 --seed 1 --pilot head > "$out/run.txt"
keys='^(topk_recall_mean|topk_recall_p5|attention_mass_mean|oracle_mass_mean|rel_l2_mean|rel_l2_p95|cosine_mean|fallback):'
for f in prefill prefill-static; do
  if ! diff <(grep -E "$keys" "$out/run.txt" | cut -d" " -f1-2) <(grep -E "$keys" "$out/$f.txt" | cut -d" " -f1-2); then
    echo "ci/capi.sh: the C example ($f) and shadowattn run disagree" >&2
    exit 1
  fi
done
echo "   the accuracy lines equal those of shadowattn run"

echo "== capi: error paths from C"
"$out/errors" "$out/other.json"
