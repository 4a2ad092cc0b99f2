#!/usr/bin/env bash
# Sizes and step times of the deployment workflow per model (docs/BENCHMARKS.md, "Deployment"):
# client.zip, server.zip, seeded evaluation keys, one encrypted input row and one encrypted
# output row; keygen, encrypt, run and decrypt wall times through the `veil` CLI on one row.
# Usage: scripts/measure_deploy.sh [MODEL_FIXTURE...]   (default: one per family on breast_cancer)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
veil=build/veil
f=tests/fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(logreg_breast_cancer.json tree_breast_cancer.json forest_breast_cancer.json
                                   xgb_breast_cancer.json mlp_breast_cancer.onnx)
cut -d, -f1-30 "$f/data/breast_cancer_calib.csv" >"$work/calib.csv"
head -2 "$f/data/breast_cancer_test.csv" | cut -d, -f1-30 >"$work/row.csv"
csv_bytes=$(tail -n +2 "$work/row.csv" | wc -c)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
sz() { stat -c %s "$1"; }
printf "%-28s %10s %10s %12s %10s %10s %8s %9s %9s %9s %9s\n" model client.zip server.zip eval.keys input/row output/row PBS keygen_s encrypt_s run_s decrypt_s
for m in "${models[@]}"; do
  d="$work/${m%.*}"
  $veil compile --model "$f/models/$m" --calibration "$work/calib.csv" --out "$d" >"$d.compile" 2>&1
  pbs=$(grep -o 'total PBS: [0-9]*' "$d.compile" | grep -o '[0-9]*$')
  t=$(now); $veil keygen --client "$d" --keys "$d/keys" >/dev/null 2>&1; tk=$(secs "$t")
  t=$(now); $veil encrypt --client "$d" --keys "$d/keys" --input "$work/row.csv" --out "$d/x.enc" >/dev/null; te=$(secs "$t")
  t=$(now); $veil run --server "$d" --evaluation-keys "$d/keys/evaluation.keys" --input "$d/x.enc" --out "$d/y.enc" >/dev/null; tr=$(secs "$t")
  t=$(now); $veil decrypt --client "$d" --keys "$d/keys" --input "$d/y.enc" --out "$d/y.csv" >/dev/null; td=$(secs "$t")
  printf "%-28s %10s %10s %12s %10s %10s %8s %9s %9s %9s %9s\n" "$m" "$(sz "$d/client.zip")" "$(sz "$d/server.zip")" \
    "$(sz "$d/keys/evaluation.keys")" "$(sz "$d/x.enc")" "$(sz "$d/y.enc")" "$pbs" "$tk" "$te" "$tr" "$td"
done
echo "(sizes in bytes; one clear input row is $csv_bytes bytes of CSV, 30 float64 features = 240 bytes)"
