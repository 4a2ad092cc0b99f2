#!/usr/bin/env bash
# Chaos test of a Veil cluster (scripts/cluster.sh): PostgreSQL, 2 `veil serve` replicas and
# nginx in front, driven by `veil loadtest` (C clients, each with its own keys, every answer
# checked against the clear model) while, one after the other,
#   1. replica 1 is killed with SIGKILL (its requests in flight break off), then restarted;
#   2. PostgreSQL is restarted (fast shutdown: every replica's store connection is cut);
#   3. replica 2 is drained with SIGTERM (finishes its jobs, refuses queued ones, exits), then
#      restarted.
# Each fault waits until more answers have arrived since the previous one, so the faults
# land under load on a slow machine as on a fast one. Passes when no request is lost or
# wrong and the load went on through the last fault (else the faults proved nothing).
#
# The model: the decision tree of tests/fixtures compiled with 4-bit inputs and exact
# comparisons, so that FHE equals the clear model bit for bit (18 PBS per row).
#
# Usage: chaos_test.sh VEIL_BINARY FIXTURES_DIR [CLIENTS REQUESTS_PER_CLIENT [ROWS_PER_REQUEST]]
#   defaults 4 x 12 x 4 rows (the short form scripts/test.sh runs; about a minute on 2
#   cores: several rows a request make the load outlast the faults on an idle machine,
#   where restarting a replica takes longer than 48 one-row requests); the figures in
#   docs/BENCHMARKS.md come from a longer run (8 x 40, one row each). The loadtest report (JSON)
#   and the balancer's retries are printed at the end; CHAOS_KEEP=DIR keeps the logs there.
# Exit 0: passed; 1: failed; 77: skipped (no nginx or no PostgreSQL here; CTest's SKIP).
set -uo pipefail
veil=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
fixtures=$2
clients=${3:-4}
requests=${4:-12}
rows_per_request=${5:-4}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cluster=$repo/scripts/cluster.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/veil-chaos.XXXXXX")
state=$work/cluster
load_pid=

cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null
  "$cluster" stop --state "$state" >/dev/null 2>&1
  if [ -n "${CHAOS_KEEP:-}" ]; then
    mkdir -p "$CHAOS_KEEP" && cp -r "$state/logs" "$state/nginx" "$work/report.json" "$work/loadtest.err" "$CHAOS_KEEP/" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' TERM INT  # a CTest timeout: still end the cluster

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "SKIP: no nginx (scripts/deps.sh installs it)"; exit 77; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 ||
  { echo "SKIP: no PostgreSQL server binaries"; exit 77; }

cut -d, -f1-30 "$fixtures/data/breast_cancer_calib.csv" >"$work/calib.csv"
head -41 "$fixtures/data/breast_cancer_test.csv" | cut -d, -f1-30 >"$work/rows.csv"
"$veil" compile --model "$fixtures/models/tree_breast_cancer.json" --calibration "$work/calib.csv" \
  --out "$work/models/tree" --n-bits 4 --exact-tree-comparisons >"$work/compile.log" 2>&1 ||
  fail "veil compile: $(tail -3 "$work/compile.log")"

"$cluster" start --models "$work/models" --replicas 2 --state "$state" --veil "$veil" >"$work/cluster.log" 2>&1 ||
  fail "scripts/cluster.sh start: $(cat "$work/cluster.log")"
url=$(tail -1 "$work/cluster.log")
case "$url" in http://127.0.0.1:*) ;; *) fail "cluster.sh start did not print the URL last: $(cat "$work/cluster.log")" ;; esac
echo "cluster at $url"

# Successful predictions the balancer has answered so far.
answered() { grep -c '"POST /v1/models/tree/predict HTTP/1.1" 200 ' "$state/nginx/access.log" 2>/dev/null; }
# Waits until N more predictions than at the last call were answered (at most 120 s).
mark=0
wait_answers() {
  local n=$1 target
  target=$((mark + n))
  for _ in $(seq 1200); do
    [ "$(answered)" -ge "$target" ] && { mark=$(answered); return 0; }
    kill -0 "$load_pid" 2>/dev/null || fail "the load ended before the faults were done ($(answered) answers): give more requests"
    sleep 0.1
  done
  fail "no $n more answers within 120 s"
}

