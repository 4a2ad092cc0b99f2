#!/usr/bin/env bash
# `veil serve` and `veil predict` end to end through the binary: serve a compiled logistic
# regression on a free loopback port with the SQLite store, predict through it (fetching the
# client files, making and uploading keys), predict again (keys reused), compare with
# `veil simulate`, stop with SIGTERM; then the error paths, each one line on stderr.
# Usage: cli_serve_test.sh VEIL_BINARY FIXTURES_DIR
set -uo pipefail
veil="$1"
fixtures="$2"
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() {
  if ! "$@" >"$work/out" 2>"$work/err"; then
    fail "expected success: $*"; cat "$work/err" >&2
  fi
}
refused() {
  local want="$1"; shift
  if "$@" >"$work/out" 2>"$work/err"; then fail "expected failure: $*"; return; fi
  if [ "$(wc -l <"$work/err")" -ne 1 ]; then fail "expected one line on stderr: $*"; cat "$work/err" >&2; fi
  if ! grep -qi -- "$want" "$work/err"; then fail "stderr of '$*' does not mention '$want': $(cat "$work/err")"; fi
}

# `veil predict` reports progress before it fails: its error is the last line.
refused_late() {
  local want="$1"; shift
  if "$@" >"$work/out" 2>"$work/err"; then fail "expected failure: $*"; return; fi
  if ! tail -1 "$work/err" | grep -qi -- "$want"; then fail "last line of '$*' does not mention '$want': $(cat "$work/err")"; fi
}

# `veil serve` logs the models it loaded before it fails to listen: its error is the last line.
refused_serve() {
  local want="$1"; shift
  if "$@" >"$work/out" 2>"$work/err"; then fail "expected failure: $*"; return; fi
  if ! tail -1 "$work/err" | grep -q "^veil: error: .*$want"; then fail "last stderr line of '$*' is not an error mentioning '$want': $(cat "$work/err")"; fi
}

cut -d, -f1-30 "$fixtures/data/breast_cancer_calib.csv" >"$work/calib.csv"
head -11 "$fixtures/data/breast_cancer_test.csv" | cut -d, -f1-30 >"$work/test.csv"
ok "$veil" serve --help
ok "$veil" predict --help
ok "$veil" compile --model "$fixtures/models/logreg_breast_cancer.json" --calibration "$work/calib.csv" --out "$work/models/logreg"
ok "$veil" simulate --artifacts "$work/models/logreg" --input "$work/test.csv" --out "$work/expected.csv"

# Waits for `veil serve` to print its URL (SCHEME://127.0.0.1:PORT) in OUT; prints it.
wait_url() {
  local out="$1" scheme="$2" found=
  for _ in $(seq 100); do
    found=$(grep -o "$scheme://127.0.0.1:[0-9]*" "$out" 2>/dev/null | head -1)
    [ -n "$found" ] && break
    sleep 0.1
  done
  echo "$found"
}

"$veil" serve --models "$work/models" --listen 127.0.0.1:0 --store "sqlite:$work/keys.db" >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
url=$(wait_url "$work/serve.out" http)
if [ -z "$url" ]; then
  fail "veil serve did not start"; cat "$work/serve.out" "$work/serve.err" >&2
  exit 1
fi

ok "$veil" predict --url "$url" --model logreg --keys "$work/client" --input "$work/test.csv" --out "$work/y.csv" --batch-size 4
cmp -s "$work/y.csv" "$work/expected.csv" || fail "predictions through the server differ from veil simulate"
grep -q "uploaded" "$work/out" || fail "first predict did not report the key upload: $(cat "$work/out")"
grep -q "batch 3/3" "$work/err" || fail "no progress per batch on stderr: $(cat "$work/err")"
[ "$(stat -c %a "$work/client/server_key.json")" = "600" ] || fail "server_key.json is not mode 600"
[ "$(stat -c %a "$work/client/secret.key")" = "600" ] || fail "secret.key is not mode 600"
ok "$veil" predict --url "$url" --model logreg --keys "$work/client" --input "$work/test.csv" --out "$work/y2.csv" --delete-keys
grep -q "already on the server" "$work/out" || fail "second predict uploaded the keys again: $(cat "$work/out")"
cmp -s "$work/y2.csv" "$work/expected.csv" || fail "second predictions differ"
# The keys were deleted: the next predict uploads them again by itself.
ok "$veil" predict --url "$url" --model logreg --keys "$work/client" --input "$work/test.csv" --out "$work/y3.csv"
grep -q "uploaded" "$work/out" || fail "predict did not upload the keys after they were deleted"

refused "unknown_model" "$veil" predict --url "$url" --model nope --keys "$work/c2" --input "$work/test.csv" --out "$work/n.csv"
refused "columns" "$veil" predict --url "$url" --model logreg --keys "$work/client" --input "$fixtures/data/breast_cancer_test.csv" --out "$work/n.csv"
refused "not HOST:PORT" "$veil" serve --models "$work/models" --listen 8080
refused_serve "cannot listen" "$veil" serve --models "$work/models" --listen "${url#http://}" --store "sqlite:$work/other.db"
refused "no model" "$veil" serve --models "$work" --listen 127.0.0.1:0 --store "sqlite:$work/other.db"
refused "unknown unit" "$veil" serve --models "$work/models" --max-key-bytes 12XB
refused "replica-id" "$veil" serve --models "$work/models" --replica-id "r-1"

