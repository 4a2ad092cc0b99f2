#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds against it as a user would:
# examples/consumer with find_package(Veil), the same program with pkg-config, then runs
# both, and checks that `veil --version` and versions.json say the package's version.
# Usage: check_install.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
jobs=$(nproc 2>/dev/null || echo 2)

cmake --install "$build" --prefix "$work/prefix" >/dev/null
for f in bin/veil include/veil/deploy/model.hpp include/veil/version.hpp; do
  [ -e "$work/prefix/$f" ] || { echo "FAIL: the install has no $f" >&2; exit 1; }
done
for f in VeilConfig.cmake VeilTargets.cmake veil.pc; do
  [ -n "$(find "$work/prefix" -name "$f")" ] || { echo "FAIL: the install has no $f" >&2; exit 1; }
done

cmake -S "$src/examples/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer" -j "$jobs" >/dev/null
"$work/consumer/veil_consumer" "$src/tests/fixtures" "$work/run-cmake"

libdir=$(dirname "$(find "$work/prefix" -name veil.pc | head -1)")
PKG_CONFIG_PATH="$libdir" g++ -O1 -o "$work/consumer-pc" "$src/examples/consumer/main.cpp" \
  $(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs veil)
"$work/consumer-pc" "$src/tests/fixtures" "$work/run-pc"

version=$(sed -n 's/^Version: //p' "$libdir/veil.pc")
[ "$("$work/prefix/bin/veil" --version)" = "veil $version" ] || { echo "FAIL: veil --version is not veil $version" >&2; exit 1; }
echo "install: find_package(Veil) and pkg-config consumers built and ran against veil $version"
