#!/usr/bin/env bash
# Start a private PostgreSQL for the tests: its own temp directory (data,
# unix socket, log), its own free TCP port on 127.0.0.1 (never 5432, never
# the system cluster), wal_level=logical for the WAL store, fsync off for
# speed. Writes STATE_DIR/pg_conninfo when the server accepts connections.
#
#   tests/pg/pg_start.sh STATE_DIR
#
# Exits non-zero (and the tests that need the server fail) when it cannot
# start. A server left over from an interrupted run is stopped first.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/pg/pg_common.sh
source "$here/pg_common.sh"

STATE_DIR=${1:?usage: pg_start.sh STATE_DIR}
mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)
pg_stop_recorded "$STATE_DIR"

die() {
    echo "pg_start.sh: $*" >&2
    exit 1
}

BINDIR=$(pg_find_bindir) ||
    die "no PostgreSQL server found in /usr/lib/postgresql/*/bin (install the 'postgresql' package: scripts/deps.sh)"
if ((EUID == 0)); then
    getent passwd postgres >/dev/null || die "running as root but there is no 'postgres' user"
    command -v runuser >/dev/null || die "running as root needs runuser (util-linux)"
fi

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/obx-pg-XXXXXX")
chmod 0755 "$ROOT"
((EUID == 0)) && chown postgres: "$ROOT"
PGDATA_DIR=$ROOT/data
LOG=$ROOT/server.log

cleanup_on_error() {
    local rc=$?
    if ((rc != 0)); then
        [[ -f $LOG ]] && tail -n 30 "$LOG" >&2
        [[ -f $PGDATA_DIR/postmaster.pid ]] &&
            pg_as_owner "$BINDIR/pg_ctl" stop -D "$PGDATA_DIR" -m immediate >/dev/null 2>&1
        rm -rf -- "$ROOT"
    fi
}
trap cleanup_on_error EXIT

pg_as_owner "$BINDIR/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$ROOT/initdb.log" 2>&1 ||
    { cat "$ROOT/initdb.log" >&2; die "initdb failed"; }

# A port nobody listens on. The server binds it itself, so a race with
# another process only costs a retry.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

started=false
for attempt in 1 2 3 4 5; do
    PORT=$((20000 + RANDOM % 40000))
    port_free "$PORT" || continue
    cat >"$PGDATA_DIR/postgresql.auto.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$ROOT'
max_connections = 200
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_line_prefix = '%m [%p] '
CONF
    if pg_as_owner "$BINDIR/pg_ctl" start -D "$PGDATA_DIR" -l "$LOG" -w -t 60 >/dev/null; then
        started=true
        break
    fi
    echo "pg_start.sh: start on port $PORT failed (attempt $attempt), retrying" >&2
done
$started || die "the server did not start"

cat >"$STATE_DIR/pg_state" <<STATE
ROOT='$ROOT'
PGDATA_DIR='$PGDATA_DIR'
BINDIR='$BINDIR'
PORT='$PORT'
STATE

"$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$ROOT" -p "$PORT" -U postgres -d postgres \
    -c "CREATE DATABASE obx" >/dev/null || die "CREATE DATABASE failed"

trap - EXIT
# Written last: its presence means the server is up.
printf 'host=%s port=%s user=postgres dbname=obx\n' "$ROOT" "$PORT" >"$STATE_DIR/pg_conninfo"
echo "pg_start.sh: PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on port $PORT, socket and data in $ROOT"
