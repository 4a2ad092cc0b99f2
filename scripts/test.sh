#!/usr/bin/env bash
# Builds Veil and runs every test: a short fuzzing smoke of each parser of untrusted bytes
# (scripts/fuzz.sh smoke: ASan + UBSan, a few seconds per target; VEIL_SKIP_FUZZ=1 skips it),
# then the whole CTest suite (statistical tests included). Exits non-zero on any failure.
# Extra arguments go to ctest (e.g. -L statistical, -LE statistical, -R Pbs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
if [ "${VEIL_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh smoke "${VEIL_FUZZ_SMOKE_SECONDS:-5}"
fi
jobs=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 1200 "$@"
