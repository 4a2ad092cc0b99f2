#!/usr/bin/env bash
# The JavaScript client (build/web, scripts/build_web.sh) against the C++ side: compiles
# fixture models of each family, serves them with `veil serve` on loopback, and runs Node's
# test runner on web/tests (keys and inputs made in WASM run by `veil run` and `veil serve`;
# answers decrypt in WASM as in the C++ client; CLI ciphertexts decrypt in WASM; bad input
# rejects). Usage: web_test.sh VEIL FIXTURES WEB_DIR
set -euo pipefail
veil=$1 fixtures=$2 web=$3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/common.sh"

compile() {  # NAME MODEL DATA
  "$veil" compile --model "$fixtures/models/$2" --calibration "$fixtures/data/$3_calib.csv" --out "$work/models/$1" >/dev/null
}
compile logreg logreg_breast_cancer.json breast_cancer
compile xgb xgb_breast_cancer.json breast_cancer
compile tree_reg tree_diabetes.json diabetes
compile mlp mlp_iris.onnx iris

start_server --quiet

VEIL="$veil" VEIL_WEB="$(cd "$web" && pwd)" VEIL_MODELS="$work/models" VEIL_DATA="$fixtures/data" \
VEIL_URL="http://127.0.0.1:$port" node --test "$root/web/tests/"
