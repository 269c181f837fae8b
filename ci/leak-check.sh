#!/usr/bin/env bash
# Memory checks of the FFI paths: `shadowattn soak` under valgrind on Qualcomm's HTP emulator
# and on the Neuron backend through our simulator-backed shim, and the C example of the C API
# (built by ci/capi.sh). Fails when valgrind reports any memory error or any byte definitely
# lost.
#
# Short by default (CI). The long run quoted in issue notes:
#   LEAK_CHECK_EXECUTIONS=10000 LEAK_CHECK_REBUILDS=3 bash ci/leak-check.sh
# Installs valgrind from Debian when it is missing (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

executions="${LEAK_CHECK_EXECUTIONS:-200}"
rebuilds="${LEAK_CHECK_REBUILDS:-1}"

if ! command -v valgrind >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq valgrind >/dev/null
fi

SHADOWATTN_QNN_LIB="${SHADOWATTN_QNN_LIB:-$(bash ci/qnn-emulator.sh)}"
export SHADOWATTN_QNN_LIB
cargo build --quiet -p shadowattn-cli -p shadowattn-neuron-shim
SHADOWATTN_NEURON_LIB="$PWD/target/debug/libshadowattn_neuron_shim.so"
export SHADOWATTN_NEURON_LIB

logs=target/leak-check
mkdir -p "$logs"
status=0
for npu in qnn neuron; do
  log="$logs/$npu.log"
  echo "== leak check: $npu, $executions executions, $rebuilds bank rebuilds (log: $log)"
  if valgrind --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --error-exitcode=99 --log-file="$log" \
    target/debug/shadowattn soak --npu "$npu" --executions "$executions" --bank-rebuilds "$rebuilds"; then
    grep -E "definitely lost|ERROR SUMMARY" "$log" | sed 's/^==[0-9]*== */   /'  || true
  else
    echo "leak check failed on $npu (exit $?); valgrind says:" >&2
    grep -vE "^==[0-9]+== *$" "$log" | tail -40 >&2
    status=1
  fi
done
log="$logs/capi.log"
echo "== leak check: the C API's example (log: $log)"
if [ ! -x target/capi/prefill ]; then
  bash ci/capi.sh >/dev/null
fi
if LD_LIBRARY_PATH="$PWD/target/capi/prefix/lib" valgrind --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite --error-exitcode=99 \
  --log-file="$log" target/capi/prefill target/capi/calibration.json 4 2 16 64 32 1 >/dev/null; then
  grep -E "definitely lost|ERROR SUMMARY" "$log" | sed 's/^==[0-9]*== */   /' || true
else
  echo "leak check failed on the C example (exit $?); valgrind says:" >&2
  grep -vE "^==[0-9]+== *$" "$log" | tail -40 >&2
  status=1
fi
exit "$status"
