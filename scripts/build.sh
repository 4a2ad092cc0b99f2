#!/usr/bin/env bash
# Configures and builds Veil (Release) into build/. Used by test.sh and demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
veil_install_deps
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$jobs"
