#!/usr/bin/env bash
# A Veil cluster on this machine, as in production: a throwaway PostgreSQL key store, N
# `veil serve` replicas on loopback ports sharing it, and Debian's nginx in front as the load
# balancer (configuration from deploy/nginx/cluster.conf.template). docs/operations.md says
# how the pieces fit; deploy/ holds the same arrangement for a real host.
#
#   scripts/cluster.sh start --models DIR [--replicas N] [--port PORT] [--state DIR]
#                            [--veil BINARY] [--serve-arg ARG]...
#       starts everything, waits until each replica's /healthz and the balancer answer, and
#       prints the URL clients use as its last line. PORT 0 (default) picks a free port.
#       --serve-arg passes one more option to every `veil serve` (repeat it).
#   scripts/cluster.sh stop [--state DIR]
#       ends what `start` started, by the pids it recorded, and nothing else: nginx (graceful),
#       the replicas (SIGTERM: they drain), PostgreSQL (its data is thrown away).
#   scripts/cluster.sh status [--state DIR]
#       each process, alive or not, and each replica's /healthz.
#   scripts/cluster.sh reload [--state DIR]
#       SIGHUP to every replica: they serve the models added to or replaced in DIR since.
#   scripts/cluster.sh kill-replica I | start-replica I | drain-replica I | restart-postgres
#       faults and repairs, for drills and the chaos test (tests/server/chaos_test.sh):
#       SIGKILL replica I; start it again on its port; SIGTERM it and wait until it has drained
#       and exited; restart PostgreSQL (fast shutdown, same data and port).
#
# STATE_DIR (default ${TMPDIR:-/tmp}/veil-cluster-$UID) holds the pid files, ports, logs
# (logs/replica-I.log, nginx/access.log and error.log), the generated nginx.conf and the
# PostgreSQL state. The store's password reaches the replicas in PGPASSWORD, not on their
# command line. Needs: build/veil (scripts/build.sh), nginx, PostgreSQL's server binaries
# and curl (scripts/deps.sh installs them).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${TMPDIR:-/tmp}/veil-cluster-$(id -u)
command=${1:-}
shift || true
models=
replicas=2
port=0
veil=$repo/build/veil
serve_args=()
index=

starting=0
die() {
  echo "cluster.sh: $*" >&2
  # A start that fails ends what it started so far.
  if [ "$starting" -eq 1 ]; then
    starting=0
    echo "cluster.sh: start failed: stopping what it started" >&2
    stop >/dev/null 2>&1
  fi
  exit 1
}

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 64
}

while [ $# -gt 0 ]; do
  case "$1" in
    --models) models=${2:-}; shift 2 || die "--models needs a directory" ;;
    --replicas) replicas=${2:-}; shift 2 || die "--replicas needs a number" ;;
    --port) port=${2:-}; shift 2 || die "--port needs a number" ;;
    --state) state=${2:-}; shift 2 || die "--state needs a directory" ;;
    --veil) veil=${2:-}; shift 2 || die "--veil needs a path" ;;
    --serve-arg) serve_args+=("${2:-}"); shift 2 || die "--serve-arg needs an argument" ;;
    -h|--help) usage ;;
    [0-9]*) index=$1; shift ;;
    *) die "unknown argument '$1' (see scripts/cluster.sh --help)" ;;
  esac
done

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# The pid in FILE if that process still runs the program NAME (a pid file outliving its
# process must not make us signal whatever reused the number).
pid_of() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
  echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  return 1
}

# Waits until URL/healthz answers 200 (at most SECONDS).
wait_healthy() {
  local url=$1 seconds=$2
  for _ in $(seq $((seconds * 10))); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/healthz")" = "200" ] && return 0
    sleep 0.1
  done
  return 1
}

