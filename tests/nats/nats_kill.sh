#!/usr/bin/env bash
# SIGKILL the nats-server recorded in STATE_DIR/nats_state, keeping its
# store directory and port for a restart (OBX_NATS_REUSE=1 nats_start.sh).
#
#   tests/nats/nats_kill.sh STATE_DIR
set -euo pipefail
STATE_DIR=${1:?usage: nats_kill.sh STATE_DIR}
# Running, not a zombie waiting for whoever adopted it to reap it.
alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $st != Z ]]
}
PID=""
# shellcheck disable=SC1091
source "$STATE_DIR/nats_state"
rm -f -- "$STATE_DIR/nats_url"
kill -KILL "$PID"
for _ in $(seq 1 100); do
    alive "$PID" || exit 0
    sleep 0.05
done
echo "nats_kill.sh: pid $PID still there" >&2
exit 1
