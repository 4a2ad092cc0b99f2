#!/usr/bin/env bash
# Installs the Debian packages Veil needs that are missing, non-interactively.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run alone.
set -euo pipefail

VEIL_PACKAGES=(
  build-essential cmake pkg-config curl
  libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libonnx-dev libprotobuf-dev protobuf-compiler nlohmann-json3-dev
  libzip-dev zlib1g-dev libcli11-dev libcpp-httplib-dev libsqlite3-dev libpq-dev postgresql
  # scripts/cluster.sh: the load balancer in front of the replicas. On a machine with systemd,
  # Debian's package also enables its own default site on port 80; cluster.sh runs a separate
  # nginx from its own configuration and never touches that one.
  nginx
  # The Python package (python/) and its tests; torch is the largest (about 2 minutes to
  # install on a fresh machine), and tools/make_fixtures.py uses the same set.
  python3-dev pybind11-dev python3-numpy python3-pytest python3-sklearn python3-xgboost python3-torch python3-onnx
  # The WebAssembly client and JavaScript package (wasm/, web/; scripts/build_web.sh): emcc
  # needs acorn from node-acorn; the page's end-to-end test drives Debian's chromium.
  emscripten node-acorn nodejs chromium fonts-dejavu-core
)

# scripts/fuzz.sh adds these: clang with libFuzzer and the sanitizer runtimes.
VEIL_FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)

# veil_install_deps [EXTRA_PACKAGE...]: Veil's packages and the extra ones given.
veil_install_deps() {
  local missing=()
  for pkg in "${VEIL_PACKAGES[@]}" "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "veil: installing missing Debian packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "veil: need root or sudo to install ${missing[*]}" >&2
      return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  veil_install_deps
fi