# Starts replica I on its recorded port (or a free one the first time).
start_replica() {
  local i=$1 p pid
  [ -f "$state/store-url" ] || die "no cluster in $state (start one first)"
  if pid=$(pid_of "$state/replica-$i.pid" "veil"); then die "replica $i already runs (pid $pid)"; fi
  if [ -f "$state/replica-$i.port" ]; then
    p=$(cat "$state/replica-$i.port")
  else
    p=$(free_port) || die "no free port for replica $i"
    echo "$p" >"$state/replica-$i.port"
  fi
  local store_url password
  store_url=$(cat "$state/store-url")
  password=$(cat "$state/store-password")
  read -r -a extra <"$state/serve-args" || true
  # setsid: its own process group, so that a Ctrl-C in this shell reaches it only by `stop`.
  PGPASSWORD=$password setsid "$(cat "$state/veil")" serve --models "$(cat "$state/models")" \
    --listen "127.0.0.1:$p" --store "$store_url" --drain-grace 1 --replica-id "r$i" "${extra[@]}" \
    >>"$state/logs/replica-$i.log" 2>&1 </dev/null &
  echo $! >"$state/replica-$i.pid"
  if ! wait_healthy "http://127.0.0.1:$p" 60; then
    tail -n 5 "$state/logs/replica-$i.log" >&2
    die "replica $i (pid $(cat "$state/replica-$i.pid"), port $p) did not answer /healthz within 60 s; log: $state/logs/replica-$i.log"
  fi
  echo "cluster.sh: replica $i: pid $(cat "$state/replica-$i.pid"), http://127.0.0.1:$p"
}

# Signals replica I and waits (at most SECONDS) until it has exited.
signal_replica() {
  local i=$1 sig=$2 seconds=$3 pid
  pid=$(pid_of "$state/replica-$i.pid" "veil") || { echo "cluster.sh: replica $i is not running" >&2; return 0; }
  kill "-$sig" "$pid" 2>/dev/null
  for _ in $(seq $((seconds * 10))); do
    alive "$pid" || { rm -f "$state/replica-$i.pid"; return 0; }
    sleep 0.1
  done
  echo "cluster.sh: replica $i (pid $pid) still runs $seconds s after SIG$sig: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null
  rm -f "$state/replica-$i.pid"
}

