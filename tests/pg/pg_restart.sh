#!/usr/bin/env bash
# Restart the private test server (pg_ctl restart -m fast): every client
# connection is cut, as in a real database restart. Used by the tests that
# check the relay recovers by itself.
#
#   tests/pg/pg_restart.sh STATE_DIR [SECONDS_DOWN]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/pg/pg_common.sh
source "$here/pg_common.sh"
STATE_DIR=${1:?usage: pg_restart.sh STATE_DIR [SECONDS_DOWN]}
DOWN=${2:-0}
PGDATA_DIR="" BINDIR="" ROOT=""
# shellcheck disable=SC1091
source "$STATE_DIR/pg_state"
LOG=$ROOT/server.log
if [[ $DOWN == 0 ]]; then
    pg_as_owner "$BINDIR/pg_ctl" restart -D "$PGDATA_DIR" -l "$LOG" -m fast -w -t 60 >/dev/null
else
    pg_as_owner "$BINDIR/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 60 >/dev/null
    sleep "$DOWN"
    pg_as_owner "$BINDIR/pg_ctl" start -D "$PGDATA_DIR" -l "$LOG" -w -t 60 >/dev/null
fi
