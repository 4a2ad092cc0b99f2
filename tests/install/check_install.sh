#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds against it as a user would:
# examples/deploy.cpp through examples/consumer with find_package(Veil), and again with
# pkg-config; runs both on a fixture model and checks their predictions against
# `veil simulate`; checks that `veil --version` says the package's version.
# Usage: check_install.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
jobs=$(nproc 2>/dev/null || echo 2)

cmake --install "$build" --prefix "$work/prefix" >/dev/null
for f in bin/veil include/veil/veil.hpp include/veil/error.hpp include/veil/deploy/model.hpp include/veil/version.hpp; do
  [ -e "$work/prefix/$f" ] || { echo "FAIL: the install has no $f" >&2; exit 1; }
done
for f in VeilConfig.cmake VeilTargets.cmake veil.pc; do
  [ -n "$(find "$work/prefix" -name "$f")" ] || { echo "FAIL: the install has no $f" >&2; exit 1; }
done

# The README's program on a fixture model: compile, keys, encrypt, run, decrypt.
cut -d, -f1-30 "$src/tests/fixtures/data/breast_cancer_calib.csv" >"$work/calib.csv"
# head first: `cut | head` under pipefail fails at random when head exits before cut has
# written everything (SIGPIPE), which a loaded machine makes likely.
head -21 "$src/tests/fixtures/data/breast_cancer_test.csv" | cut -d, -f1-30 >"$work/rows.csv"
model="$src/tests/fixtures/models/logreg_breast_cancer.json"
cmake -S "$src/examples/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer" -j "$jobs" >/dev/null
"$work/consumer/deploy" "$model" "$work/calib.csv" "$work/rows.csv" "$work/run-cmake" >"$work/cmake.out" 2>/dev/null

libdir=$(dirname "$(find "$work/prefix" -name veil.pc -print -quit)")
PKG_CONFIG_PATH="$libdir" g++ -O1 -o "$work/deploy-pc" "$src/examples/deploy.cpp" \
  $(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs veil)
"$work/deploy-pc" "$model" "$work/calib.csv" "$work/rows.csv" "$work/run-pc" >"$work/pc.out" 2>/dev/null

# 20 predictions each, a label and two class scores per line, the same labels both times and
# the same as the clear model's (a levelled-only model decrypts exactly).
for out in "$work/cmake.out" "$work/pc.out"; do
  [ "$(wc -l <"$out")" = 20 ] || { echo "FAIL: $out has $(wc -l <"$out") predictions, not 20" >&2; exit 1; }
  awk -F, 'NF != 3 || ($1 != 0 && $1 != 1) { bad = 1 } END { exit bad }' "$out" ||
    { echo "FAIL: $out is not label,score,score per line" >&2; exit 1; }
done
cmp -s <(cut -d, -f1 "$work/cmake.out") <(cut -d, -f1 "$work/pc.out") ||
  { echo "FAIL: the two builds of examples/deploy.cpp disagree" >&2; exit 1; }
"$work/prefix/bin/veil" simulate --artifacts "$work/run-cmake" --input "$work/rows.csv" --out "$work/clear.csv" >/dev/null
cmp -s <(cut -d, -f1 "$work/cmake.out") <(tail -n +2 "$work/clear.csv" | cut -d, -f1) ||
  { echo "FAIL: examples/deploy.cpp's labels differ from veil simulate's" >&2; exit 1; }

version=$(sed -n 's/^Version: //p' "$libdir/veil.pc")
[ "$("$work/prefix/bin/veil" --version)" = "veil $version" ] || { echo "FAIL: veil --version is not veil $version" >&2; exit 1; }
echo "install: find_package(Veil) and pkg-config consumers built and ran against veil $version"