start() {
  [ -n "$models" ] || die "start needs --models DIR (a directory of compiled models, as for veil serve --models)"
  [ -d "$models" ] || die "--models $models is not a directory"
  case "$replicas" in ''|*[!0-9]*) die "--replicas '$replicas' is not a number" ;; esac
  [ "$replicas" -ge 1 ] && [ "$replicas" -le 32 ] || die "--replicas must be in [1, 32], got $replicas"
  case "$port" in ''|*[!0-9]*) die "--port '$port' is not a number" ;; esac
  [ "$port" -le 65535 ] || die "--port $port is above 65535"
  [ -x "$veil" ] || die "no veil binary at $veil (run scripts/build.sh, or give --veil)"
  local nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  [ -x "$nginx" ] || die "no nginx (install Debian's: apt-get install nginx, or scripts/deps.sh)"
  command -v curl >/dev/null || die "no curl (apt-get install curl)"
  # A state directory of an earlier cluster is reused once nothing of it runs; any other
  # directory that is not empty is not ours to empty.
  if [ -d "$state" ] && [ -n "$(ls -A "$state" 2>/dev/null)" ]; then
    [ -f "$state/veil-cluster-state" ] || die "--state $state is not empty and not a cluster.sh state directory"
    local f
    for f in "$state"/replica-*.pid "$state/nginx/nginx.pid"; do
      [ -f "$f" ] && alive "$(cat "$f")" && die "a cluster already runs from $state: scripts/cluster.sh stop first"
    done
    "$repo/scripts/postgres_test_server.sh" stop "$state/postgres" 2>/dev/null
    rm -rf "${state:?}"/* || die "cannot empty $state"
  fi
  mkdir -p "$state/logs" "$state/nginx/tmp" || die "cannot create $state"
  touch "$state/veil-cluster-state" "$state/started"
  echo "$(cd "$(dirname "$veil")" && pwd)/$(basename "$veil")" >"$state/veil"
  (cd "$models" && pwd) >"$state/models"
  printf '%s ' "${serve_args[@]}" >"$state/serve-args"
  starting=1  # from here on, die() stops what was started

  # The key store. (VEIL_TEST_POSTGRES_URL would make the script use another server.)
  local url
  url=$(env -u VEIL_TEST_POSTGRES_URL "$repo/scripts/postgres_test_server.sh" start "$state/postgres") ||
    die "PostgreSQL did not start: $(cat "$state/postgres/skip_reason" 2>/dev/null)"
  # postgresql://veil:PASSWORD@127.0.0.1:PORT/veil_test: the password goes to PGPASSWORD.
  (umask 077
   echo "$url" | sed -E 's#^(postgresql://[^:]+):[^@]*@#\1@#' >"$state/store-url"
   echo "$url" | sed -E 's#^postgresql://[^:]+:([^@]*)@.*#\1#' >"$state/store-password")
  echo "cluster.sh: PostgreSQL: $(cat "$state/store-url")"

  local i
  for i in $(seq "$replicas"); do
    start_replica "$i"
  done

  # The balancer.
  local lb_port=$port servers="" job_routes="" user_line=""
  # Passive health: failures (refused connection, broken answer, 502/503/504) within
  # fail_timeout that mark a replica down for fail_timeout. VEIL_LB_MAX_FAILS and
  # VEIL_LB_FAIL_TIMEOUT (seconds) override them, for experiments.
  local max_fails=${VEIL_LB_MAX_FAILS:-3} fail_timeout=${VEIL_LB_FAIL_TIMEOUT:-2}
  if [ "$lb_port" -eq 0 ]; then lb_port=$(free_port) || die "no free port for nginx"; fi
  for i in $(seq "$replicas"); do
    servers+="    server 127.0.0.1:$(cat "$state/replica-$i.port") max_fails=$max_fails fail_timeout=${fail_timeout}s;"$'\n'
    job_routes+="    ~^/v1/jobs/r$i- 127.0.0.1:$(cat "$state/replica-$i.port");"$'\n'
  done
  # As root nginx's workers run as nobody: they write request bodies into a directory of
  # their own under TMPDIR (the state directory may sit below one nobody cannot enter).
  local body_temp=$state/nginx/tmp
  if [ "$(id -u)" -eq 0 ]; then
    user_line="user nobody nogroup;"
    body_temp=$(mktemp -d "${TMPDIR:-/tmp}/veil-nginx.XXXXXX") || die "cannot create a temporary directory for nginx"
    echo "$body_temp" >"$state/nginx-tmp"
    chown nobody:nogroup "$body_temp" && chmod 700 "$body_temp" || die "cannot give $body_temp to nobody"
  fi
  local job_timeout=600
  sed -e "s#@STATE_DIR@#$state#g" -e "s#@TEMP_DIR@#$body_temp#g" -e "s#@LISTEN@#127.0.0.1:$lb_port#g" -e "s#@USER_LINE@#$user_line#" \
      -e "s#@MAX_KEY_BYTES@#1g#" -e "s#@MAX_INPUT_BYTES@#64m#" -e "s#@TRIES@#$((replicas + 1))#" \
      -e "s#@JOB_TIMEOUT@#$job_timeout#g" -e "s#@MAX_FAILS@#$max_fails#" -e "s#@FAIL_TIMEOUT@#${fail_timeout}s#g" \
      "$repo/deploy/nginx/cluster.conf.template" |
    awk -v servers="$servers" -v jobs="$job_routes" \
      '{ if ($0 == "@UPSTREAM_SERVERS@") printf "%s", servers; else if ($0 == "@JOB_ROUTES@") printf "%s", jobs; else print }' \
      >"$state/nginx/nginx.conf"
  if ! "$nginx" -t -q -e "$state/nginx/error.log" -p "$state/nginx" -c "$state/nginx/nginx.conf" 2>"$state/logs/nginx-test.log"; then
    cat "$state/logs/nginx-test.log" >&2
    die "nginx refuses the generated configuration $state/nginx/nginx.conf"
  fi
  "$nginx" -e "$state/nginx/error.log" -p "$state/nginx" -c "$state/nginx/nginx.conf" 2>>"$state/logs/nginx-start.log" ||
    { cat "$state/logs/nginx-start.log" >&2; die "nginx did not start"; }
  echo "$lb_port" >"$state/port"
  local lb="http://127.0.0.1:$lb_port"
  if ! wait_healthy "$lb" 30 || [ "$(curl -s -o /dev/null -w '%{http_code}' "$lb/v1/models")" != "200" ]; then
    die "nginx on $lb does not pass requests to the replicas; see $state/nginx/error.log"
  fi
  starting=0
  echo "$lb" >"$state/url"
  echo "cluster.sh: nginx: pid $(cat "$state/nginx/nginx.pid"), $replicas replicas behind it; stop with: scripts/cluster.sh stop${state:+ --state $state}"
  echo "$lb"
}

stop() {
  [ -d "$state" ] || { echo "cluster.sh: nothing started from $state"; return 0; }
  local pid nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  if pid=$(pid_of "$state/nginx/nginx.pid" "nginx"); then
    kill -QUIT "$pid" 2>/dev/null  # graceful: finishes the requests it has
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  local f i
  for f in "$state"/replica-*.pid; do
    [ -f "$f" ] || continue
    i=${f##*/replica-}
    i=${i%.pid}
    signal_replica "$i" TERM 40
  done
  "$repo/scripts/postgres_test_server.sh" stop "$state/postgres" 2>/dev/null
  if [ -f "$state/nginx-tmp" ]; then
    case "$(cat "$state/nginx-tmp")" in */veil-nginx.*) rm -rf "$(cat "$state/nginx-tmp")" ;; esac
    rm -f "$state/nginx-tmp"
  fi
  rm -f "$state"/replica-*.pid "$state/started" "$state/url" "$state/store-password"
  echo "cluster.sh: stopped (logs kept in $state/logs and $state/nginx)"
}

