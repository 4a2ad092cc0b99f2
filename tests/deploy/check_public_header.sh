#!/usr/bin/env bash
# The public header veil/veil.hpp stays slim: preprocessed, it holds none of the engine, its
# kernels or the JSON library, and stays under a line budget that catches a heavy include.
# Usage: check_public_header.sh CXX SOURCE_DIR BUILD_DIR
set -euo pipefail
cxx=$1
src=$2
build=$3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo '#include "veil/veil.hpp"' | "$cxx" -std=c++20 -E -x c++ -I"$src/include" -I"$build/include" - >"$out"
# Veil headers the public one may pull in.
veil_headers=$(grep -o '^# [0-9]* "[^"]*include/veil/[^"]*"' "$out" | sed 's/.*include\/veil\///; s/"$//' | sort -u | tr '\n' ' ')
for h in $veil_headers; do
  case $h in
    veil.hpp | error.hpp | version.hpp) ;;
    *) echo "FAIL: veil/veil.hpp pulls in veil/$h" >&2; exit 1 ;;
  esac
done
for banned in nlohmann immintrin.h fftw3.h openssl; do
  if grep -q "$banned" "$out"; then echo "FAIL: veil/veil.hpp pulls in $banned" >&2; exit 1; fi
done
lines=$(wc -l <"$out")
code_lines=$(echo '#include "veil/veil.hpp"' | "$cxx" -std=c++20 -E -P -x c++ -I"$src/include" -I"$build/include" - | wc -l)
# libstdc++ 12's <stdexcept> and <vector> alone are ~33,600 lines in C++20 mode.
budget=40000
if [ "$lines" -gt "$budget" ]; then echo "FAIL: veil/veil.hpp preprocesses to $lines lines (budget $budget)" >&2; exit 1; fi
echo "veil/veil.hpp: $lines lines preprocessed ($code_lines without line markers), Veil headers: $veil_headers"
