#!/usr/bin/env bash
# The page of `veil serve` in headless Chromium (page_test.mjs): an XGBoost fixture, served
# with the files of build/web; the label the page shows must be the C++ client's for the same
# row. puppeteer-core is installed from npm into BUILD/web-test on first use. Writes the
# screenshot to WEB_DIR/page-test.png. Usage: page_test.sh VEIL FIXTURES WEB_DIR
set -euo pipefail
veil=$1 fixtures=$2 web=$3
here=$(cd "$(dirname "$0")" && pwd)
command -v chromium >/dev/null || { echo "no chromium (scripts/deps.sh installs it)" >&2; exit 1; }
modules="$web/../web-test"
if [ ! -d "$modules/node_modules/puppeteer-core" ]; then
  mkdir -p "$modules"
  # The one thing fetched from outside Debian: skipped (77), saying so, where npm cannot.
  if ! command -v npm >/dev/null || ! npm install --prefix "$modules" --no-audit --no-fund --silent puppeteer-core >/dev/null; then
    echo "SKIPPED: cannot install puppeteer-core from npm here, so the page is not driven in Chromium" >&2
    exit 77
  fi
fi
source "$here/common.sh"

"$veil" compile --model "$fixtures/models/xgb_breast_cancer.json" --calibration "$fixtures/data/breast_cancer_calib.csv" \
  --out "$work/models/xgb" >/dev/null
# One test row (without its target) and the C++ client's label for it.
row=$(sed -n 2p "$fixtures/data/breast_cancer_test.csv" | cut -d, -f1-30)
echo "$row" > "$work/row.csv"
"$veil" keygen --client "$work/models/xgb" --keys "$work/keys" >/dev/null 2>"$work/keygen.log"
"$veil" encrypt --client "$work/models/xgb" --keys "$work/keys" --input "$work/row.csv" --out "$work/x.enc" >/dev/null
"$veil" run --server "$work/models/xgb" --evaluation-keys "$work/keys/evaluation.keys" --input "$work/x.enc" --out "$work/y.enc" >/dev/null
"$veil" decrypt --client "$work/models/xgb" --keys "$work/keys" --input "$work/y.enc" --out "$work/p.csv" >/dev/null
expected=$(sed -n 2p "$work/p.csv" | cut -d, -f1)

cors=http://localhost:8000
start_server --web "$web" --cors-origin "$cors"
# The page's headers: its policy, and the .wasm's type.
headers=$(curl -sfI "http://127.0.0.1:$port/models/xgb/")
grep -qi "^content-security-policy: default-src 'none'; script-src 'self' 'wasm-unsafe-eval'" <<<"$headers" ||
  { echo "the page has no Content-Security-Policy: $headers" >&2; exit 1; }
curl -sfI "http://127.0.0.1:$port/web/veil-client-wasm.wasm" | grep -qi "^content-type: application/wasm" ||
  { echo "the .wasm is not served as application/wasm" >&2; exit 1; }
status=$(curl -s --path-as-is -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/web/../CMakeLists.txt")
[ "$status" = 404 ] || { echo "a path outside the web files answered $status" >&2; exit 1; }

# CORS: the configured origin's preflight is answered and its requests get the header;
# another origin gets none.
preflight=$(curl -s -i -X OPTIONS -H "Origin: $cors" -H "Access-Control-Request-Method: POST" \
  -H "Access-Control-Request-Headers: authorization, x-veil-key-id" "http://127.0.0.1:$port/v1/models/xgb/predict")
grep -q "^HTTP/1.1 204" <<<"$preflight" && grep -qi "^access-control-allow-headers: .*X-Veil-Key-Id" <<<"$preflight" ||
  { echo "no CORS preflight answer: $preflight" >&2; exit 1; }
curl -s -i -H "Origin: $cors" "http://127.0.0.1:$port/v1/models" | grep -qi "^access-control-allow-origin: $cors" ||
  { echo "no Access-Control-Allow-Origin for $cors" >&2; exit 1; }
if curl -s -i -H "Origin: http://evil.example" "http://127.0.0.1:$port/v1/models" | grep -qi "^access-control-allow-origin"; then
  echo "CORS header sent to an origin not allowed" >&2; exit 1
fi

# Run from beside node_modules: an ES module resolves its imports from where it lies.
cp "$here/page_test.mjs" "$modules/"
node "$modules/page_test.mjs" "http://127.0.0.1:$port" xgb "$row" "$expected" "$web/page-test.png" ||
  { echo "--- veil serve log:" >&2; tail -20 "$work/serve.log" >&2; exit 1; }
