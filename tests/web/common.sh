# Sourced by web_test.sh and page_test.sh (which set veil, fixtures and web): checks that the
# package is built, makes a work directory removed on exit with the server it started, and
# gives start_server.
[ -f "$web/veil-client.mjs" ] || { echo "no $web/veil-client.mjs: run scripts/build_web.sh first" >&2; exit 1; }
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# start_server [ARG...]: `veil serve` of $work/models on a free loopback port ($port), with
# the extra arguments; returns once /healthz answers (fails with the server's log otherwise).
start_server() {
  port=$((20000 + RANDOM % 20000))
  "$veil" serve --models "$work/models" --listen "127.0.0.1:$port" --store "sqlite:$work/keys.db" "$@" \
    > "$work/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  return 1
}
