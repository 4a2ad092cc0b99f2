#!/usr/bin/env bash
# Fuzzes Veil's parsers of untrusted bytes with libFuzzer under ASan + UBSan (tests/fuzz/).
#
#   scripts/fuzz.sh                  every target, 60 s each
#   scripts/fuzz.sh TARGET [SECONDS] one target (fuzz_TARGET), 60 s unless given
#   scripts/fuzz.sh all SECONDS      every target, SECONDS each
#   scripts/fuzz.sh smoke [SECONDS]  every target briefly (5 s), as scripts/test.sh does
#   scripts/fuzz.sh list             the target names
#
# Builds into build-fuzz/ with clang-14, writes seeds made from real files into
# build-fuzz/seeds/, keeps each target's growing corpus in build-fuzz/corpus/TARGET/ and
# any crashing input in build-fuzz/findings/. Prints one line per target (executions,
# coverage, corpus size) and exits non-zero when a target found a crash, a leak, a timeout
# or an undocumented exception (strict mode: tests/fuzz/fuzz_common.hpp).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
veil_install_deps "${VEIL_FUZZ_PACKAGES[@]}"

TARGETS=(tfhe_frame tfhe_frame_fixed circuit_frame circuit_frame_fixed envelope envelope_fixed artifacts_json
         client_zip client_dir zip_reader onnx sklearn_json xgboost_json csv npy http_request)

mode=${1:-all}
seconds=${2:-60}
case "$mode" in
  list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
  smoke) seconds=${2:-5}; selected=("${TARGETS[@]}") ;;
  all) selected=("${TARGETS[@]}") ;;
  *)
    if [[ ! " ${TARGETS[*]} " == *" $mode "* ]]; then
      echo "fuzz.sh: no target '$mode' (scripts/fuzz.sh list)" >&2
      exit 2
    fi
    selected=("$mode") ;;
esac

out=build-fuzz
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DVEIL_FUZZ=ON -DVEIL_BUILD_TESTS=OFF -DVEIL_BUILD_BENCH=OFF >/dev/null
cmake --build "$out" -j "$jobs" --target veil_fuzz

if [ ! -f "$out/seeds/.complete" ] || [ "$out/tests/fuzz/veil_fuzz_seeds" -nt "$out/seeds/.complete" ]; then
  rm -rf "$out/seeds"
  "$out/tests/fuzz/veil_fuzz_seeds" tests/fixtures "$out/seeds"
  touch "$out/seeds/.complete"
fi
mkdir -p "$out/findings"

failed=()
printf '%-20s %12s %10s %8s %8s %s\n' target executions exec/s edges corpus result
for t in "${selected[@]}"; do
  corpus="$out/corpus/$t"
  mkdir -p "$corpus" "$out/seeds/$t"
  log="$out/findings/$t.log"
  set +e
  # No leak checks: libprotobuf and the JSON library keep static tables alive until exit.
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$out/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
    -print_final_stats=1 -artifact_prefix="$out/findings/$t-" "$corpus" "$out/seeds/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  files=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then result=ok; else result="FAILED (exit $rc, see $log)"; failed+=("$t"); fi
  printf '%-20s %12s %10s %8s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${edges:-?}" "$files" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in ${failed[*]}; the inputs are in $out/findings/" >&2
  for t in "${failed[@]}"; do grep -m5 -E "ERROR|undocumented|runtime error|SUMMARY" "$out/findings/$t.log" >&2 || true; done
  exit 1
fi
