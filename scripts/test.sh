#!/usr/bin/env bash
# Builds Veil and runs the whole CTest suite (statistical tests included); exits non-zero on
# any failure. Extra arguments go to ctest (e.g. -L statistical, -LE statistical, -R Pbs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
jobs=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 1200 "$@"
