#!/usr/bin/env bash
# Refits the simulator's profile of every socModel Qualcomm's emulator estimates and writes
# their validation tables: simulator/socs/sa8255.toml (socModel 52, built in), the others
# under simulator/socs/qnn/, and simulator/socs/qnn/VALIDATION.md; then rewrites the fitted
# numbers of the phone profiles the emulator does not estimate from their fit
# (simulator/derived-profiles.toml). Takes about a minute with the estimate cache in target/,
# ten without it (every socModel compiles some 800 graphs).
# Run it after changing the cost model; review the diff before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(bash ci/qnn-emulator.sh)
cargo build --release -p shadowattn-cli >&2
bin=target/release/shadowattn
out=simulator/socs/qnn
# QNN's estimates are deterministic per build: keep them between refits (keyed by build,
# socModel and graph), so changing the cost model and refitting takes minutes, not a recompile
# of every graph.
cache=target/qnn-estimates-cache.json
mkdir -p "$out"
table="$out/VALIDATION.md"
{
  echo "# The fitted profiles against Qualcomm's cost model"
  echo
  echo "Made by \`bash ci/fit-profiles.sh\` (\`shadowattn soc fit --soc-model N\` for every socModel the"
  echo "emulator estimates, libQnnHtp.so of onnxruntime-qnn 2.7.0). Errors are simulated / QNN − 1 on the"
  echo "fit's own graphs and on graph families held out of every fit (\`shadowattn soc check\` prints the"
  echo "latter for any profile)."
} > "$table"
# socModel 52 first: it is the base the others copy their unfitted numbers from.
for entry in 52:sa8255 62:sa8540 63:aic100 72:sa8797 77:qcs9100 95:sar2230p 114:sa8787; do
  model=${entry%%:*}
  name=${entry#*:}
  dest="$out/$name.toml"
  base=simulator/socs/sa8255.toml
  if [ "$model" = 52 ]; then
    dest=simulator/socs/sa8255.toml
  fi
  echo "socModel $model -> $dest" >&2
  { echo; echo "## socModel $model ($name)"; echo; } >> "$table"
  "$bin" soc fit --library "$lib" --soc-model "$model" --base "$base" --out "$dest.new" \
    --estimate-cache "$cache" \
    | grep -v '^ # LIBNATIVE' >> "$table"
  mv "$dest.new" "$dest"
done
sed -i 's#^wrote: .*\.new$##' "$table"
echo "wrote $table" >&2
# The phones (8 Gen 2, 8 Gen 3, 8 Elite) take every fitted number from the socModel 52 fit just
# written, with the generation differences of the recipe applied on top.
"$bin" soc derive --recipe simulator/derived-profiles.toml >&2
