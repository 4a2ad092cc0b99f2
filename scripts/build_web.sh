#!/usr/bin/env bash
# Builds the WebAssembly client (wasm/, with Debian's emscripten) and assembles the JavaScript
# package into build/web/: veil-client.mjs (the entry), its worker and engine, the .wasm, the
# TypeScript declarations, package.json, and the page `veil serve` serves (build/web/page).
# Called by scripts/build.sh when emcc is installed (scripts/deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's emcc needs acorn from Debian's node modules.
export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}
jobs=$(nproc 2>/dev/null || echo 2)
emcmake cmake -S wasm -B build/wasm -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/wasm -j "$jobs"
out=build/web
mkdir -p "$out/page"
cp web/veil-client.mjs web/veil-core.mjs web/veil-worker.mjs web/veil-client.d.ts "$out/"
cp build/wasm/veil-client-wasm.mjs build/wasm/veil-client-wasm.wasm "$out/"
cp web/page/* "$out/page/"
# The package's version is Veil's, written once in CMakeLists.txt.
version=$(sed -n 's/^project(veil VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
sed "s/\"version\": \"[^\"]*\"/\"version\": \"$version\"/" web/package.json > "$out/package.json"
echo "build/web: veil-client.mjs, veil-client-wasm.wasm ($(stat -c %s "$out/veil-client-wasm.wasm") bytes)"
