#!/usr/bin/env bash
# Checks the Rust harness's dense perplexity of SmolLM2 against an independent implementation:
# models/reference/smollm2_reference.py (ggml's `gguf` package for reading and dequantizing,
# Hugging Face `tokenizers`, a float64 NumPy forward pass) on the same windows of GPL-3.
# Installs its Python packages into a virtualenv under target/ (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

window="${1:-256}"
windows="${2:-1}"
model="$(bash ci/model.sh)"
venv=target/pyref
if ! "$venv/bin/python" -c "import gguf, tokenizers, numpy" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "gguf==0.17.1" "tokenizers==0.23.3" "numpy==2.4.6"
fi
text=/usr/share/common-licenses/GPL-3
reference=$("$venv/bin/python" models/reference/smollm2_reference.py "$model" "$text" "$window" "$windows")
ours=$(cargo run --quiet -p shadowattn-cli -- eval --model "$model" --text "$text" \
  --window "$window" --max-windows "$windows" --dense-only)
echo "$reference"
echo "$ours"
python3 - "$reference" "$ours" <<'PY'
import re, sys
ref = float(re.search(r"^ppl: ([0-9.]+)", sys.argv[1], re.M).group(1))
ours = float(re.search(r"^ppl_dense: ([0-9.]+)", sys.argv[2], re.M).group(1))
rel = abs(ours / ref - 1)
print(f"dense perplexity: rust {ours:.6f} vs numpy reference {ref:.6f} (relative difference {rel:.2e})")
sys.exit(0 if rel < 1e-4 else 1)
PY
