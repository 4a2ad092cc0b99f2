#!/usr/bin/env bash
# End-to-end through the `veil` binary: compile -> keygen -> encrypt -> run -> decrypt for one
# model of each family (linear, tree ensemble, network), then the error paths: every bad file
# or argument exits non-zero with one line on stderr.
# Usage: cli_test.sh VEIL_BINARY FIXTURES_DIR
set -uo pipefail
veil="$1"
fixtures="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# Runs a command that must succeed.
ok() {
  if ! "$@" >"$work/out" 2>"$work/err"; then
    fail "expected success: $*"; cat "$work/err" >&2
  fi
}
# Runs a command that must fail with one line on stderr mentioning $1.
refused() {
  local want="$1"; shift
  if "$@" >"$work/out" 2>"$work/err"; then
    fail "expected failure: $*"; return
  fi
  if [ "$(wc -l <"$work/err")" -ne 1 ]; then fail "expected one line on stderr: $*"; cat "$work/err" >&2; fi
  if ! grep -qi -- "$want" "$work/err"; then fail "stderr of '$*' does not mention '$want': $(cat "$work/err")"; fi
}

# Features only (the fixtures' data files end with a target column).
cut -d, -f1-30 "$fixtures/data/breast_cancer_calib.csv" >"$work/calib.csv"
head -4 "$fixtures/data/breast_cancer_test.csv" | cut -d, -f1-30 >"$work/test.csv"

for sub in compile keygen encrypt run decrypt inspect; do ok "$veil" "$sub" --help; done
ok "$veil" --version

roundtrip() {  # name model
  local name="$1" model="$2" dir="$work/$1"
  ok "$veil" compile --model "$model" --calibration "$work/calib.csv" --out "$dir"
  grep -q "total PBS" "$work/out" || fail "$name: compile printed no statistics"
  ok "$veil" keygen --client "$dir" --keys "$dir/keys"
  [ "$(stat -c %a "$dir/keys/secret.key")" = "600" ] || fail "$name: secret.key is not mode 600"
  ok "$veil" encrypt --client "$dir" --keys "$dir/keys" --input "$work/test.csv" --out "$dir/x.enc"
  ok "$veil" run --server "$dir" --evaluation-keys "$dir/keys/evaluation.keys" --input "$dir/x.enc" --out "$dir/y.enc"
  ok "$veil" decrypt --client "$dir" --keys "$dir/keys" --input "$dir/y.enc" --out "$dir/y.csv"
  [ "$(wc -l <"$dir/y.csv")" -eq 4 ] || fail "$name: expected a header and 3 predictions, got $(cat "$dir/y.csv")"
  head -1 "$dir/y.csv" | grep -q "^label" || fail "$name: no label column"
  for f in client.zip server.zip serialized_processing.json keys/secret.key keys/evaluation.keys x.enc y.enc; do
    ok "$veil" inspect "$dir/$f" --artifacts "$dir"
    grep -q "belongs with" "$work/out" || fail "$name: inspect $f does not say it belongs"
  done
}

roundtrip logreg "$fixtures/models/logreg_breast_cancer.json"   # linear (scikit-learn JSON)
roundtrip xgb "$fixtures/models/xgb_breast_cancer.json"         # tree ensemble (XGBoost JSON)
roundtrip mlp "$fixtures/models/mlp_breast_cancer.onnx"         # network (ONNX from PyTorch)

# Tree comparisons read their features approximately by default (neighbour reads); with
# --exact-tree-comparisons they read nothing approximately: the same predictions as the plain
# simulation. A network's draws are reproducible for a seed; --seed needs the flag.
ok "$veil" inspect "$work/xgb/server.zip"
grep -q "approximate lookups: 20 PBS" "$work/out" || fail "the default XGBoost circuit has no approximate comparisons"
ok "$veil" compile --model "$fixtures/models/xgb_breast_cancer.json" --calibration "$work/calib.csv" --out "$work/xgb_exact" \
  --exact-tree-comparisons
