#!/usr/bin/env bash
# Veil's main job on data that ships with Veil (scikit-learn's breast_cancer, in
# tests/fixtures): compile a logistic regression and an XGBoost model, make keys, encrypt the
# test split, run the models on the encrypted rows, decrypt, and print accuracy (float model,
# quantized in the clear, FHE), per-step timings and the sizes of keys, inputs and outputs.
#   DEMO_XGB_ROWS  test rows for the XGBoost model (default 8; every row costs its PBS)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
veil=build/veil
fixtures=tests/fixtures
work=build/demo
rm -rf "$work"
mkdir -p "$work"

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

run_model() {  # name model_file rows
  local name="$1" model="$2" rows="$3" dir="$work/$1" t
  echo
  echo "== $name ($model), $rows test rows"
  head -n $((rows + 1)) "$work/test_all.csv" >"$work/${name}_test.csv"
  head -n "$rows" "$work/target_all.txt" >"$work/${name}_target.txt"
  tail -n +2 "$fixtures/models/${name}_breast_cancer.expected.csv" | head -n "$rows" | cut -d, -f1 >"$work/${name}_float.txt"

  t=$(now); $veil compile --model "$fixtures/models/$model" --calibration "$work/calib.csv" --out "$dir" | sed 's/^/  /'
  echo "  compile: $(elapsed "$t")"
  t=$(now); $veil keygen --client "$dir" --keys "$dir/keys" 2>/dev/null | sed 's/^/  /'
  echo "  keygen: $(elapsed "$t")"
  t=$(now); $veil encrypt --client "$dir" --keys "$dir/keys" --input "$work/${name}_test.csv" --out "$dir/x.enc" >/dev/null
  echo "  encrypt: $(elapsed "$t"), $(size "$dir/x.enc") for $rows rows ($(size "$work/${name}_test.csv") as CSV)"
  t=$(now); $veil run --server "$dir" --evaluation-keys "$dir/keys/evaluation.keys" --input "$dir/x.enc" --out "$dir/y.enc" | sed 's/^/  server: /'
  echo "  run: $(elapsed "$t") for $rows rows, output $(size "$dir/y.enc")"
  t=$(now); $veil decrypt --client "$dir" --keys "$dir/keys" --input "$dir/y.enc" --out "$dir/fhe.csv" >/dev/null
  echo "  decrypt: $(elapsed "$t")"
  $veil simulate --artifacts "$dir" --input "$work/${name}_test.csv" --out "$dir/clear.csv" >/dev/null
  echo "  sizes: evaluation keys $(size "$dir/keys/evaluation.keys"), secret key $(size "$dir/keys/secret.key") (never leaves the client)"
  printf 'float,%s\n' "" >/dev/null
  echo "  accuracy float model:      $( (echo label; cat "$work/${name}_float.txt") >"$dir/float.csv"; accuracy "$dir/float.csv" "$work/${name}_target.txt")"
  echo "  accuracy quantized, clear: $(accuracy "$dir/clear.csv" "$work/${name}_target.txt")"
  echo "  accuracy FHE:              $(accuracy "$dir/fhe.csv" "$work/${name}_target.txt")"
  local agree
  agree=$(paste -d, <(tail -n +2 "$dir/clear.csv" | cut -d, -f1) <(tail -n +2 "$dir/fhe.csv" | cut -d, -f1) |
    awk -F, '{ n++; if ($1 == $2) ok++ } END { printf "%d/%d", ok, n }')
  echo "  FHE labels equal to the clear quantized ones: $agree"
}

echo "Veil demo: private inference on breast_cancer (scikit-learn's dataset) on $(nproc) cores"
run_model logreg logreg_breast_cancer.json "$(wc -l <"$work/target_all.txt")"
run_model xgb xgb_breast_cancer.json "${DEMO_XGB_ROWS:-8}"
