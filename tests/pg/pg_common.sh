# shellcheck shell=bash
# Shared by pg_start.sh, pg_stop.sh and pg_restart.sh: where the private
# test server lives and how to run its tools. Sourced, not executed.
#
# STATE_DIR (the test build directory) holds:
#   pg_conninfo  the libpq conninfo the tests read (written last, on success)
#   pg_state     PGDATA=..., BINDIR=..., PORT=... of the running server

# Never let the caller's environment point our tools elsewhere (a PGHOST
# or PGPORT aimed at the system cluster, a service file, ...).
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGSERVICE \
    PGSERVICEFILE PGOPTIONS PGSSLMODE PGDATA

# The newest installed server: /usr/lib/postgresql/<version>/bin (Debian),
# or OBX_PG_BINDIR when set.
pg_find_bindir() {
    if [[ -n ${OBX_PG_BINDIR:-} ]]; then
        printf '%s\n' "$OBX_PG_BINDIR"
        return
    fi
    local d best="" bestv=-1 v
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl ]] || continue
        v=${d#/usr/lib/postgresql/}
        v=${v%%/*}
        [[ $v =~ ^[0-9]+$ ]] || continue
        if ((v > bestv)); then
            bestv=$v
            best=$d
        fi
    done
    [[ -n $best ]] || return 1
    printf '%s\n' "$best"
}

# Run a server tool as the owner of the data directory: `postgres` when we
# are root (PostgreSQL refuses to run as root), ourselves otherwise.
pg_as_owner() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# pg_ctl stop for the server recorded in $1/pg_state, if it runs.
pg_stop_recorded() {
    local state=$1/pg_state PGDATA_DIR="" BINDIR="" ROOT=""
    [[ -f $state ]] || return 0
    # shellcheck disable=SC1090
    source "$state"
    if [[ -n $PGDATA_DIR && -f $PGDATA_DIR/postmaster.pid ]]; then
        pg_as_owner "$BINDIR/pg_ctl" stop -D "$PGDATA_DIR" -m immediate \
            -w -t 30 >/dev/null 2>&1 || true
    fi
    if [[ -n $ROOT && -d $ROOT && $ROOT == */obx-pg-* ]]; then
        rm -rf -- "$ROOT"
    fi
    rm -f -- "$state" "$1/pg_conninfo"
}
