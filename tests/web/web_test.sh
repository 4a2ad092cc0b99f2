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
[ -f "$web/veil-client.mjs" ] || { echo "no $web/veil-client.mjs: run scripts/build_web.sh first" >&2; exit 1; }
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

compile() {  # NAME MODEL DATA
  "$veil" compile --model "$fixtures/models/$2" --calibration "$fixtures/data/$3_calib.csv" --out "$work/models/$1" >/dev/null
}
compile logreg logreg_breast_cancer.json breast_cancer
compile xgb xgb_breast_cancer.json breast_cancer
compile tree_reg tree_diabetes.json diabetes
compile mlp mlp_iris.onnx iris

port=$((20000 + RANDOM % 20000))
"$veil" serve --models "$work/models" --listen "127.0.0.1:$port" --store "sqlite:$work/keys.db" --quiet \
  > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }

VEIL="$veil" VEIL_WEB="$(cd "$web" && pwd)" VEIL_MODELS="$work/models" VEIL_DATA="$fixtures/data" \
VEIL_URL="http://127.0.0.1:$port" node --test "$root/web/tests/"