grep -q "approximate lookups" "$work/out" && fail "--exact-tree-comparisons compiled approximate lookups"
ok "$veil" simulate --artifacts "$work/xgb_exact" --input "$work/test.csv" --out "$work/xgb_plain.csv"
ok "$veil" simulate --artifacts "$work/xgb_exact" --input "$work/test.csv" --out "$work/xgb_noisy.csv" --fhe-noise
cmp -s "$work/xgb_plain.csv" "$work/xgb_noisy.csv" || fail "--fhe-noise changed a tree ensemble's predictions"
ok "$veil" simulate --artifacts "$work/mlp" --input "$work/test.csv" --out "$work/mlp_a.csv" --fhe-noise --seed 7
ok "$veil" simulate --artifacts "$work/mlp" --input "$work/test.csv" --out "$work/mlp_b.csv" --fhe-noise --seed 7
cmp -s "$work/mlp_a.csv" "$work/mlp_b.csv" || fail "--fhe-noise with one seed gave two different answers"
refused "fhe-noise" "$veil" simulate --artifacts "$work/mlp" --input "$work/test.csv" --out "$work/mlp_c.csv" --seed 7

# Network lookups read neighbours by default where that is cheaper (the breast_cancer MLP);
# --exact-network-reads compiles none.
ok "$veil" inspect "$work/mlp/server.zip"
grep -q "approximate lookups: 16 PBS" "$work/out" || fail "the default MLP circuit has no approximate lookups"
ok "$veil" compile --model "$fixtures/models/mlp_breast_cancer.onnx" --calibration "$work/calib.csv" --out "$work/mlp_exact" \
  --exact-network-reads
grep -q "approximate lookups" "$work/out" && fail "--exact-network-reads compiled approximate lookups"
ok "$veil" inspect "$work/mlp_exact/server.zip"
grep -q "approximate lookups" "$work/out" && fail "--exact-network-reads compiled approximate lookups"

# Automatic tree input bits: the XGBoost model fits the 4-bit set (see quantize_test).
ok "$veil" compile --model "$fixtures/models/xgb_breast_cancer.json" --calibration "$work/calib.csv" --out "$work/xgb_auto" --auto-tree-bits
grep -q "(4-bit: " "$work/out" || fail "--auto-tree-bits: expected 4-bit lookups, got: $(grep lookups "$work/out")"

# Error paths.
refused "excludes" "$veil" compile --model "$fixtures/models/xgb_breast_cancer.json" --calibration "$work/calib.csv" --out "$work/xgb_both" --auto-tree-bits --n-bits 4
refused "exists already" "$veil" compile --model "$fixtures/models/logreg_breast_cancer.json" --calibration "$work/calib.csv" --out "$work/logreg"
refused "required" "$veil" compile --model "$fixtures/models/logreg_breast_cancer.json"
refused "columns\|features" "$veil" encrypt --client "$work/logreg" --keys "$work/logreg/keys" --input "$fixtures/data/breast_cancer_test.csv" --out "$work/bad.enc"
# Files of one model with the artifacts of another.
refused "model" "$veil" run --server "$work/xgb" --evaluation-keys "$work/logreg/keys/evaluation.keys" --input "$work/logreg/x.enc" --out "$work/bad.enc"
refused "model" "$veil" run --server "$work/logreg" --evaluation-keys "$work/logreg/keys/evaluation.keys" --input "$work/xgb/x.enc" --out "$work/bad.enc"
refused "model" "$veil" decrypt --client "$work/logreg" --keys "$work/logreg/keys" --input "$work/xgb/y.enc" --out "$work/bad.csv"
# Corrupted and truncated files.
cp "$work/xgb/keys/evaluation.keys" "$work/corrupt.keys"
printf '\xff\xff\xff\xff' | dd of="$work/corrupt.keys" bs=1 seek=5000 conv=notrunc 2>/dev/null
refused "checksum\|corrupt" "$veil" run --server "$work/xgb" --evaluation-keys "$work/corrupt.keys" --input "$work/xgb/x.enc" --out "$work/bad.enc"
head -c 1000 "$work/xgb/x.enc" >"$work/truncated.enc"
refused "truncated\|present" "$veil" run --server "$work/xgb" --evaluation-keys "$work/xgb/keys/evaluation.keys" --input "$work/truncated.enc" --out "$work/bad.enc"
head -c $(($(stat -c %s "$work/xgb/server.zip") / 2)) "$work/xgb/server.zip" >"$work/server_trunc.zip"
refused "zip\|server" "$veil" run --server "$work/server_trunc.zip" --evaluation-keys "$work/xgb/keys/evaluation.keys" --input "$work/xgb/x.enc" --out "$work/bad.enc"
echo "not a veil file" >"$work/garbage.bin"
refused "not a Veil file" "$veil" inspect "$work/garbage.bin"
[ -e "$work/bad.enc" ] && fail "a failed run left an output file behind"

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "cli: all checks passed"
