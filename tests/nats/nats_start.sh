#!/usr/bin/env bash
# Start a private nats-server with JetStream for the tests: its own free
# port on 127.0.0.1 (never 4222), its own store directory, its pid
# recorded. Writes STATE_DIR/nats_url when the server is ready.
#
#   tests/nats/nats_start.sh STATE_DIR [nats-server args...]
#
# Extra args go to nats-server (e.g. --user u --pass p). To restart a
# server on the same port and store directory (after nats_kill.sh), run
# it again with OBX_NATS_REUSE=1: it reads both from STATE_DIR/nats_state.
# Exits non-zero (and the tests that need the server fail) when it cannot
# start.
set -euo pipefail
STATE_DIR=${1:?usage: nats_start.sh STATE_DIR [nats-server args...]}
shift
mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
    echo "nats_start.sh: $*" >&2
    exit 1
}

command -v nats-server >/dev/null ||
    die "nats-server not found (install the 'nats-server' package: scripts/deps.sh)"

ROOT="" PORT="" ARGS=""
if [[ ${OBX_NATS_REUSE:-0} == 1 ]]; then
    [[ -f $STATE_DIR/nats_state ]] || die "no $STATE_DIR/nats_state to reuse"
    # shellcheck disable=SC1091
    source "$STATE_DIR/nats_state"
    ((${#} > 0)) || eval "set -- $ARGS"
else
    bash "$here/nats_stop.sh" "$STATE_DIR"
    ROOT=$(mktemp -d "${TMPDIR:-/tmp}/obx-nats-XXXXXX")
fi
rm -f -- "$STATE_DIR/nats_url"
LOG=$ROOT/server.log

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_on() {
    local port=$1 start_lines
    shift
    start_lines=$( (grep -c 'Server is ready' "$LOG" 2>/dev/null) || true)
    start_lines=${start_lines:-0}
    nats-server -js -a 127.0.0.1 -p "$port" -sd "$ROOT/store" -l "$LOG" "$@" \
        </dev/null >/dev/null 2>&1 &
    PID=$!
    for _ in $(seq 1 200); do
        kill -0 "$PID" 2>/dev/null || return 1
        local now
        now=$( (grep -c 'Server is ready' "$LOG" 2>/dev/null) || true)
        if ((${now:-0} > start_lines)); then
            return 0
        fi
        sleep 0.05
    done
    kill -9 "$PID" 2>/dev/null || true
    return 1
}

started=false
if [[ -n $PORT ]]; then
    # A restart: the same port (the relay reconnects to the URL it knows).
    for _ in $(seq 1 50); do
        port_free "$PORT" && break
        sleep 0.1
    done
    start_on "$PORT" "$@" && started=true
else
    for attempt in 1 2 3 4 5; do
        PORT=$((20000 + RANDOM % 40000))
        port_free "$PORT" || continue
        if start_on "$PORT" "$@"; then
            started=true
            break
        fi
        echo "nats_start.sh: start on port $PORT failed (attempt $attempt), retrying" >&2
    done
fi
if ! $started; then
    [[ -f $LOG ]] && tail -n 20 "$LOG" >&2
    [[ ${OBX_NATS_REUSE:-0} == 1 ]] || rm -rf -- "$ROOT"
    die "nats-server did not start"
fi

ARGS=""
(($# == 0)) || printf -v ARGS '%q ' "$@"
cat >"$STATE_DIR/nats_state" <<STATE
ROOT='$ROOT'
PORT='$PORT'
PID='$PID'
ARGS="$ARGS"
STATE
# Written last: its presence means the server is up.
printf 'nats://127.0.0.1:%s\n' "$PORT" >"$STATE_DIR/nats_url"
echo "nats_start.sh: $(nats-server --version) on port $PORT (pid $PID), store in $ROOT/store"
