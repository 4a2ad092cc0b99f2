#!/usr/bin/env bash
# Configures and builds Veil (Release) into build/. Used by test.sh and demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
veil_install_deps
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$jobs"
# The WebAssembly client and JavaScript package (build/web), where emscripten is installed
# (scripts/deps.sh installs it).
if command -v emcc >/dev/null 2>&1; then
  scripts/build_web.sh
fi