status() {
  [ -f "$state/started" ] || { echo "cluster.sh: no cluster in $state"; return 1; }
  local pid p f i code
  if pid=$(pid_of "$state/nginx/nginx.pid" "nginx"); then
    echo "nginx: pid $pid, $(cat "$state/url" 2>/dev/null)"
  else
    echo "nginx: not running"
  fi
  for f in "$state"/replica-*.port; do
    i=${f##*/replica-}
    i=${i%.port}
    p=$(cat "$f")
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$p/healthz")
    if pid=$(pid_of "$state/replica-$i.pid" "veil"); then
      echo "replica $i: pid $pid, http://127.0.0.1:$p, /healthz $code"
    else
      echo "replica $i: not running (port $p)"
    fi
  done
  if [ -f "$state/postgres/url" ]; then echo "postgresql: $(cat "$state/store-url")"; else echo "postgresql: not running"; fi
}

need_index() {
  case "$index" in ''|*[!0-9]*) die "$command needs a replica number (1..N)" ;; esac
  [ -f "$state/replica-$index.port" ] || die "no replica $index in $state"
}

case "$command" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  kill-replica) need_index; signal_replica "$index" KILL 10 ;;
  drain-replica) need_index; signal_replica "$index" TERM 40 ;;
  start-replica) need_index; start_replica "$index" ;;
  reload)
    [ -f "$state/started" ] || die "no cluster in $state"
    for f in "$state"/replica-*.pid; do
      [ -f "$f" ] || continue
      if pid=$(pid_of "$f" "veil"); then kill -HUP "$pid" && echo "cluster.sh: SIGHUP to pid $pid"; fi
    done ;;
  restart-postgres)
    [ -f "$state/started" ] || die "no cluster in $state"
    "$repo/scripts/postgres_test_server.sh" restart "$state/postgres" || die "PostgreSQL did not restart"
    echo "cluster.sh: PostgreSQL restarted" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
