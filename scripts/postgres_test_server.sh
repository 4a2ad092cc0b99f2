#!/usr/bin/env bash
# A throwaway PostgreSQL server for the key-store tests.
#
#   postgres_test_server.sh start [--skip-ok] [STATE_DIR]   prints the connection URL
#   postgres_test_server.sh stop [STATE_DIR]
#   postgres_test_server.sh restart [STATE_DIR]   fast shutdown, then up again on the same port
#
# `start` creates a cluster with Debian's initdb + pg_ctl in a fresh temporary directory,
# listening on 127.0.0.1 on a free port (and on a unix socket inside that directory), with a
# random password (scram-sha-256) for user `veil` and a database `veil_test`. When running as
# root it runs the server as the `postgres` user, which then owns the directory. Durability
# is switched off (fsync=off): the data is thrown away by `stop`.
#
# STATE_DIR (default ${TMPDIR:-/tmp}/veil-postgres-test-$UID) receives:
#   url          the connection URL (mode 600), when the server runs;
#   skip_reason  why no server could be started (no binaries, no permission, ...);
#   cluster      the temporary directory of the cluster, for `stop`.
# Exit status of `start`: 0 when the server runs; 2 when it could not be started (reason on
# stderr and in STATE_DIR/skip_reason), or 0 then too with --skip-ok: CTest's fixture uses it,
# so that the PostgreSQL tests run and skip with the reason instead of not running at all.
# If VEIL_TEST_POSTGRES_URL is set, `start` does nothing: the tests use that server.
# VEIL_PG_BINDIR names the directory of initdb / pg_ctl / postgres when they are elsewhere.
set -uo pipefail

command=${1:-}
shift || true
skip_ok=0
if [ "${1:-}" = "--skip-ok" ]; then
  skip_ok=1
  shift
fi
state_dir=${1:-${TMPDIR:-/tmp}/veil-postgres-test-$(id -u)}

runner=()
bindir=

