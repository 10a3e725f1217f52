#!/usr/bin/env bash
# Stop the private nats-server recorded in STATE_DIR/nats_state (started by
# nats_start.sh) and remove its directory.
#
#   tests/nats/nats_stop.sh STATE_DIR
set -euo pipefail
STATE_DIR=${1:?usage: nats_stop.sh STATE_DIR}
state=$STATE_DIR/nats_state
[[ -f $state ]] || exit 0
ROOT="" PID=""
# shellcheck disable=SC1090
source "$state"
if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$PID" 2>/dev/null || true
fi
if [[ -n $ROOT && -d $ROOT && $ROOT == */obx-nats-* ]]; then
    rm -rf -- "$ROOT"
fi
rm -f -- "$state" "$STATE_DIR/nats_url"
