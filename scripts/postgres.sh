#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and demos: loopback only, fixed high port,
# data under /tmp, trust authentication (nothing in it is real). Uses the Debian server
# binaries that scripts/system-deps.sh installs; installs nothing itself.
#
#   scripts/postgres.sh start    # idempotent; prints the DSN on stdout
#   scripts/postgres.sh dsn      # prints the DSN
#   scripts/postgres.sh status   # exit 0 when running
#   scripts/postgres.sh stop     # stops the server and deletes the data directory
#
# Environment: JOINEDUP_PG_PORT (default 55432), JOINEDUP_PG_DIR (default /tmp/joinedup-pg-PORT).
set -euo pipefail
PORT=${JOINEDUP_PG_PORT:-55432}
DIR=${JOINEDUP_PG_DIR:-/tmp/joinedup-pg-$PORT}
DB=joinedup
DSN="postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  echo "postgres.sh: PostgreSQL server binaries not found (run scripts/system-deps.sh)" >&2
  exit 2
fi

# initdb and the server refuse to run as root: run them as the 'postgres' user then.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    (cd /tmp && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

running() { as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

psql_q() { "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAq "$@"; }

start() {
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; fi
  # Several test sessions may start it at once: one at a time.
  exec 9>"$DIR.lock"
  flock 9
  if ! [ -f "$DIR/data/PG_VERSION" ]; then
    as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; exit 1; }
  fi
  if ! running; then
    # 9>&-: the server must not inherit (and hold forever) the lock.
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start 9>&- \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR/data -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      >/dev/null || { tail -n 20 "$DIR/server.log" >&2; exit 1; }
  fi
  if [ "$(psql_q -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    psql_q -c "CREATE DATABASE $DB" >/dev/null
  fi
  echo "$DSN"
}

stop() {
  if [ -f "$DIR/data/PG_VERSION" ] && running; then
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
  fi
  rm -rf "$DIR" "$DIR.lock"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  dsn) echo "$DSN" ;;
  status) running ;;
  *) echo "usage: $0 start|stop|status|dsn" >&2; exit 2 ;;
esac
