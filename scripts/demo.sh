#!/usr/bin/env bash
# Veil's main job on data that ships with Veil (scikit-learn's breast_cancer, in
# tests/fixtures), through the inference server:
#   1. compile a logistic regression and an XGBoost model into their three artifacts;
#   2. start `veil serve` on loopback with the SQLite key store;
#   3. `veil predict` the test split as a client: fetch the client files, make keys, upload the
#      evaluation keys once, encrypt, send, decrypt;
#   4. print accuracy (float model, quantized model in the clear, FHE through the server),
#      latencies and sizes; stop the server.
#   DEMO_XGB_ROWS  test rows for the XGBoost model (default 20; every row costs its 50 PBS, about 0.5 s)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
veil=$PWD/build/veil
fixtures=tests/fixtures
work=build/demo
rm -rf "$work"
mkdir -p "$work/models"

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

# Features only (the fixtures' files end with a target column); targets apart.
cut -d, -f1-30 "$fixtures/data/breast_cancer_calib.csv" >"$work/calib.csv"
cut -d, -f1-30 "$fixtures/data/breast_cancer_test.csv" >"$work/test_all.csv"
cut -d, -f31 "$fixtures/data/breast_cancer_test.csv" | tail -n +2 >"$work/target_all.txt"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f s", b - a }'; }
size() { stat -c %s "$1" | awk '{ if ($1 >= 1048576) printf "%.1f MiB", $1 / 1048576; else printf "%.1f KiB", $1 / 1024 }'; }
# accuracy PREDICTIONS_CSV TARGETS: share of rows whose first column equals the target.
accuracy() {
  tail -n +2 "$1" | cut -d, -f1 | paste -d, - "$2" |
    awk -F, '{ n++; if ($1 + 0 == $2 + 0) ok++ } END { printf "%.1f %% (%d/%d)", 100 * ok / n, ok, n }'
}

echo "Veil demo: private inference on breast_cancer (scikit-learn's dataset) on $(nproc) cores"
echo
echo "== development machine: compile"
for name in logreg xgb; do
  t=$(now)
  $veil compile --model "$fixtures/models/${name}_breast_cancer.json" --calibration "$work/calib.csv" \
    --out "$work/models/$name" >"$work/$name.compile.txt"
  echo "  $name: $(grep -E 'total PBS' "$work/$name.compile.txt" | sed 's/^ *//'), $(elapsed "$t")"
  echo "    $(grep -E 'parameters:' "$work/$name.compile.txt" | sed 's/^ *//')"
done

echo
echo "== server: veil serve on loopback, SQLite key store"
$veil serve --models "$work/models" --listen 127.0.0.1:0 --store "sqlite:$work/keys.db" \
  >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
url=
for _ in $(seq 200); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/serve.out" 2>/dev/null | head -1 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "veil serve did not start:" >&2; cat "$work/serve.out" "$work/serve.log" >&2; exit 1; }
echo "  listening on $url (request log: $work/serve.log)"

run_model() {  # name rows
  local name="$1" rows="$2" t
  echo
  echo "== client: $name, $rows test rows"
  head -n $((rows + 1)) "$work/test_all.csv" >"$work/${name}_test.csv"
  head -n "$rows" "$work/target_all.txt" >"$work/${name}_target.txt"
  (echo label; tail -n +2 "$fixtures/models/${name}_breast_cancer.expected.csv" | head -n "$rows" | cut -d, -f1) \
    >"$work/${name}_float.csv"
  $veil simulate --artifacts "$work/models/$name" --input "$work/${name}_test.csv" --out "$work/${name}_clear.csv" >/dev/null
  t=$(now)
  $veil predict --url "$url" --model "$name" --keys "$work/client_$name" --input "$work/${name}_test.csv" \
    --out "$work/${name}_fhe.csv" 2>"$work/${name}_predict.log" | sed 's/^/  /'
  echo "  wall time of veil predict (keygen, upload, encrypt, server, decrypt): $(elapsed "$t")"
  local keys="$work/client_$name"
  echo "  sizes: evaluation keys $(size "$(find "$keys" -name evaluation.keys | head -1)"), secret key $(size "$(find "$keys" -name secret.key | head -1)") (never leaves the client)"
  t=$(now)
  $veil predict --url "$url" --model "$name" --keys "$keys" --input "$work/${name}_test.csv" \
    --out "$work/${name}_fhe2.csv" 2>/dev/null | grep -iE "latency|batch|row" | head -3 | sed 's/^/  again, keys already uploaded: /' || true
  echo "  second run: $(elapsed "$t")"
  echo "  accuracy float model:         $(accuracy "$work/${name}_float.csv" "$work/${name}_target.txt")"
  echo "  accuracy quantized, clear:    $(accuracy "$work/${name}_clear.csv" "$work/${name}_target.txt")"
  echo "  accuracy FHE through server:  $(accuracy "$work/${name}_fhe.csv" "$work/${name}_target.txt")"
  local agree
  agree=$(paste -d, <(tail -n +2 "$work/${name}_clear.csv" | cut -d, -f1) <(tail -n +2 "$work/${name}_fhe.csv" | cut -d, -f1) |
    awk -F, '{ n++; if ($1 == $2) ok++ } END { printf "%d/%d", ok, n }')
  echo "  FHE labels equal to the clear quantized ones: $agree"
}

run_model logreg "$(wc -l <"$work/target_all.txt")"
run_model xgb "${DEMO_XGB_ROWS:-20}"

echo
echo "== server metrics (excerpt)"
curl -s "$url/metrics" 2>/dev/null | grep -E '^veil_(requests_total|pbs_total|key_cache)' | head -8 | sed 's/^/  /' || true
stop_server
echo "server stopped"
