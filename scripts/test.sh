#!/usr/bin/env bash
# Builds Veil and runs every test: a short fuzzing smoke of each parser of untrusted bytes
# (scripts/fuzz.sh smoke: ASan + UBSan, a few seconds per target; VEIL_SKIP_FUZZ=1 skips it),
# then the whole CTest suite (statistical tests included), then the engine's tests (label
# tfhe) once more under each lower kernel set the CPU runs (VEIL_ISA=portable, avx2: the
# suite ran on the best; veil/tfhe/isa.hpp). Exits non-zero on any failure.
# Extra arguments go to the first ctest run (e.g. -L statistical, -LE statistical, -R Pbs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
if [ "${VEIL_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh smoke "${VEIL_FUZZ_SMOKE_SECONDS:-5}"
fi
jobs=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 1200 "$@"
sets=$(build/tests/tfhe/veil_isa_sets)
best=$(tail -n 1 <<<"$sets")
for isa in $sets; do
  if [ "$isa" != "$best" ]; then
    echo "== engine tests on the $isa kernel set"
    VEIL_ISA=$isa ctest --test-dir build --output-on-failure -j "$jobs" --timeout 1200 -L tfhe
  fi
done
