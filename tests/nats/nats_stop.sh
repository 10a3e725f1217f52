#!/usr/bin/env bash
# Stop the private nats-server recorded in STATE_DIR/nats_state (started by
# nats_start.sh) and remove its directory.
#
#   tests/nats/nats_stop.sh STATE_DIR
set -euo pipefail
STATE_DIR=${1:?usage: nats_stop.sh STATE_DIR}
state=$STATE_DIR/nats_state
[[ -f $state ]] || exit 0
# Running, not a zombie waiting for whoever adopted it to reap it.
alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $st != Z ]]
}
ROOT="" PID=""
# shellcheck disable=SC1090
source "$state"
if [[ -n $PID ]] && alive "$PID"; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        alive "$PID" || break
        sleep 0.05
    done
    kill -KILL "$PID" 2>/dev/null || true
fi
if [[ -n $ROOT && -d $ROOT && $ROOT == */obx-nats-* ]]; then
    rm -rf -- "$ROOT"
fi
rm -f -- "$state" "$STATE_DIR/nats_url"