grep -q '"msg":"request"' "$work/serve.err" || fail "no request log lines"

# Asynchronous jobs: the same predictions, no connection held during a run.
ok "$veil" predict --url "$url" --model logreg --keys "$work/client" --input "$work/test.csv" --out "$work/ya.csv" --async --batch-size 4
cmp -s "$work/ya.csv" "$work/expected.csv" || fail "predictions through asynchronous jobs differ from veil simulate"
grep -q '"route":"/v1/models/{name}/predict","status":202' "$work/serve.err" || fail "veil predict --async did not submit jobs"
grep -q '"route":"/v1/jobs/{job_id}"' "$work/serve.err" || fail "veil predict --async did not poll its jobs"

# SIGHUP: a model added to the directory is served without a restart; a broken one is not
# and leaves the others served.
cp -r "$work/models/logreg" "$work/models/logreg2"
kill -HUP "$server_pid"
for _ in $(seq 50); do grep -q "SIGHUP: models reloaded" "$work/serve.err" && break; sleep 0.1; done
grep -q "SIGHUP: models reloaded: added logreg2" "$work/serve.err" || fail "SIGHUP did not reload the models: $(tail -3 "$work/serve.err")"
ok "$veil" predict --url "$url" --model logreg2 --keys "$work/client2" --input "$work/test.csv" --out "$work/y4.csv"
cmp -s "$work/y4.csv" "$work/expected.csv" || fail "predictions of the model added by SIGHUP differ"
mkdir -p "$work/models/broken" && for f in client.zip server.zip serialized_processing.json; do echo x >"$work/models/broken/$f"; done
kill -HUP "$server_pid"
for _ in $(seq 50); do grep -q "SIGHUP: reload failed" "$work/serve.err" && break; sleep 0.1; done
grep -q "SIGHUP: reload failed, still serving" "$work/serve.err" || fail "a broken model directory did not fail the reload: $(tail -3 "$work/serve.err")"
ok "$veil" predict --url "$url" --model logreg2 --keys "$work/client2" --input "$work/test.csv" --out "$work/y5.csv"
rm -rf "$work/models/broken" "$work/models/logreg2"

kill -TERM "$server_pid"
wait "$server_pid"
status=$?
server_pid=
[ "$status" -eq 0 ] || fail "veil serve exited with $status on SIGTERM"
grep -q "stopped" "$work/serve.out" || fail "veil serve did not say it stopped"
refused "cannot connect" "$veil" predict --url "$url" --model logreg --keys "$work/client" --input "$work/test.csv" --out "$work/n.csv"

# HTTPS in the process, with an operator's upload token: veil predict verifies the server
# against the CA it is given and refuses one it cannot verify.
printf 'operator-upload-token-0001\n' >"$work/upload.tokens"
"$veil" serve --models "$work/models" --listen 127.0.0.1:0 --store "sqlite:$work/tls.db" \
  --tls-cert "$fixtures/tls/server.crt" --tls-key "$fixtures/tls/server.key" --upload-token-file "$work/upload.tokens" \
  >"$work/tls.out" 2>"$work/tls.err" &
server_pid=$!
tls_url=$(wait_url "$work/tls.out" https)
if [ -z "$tls_url" ]; then
  fail "veil serve --tls-cert did not start"; cat "$work/tls.out" "$work/tls.err" >&2
else
  refused_late "upload_token_required" "$veil" predict --url "$tls_url" --model logreg --keys "$work/tls_client" \
    --input "$work/test.csv" --out "$work/t.csv" --ca-cert "$fixtures/tls/server.crt"
  ok "$veil" predict --url "$tls_url" --model logreg --keys "$work/tls_client" --input "$work/test.csv" --out "$work/t.csv" \
    --ca-cert "$fixtures/tls/server.crt" --upload-token-file "$work/upload.tokens"
  cmp -s "$work/t.csv" "$work/expected.csv" || fail "predictions over HTTPS differ"
  refused_late "certificate" "$veil" predict --url "$tls_url" --model logreg --keys "$work/tls_client" \
    --input "$work/test.csv" --out "$work/t.csv" --ca-cert "$fixtures/tls/other.crt"
  # A client copy of serialized_processing.json that is not what the server publishes.
  sed -i 's/"scale": 0\./"scale": 1./' "$work/tls_client/serialized_processing.json"
  refused_late "SHA-256" "$veil" predict --url "$tls_url" --model logreg --keys "$work/tls_client" \
    --input "$work/test.csv" --out "$work/t.csv" --ca-cert "$fixtures/tls/server.crt"
  kill -TERM "$server_pid"
  wait "$server_pid" || fail "veil serve --tls-cert exited with an error on SIGTERM"
fi
server_pid=

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "cli serve/predict: all checks passed"