find_binaries() {
  local candidate
  if [ -n "${VEIL_PG_BINDIR:-}" ]; then
    bindir=$VEIL_PG_BINDIR
  else
    # The newest Debian-installed major version first.
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
      if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
        bindir=$candidate
        break
      fi
    done
    if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
      bindir=$(dirname "$(command -v initdb)")
    fi
  fi
  [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/pg_ctl" ] && [ -x "$bindir/postgres" ]
}

# initdb and postgres refuse to run as root: run them as `postgres` then.
find_runner() {
  if [ "$(id -u)" -ne 0 ]; then
    runner=()
    return 0
  fi
  if ! getent passwd postgres >/dev/null 2>&1; then
    return 1
  fi
  if command -v runuser >/dev/null 2>&1; then
    runner=(runuser -u postgres --)
  else
    runner=(su -s /bin/sh postgres -c '"$0" "$@"')
  fi
}

as_server_user() {
  if [ ${#runner[@]} -eq 0 ]; then
    "$@"
  else
    "${runner[@]}" "$@"
  fi
}

skip() {
  echo "$1" >"$state_dir/skip_reason"
  echo "postgres_test_server.sh: cannot start a PostgreSQL server: $1" >&2
  [ -n "${cluster:-}" ] && stop_cluster "$cluster"
  if [ "$skip_ok" -eq 1 ]; then exit 0; fi
  exit 2
}

stop_cluster() {
  local dir=$1
  case "$dir" in
    */veil-pg.*) ;;
    *) return 0 ;;  # never remove anything this script did not create
  esac
  if [ -f "$dir/data/postmaster.pid" ] && [ -n "$bindir" ]; then
    (cd "$dir" && as_server_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1)
  fi
  rm -rf "$dir"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  mkdir -p "$state_dir"
  rm -f "$state_dir/url" "$state_dir/skip_reason"
  if [ -n "${VEIL_TEST_POSTGRES_URL:-}" ]; then
    echo "postgres_test_server.sh: VEIL_TEST_POSTGRES_URL is set: the tests use that server" >&2
    exit 0
  fi
  # A cluster left over by an interrupted run.
  if [ -f "$state_dir/cluster" ]; then
    find_binaries || true
    find_runner || true
    stop_cluster "$(cat "$state_dir/cluster")"
    rm -f "$state_dir/cluster"
  fi
  cluster=
  if [ -n "${VEIL_PG_BINDIR:-}" ]; then
    find_binaries || skip "VEIL_PG_BINDIR=$VEIL_PG_BINDIR holds no initdb, pg_ctl and postgres"
  else
    find_binaries || skip "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin or on PATH; install Debian's postgresql package"
  fi
  find_runner || skip "running as root, and there is no 'postgres' user to run the server as (initdb and postgres refuse root)"

  cluster=$(mktemp -d "${TMPDIR:-/tmp}/veil-pg.XXXXXX") || skip "cannot create a temporary directory"
  echo "$cluster" >"$state_dir/cluster"
  chmod 700 "$cluster"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$cluster" || skip "cannot give $cluster to the postgres user"
  fi
  cd "$cluster" || skip "cannot enter $cluster"

  local password
  password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  (umask 077 && echo "$password" >"$cluster/pwfile")
  [ "$(id -u)" -eq 0 ] && chown postgres: "$cluster/pwfile"
  if ! as_server_user "$bindir/initdb" -D "$cluster/data" -U veil --pwfile="$cluster/pwfile" -E UTF8 \
      --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$cluster/initdb.log" 2>&1; then
    skip "initdb failed: $(tail -n 3 "$cluster/initdb.log" | tr '\n' ' ')"
  fi
  rm -f "$cluster/pwfile"

  local port attempt started=0
  for attempt in 1 2 3 4 5 6 7 8; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_in_use "$port" && continue
    if as_server_user "$bindir/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 30 \
        -o "-p $port -k $cluster -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null 2>&1; then
      started=1
      break
    fi
    # Lost a race for the port: try another; any other failure is final.
    grep -q "could not bind\|Address already in use" "$cluster/server.log" 2>/dev/null || break
  done
  [ "$started" -eq 1 ] || skip "pg_ctl start failed: $(tail -n 3 "$cluster/server.log" 2>/dev/null | tr '\n' ' ')"

  if ! as_server_user "$bindir/psql" -X -q -h "$cluster" -p "$port" -U veil -d postgres \
      -c "CREATE DATABASE veil_test" >"$cluster/createdb.log" 2>&1; then
    skip "creating the test database failed: $(tail -n 3 "$cluster/createdb.log" | tr '\n' ' ')"
  fi

  local url="postgresql://veil:$password@127.0.0.1:$port/veil_test"
  (umask 077 && echo "$url" >"$state_dir/url")
  echo "$url"
}

stop() {
  [ -f "$state_dir/cluster" ] || exit 0
  find_binaries || true
  find_runner || true
  stop_cluster "$(cat "$state_dir/cluster")"
  rm -f "$state_dir/cluster" "$state_dir/url" "$state_dir/skip_reason"
}

# The same cluster, data and port, stopped (fast: open sessions are cut) and started again:
# what a PostgreSQL restart or failover looks like to its clients (scripts/cluster.sh, the
# chaos test). pg_ctl restart reuses the options of the last start (postmaster.opts).
restart() {
  [ -f "$state_dir/cluster" ] || { echo "postgres_test_server.sh: no server started from $state_dir" >&2; exit 2; }
  find_binaries || { echo "postgres_test_server.sh: no PostgreSQL binaries" >&2; exit 2; }
  find_runner || { echo "postgres_test_server.sh: no 'postgres' user to run the server as" >&2; exit 2; }
  local dir
  dir=$(cat "$state_dir/cluster")
  (cd "$dir" && as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 30 restart >/dev/null) ||
    { echo "postgres_test_server.sh: pg_ctl restart failed: $(tail -n 3 "$dir/server.log" 2>/dev/null | tr '\n' ' ')" >&2; exit 1; }
}

case "$command" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  *)
    echo "usage: $0 start [--skip-ok] [STATE_DIR] | stop [STATE_DIR] | restart [STATE_DIR]" >&2
    exit 64
    ;;
esac