"$veil" loadtest --url "$url" --model tree --artifacts "$work/models/tree" --input "$work/rows.csv" \
  --clients "$clients" --requests "$requests" --batch-size "$rows_per_request" --json >"$work/report.json" 2>"$work/loadtest.err" &
load_pid=$!
# The three faults start within the first third of the load, so that it outlasts them on a
# fast machine too (a drain takes seconds, and 4 x 12 requests can finish inside one).
step=$(( clients * requests / 12 > 2 ? clients * requests / 12 : 2 ))

wait_answers "$step"
echo "fault 1 after $(answered) answers: SIGKILL replica 1"
"$cluster" kill-replica 1 --state "$state" || fail "kill-replica 1"
sleep 1
"$cluster" start-replica 1 --state "$state" >/dev/null || fail "start-replica 1"

wait_answers "$step"
echo "fault 2 after $(answered) answers: restart PostgreSQL"
"$cluster" restart-postgres --state "$state" >/dev/null || fail "restart-postgres"

wait_answers "$step"
at_drain=$(answered)
echo "fault 3 after $at_drain answers: drain replica 2 (SIGTERM)"
"$cluster" drain-replica 2 --state "$state" || fail "drain-replica 2"
grep -q '"stopped"\|veil serve: stopped' "$state/logs/replica-2.log" || fail "replica 2 did not drain and stop cleanly"
# The load must have gone on through the drain: still running now, or answered more since it began.
if ! kill -0 "$load_pid" 2>/dev/null && [ "$(answered)" -le "$at_drain" ]; then
  fail "the load ended before the drain proved anything: give more requests"
fi
"$cluster" start-replica 2 --state "$state" >/dev/null || fail "start-replica 2"

wait "$load_pid"
status=$?
load_pid=
cat "$work/report.json"
field() { sed -n "s/^  \"$1\": \\([0-9]*\\),\\{0,1\\}\$/\\1/p" "$work/report.json"; }
retried_by_nginx=$(grep -c 'upstream_status=[0-9]*, ' "$state/nginx/access.log")
echo "nginx retried $retried_by_nginx request(s) on the next replica; loadtest retried $(field retried)"
[ -s "$work/report.json" ] || fail "veil loadtest wrote no report: $(cat "$work/loadtest.err")"
[ "$(field sent)" = "$((clients * requests))" ] || fail "sent $(field sent), expected $((clients * requests))"
[ "$(field lost)" = "0" ] || fail "$(field lost) request(s) lost"
[ "$(field wrong)" = "0" ] || fail "$(field wrong) wrong answer(s)"
[ "$(field answered)" = "$((clients * requests))" ] || fail "answered $(field answered) of $((clients * requests))"
[ "$status" -eq 0 ] || fail "veil loadtest exited with $status"
echo "chaos: $(field answered) of $((clients * requests)) answered, 0 lost, 0 wrong, through SIGKILL, PostgreSQL restart and drain"

# Asynchronous jobs through the balancer: each job's GETs reach the replica holding it.
head -21 "$work/rows.csv" >"$work/rows20.csv"
"$veil" predict --url "$url" --model tree --keys "$work/async_keys" --input "$work/rows20.csv" --out "$work/async.csv" \
  --async --batch-size 5 >"$work/async.log" 2>&1 || fail "veil predict --async through the cluster: $(tail -3 "$work/async.log")"
"$veil" simulate --artifacts "$work/models/tree" --input "$work/rows20.csv" --out "$work/clear.csv" >/dev/null ||
  fail "veil simulate"
cmp -s "$work/async.csv" "$work/clear.csv" || fail "asynchronous predictions through the cluster differ from the clear model"
grep -q 'GET /v1/jobs/r[12]-[0-9a-f]* HTTP/1.1" 200 ' "$state/nginx/access.log" || fail "no job answered through nginx"
echo "async: 20 rows in 4 jobs through nginx, same as the clear model"
