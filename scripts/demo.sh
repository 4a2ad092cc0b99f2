#!/usr/bin/env bash
# Veil's main job as far as it exists: choose a secure parameter set, generate keys, encrypt a
# few messages, evaluate a table by programmable bootstrapping, decrypt, and print the
# parameters, key sizes, timings and results. Arguments go to the demo (e.g. --bits 6).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
exec build/examples/tfhe_demo "$@"
