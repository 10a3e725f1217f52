#!/usr/bin/env bash
# The quick start: installs what is needed, builds, writes 20 demo orders and
# their events into a fresh SQLite outbox, and relays the events once to the
# stdout broker, which prints them as JSON lines.
#
#   bash scripts/quickstart.sh
#
# Everything it writes lands in ./quickstart-run/ (made anew each run):
# plugins.conf, the outbox database, and events.jsonl, a copy of the output.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$ROOT/build
RUN_DIR=$ROOT/quickstart-run
ORDERS=20
RELAY=$BUILD_DIR/outbox-relay   # finds its plugins beside it, in build/plugins

step="install and build"
on_exit() {
    local rc=$?
    ((rc == 0)) || echo "quickstart: FAILED at step: $step (exit $rc)" >&2
}
trap on_exit EXIT

bash "$ROOT/scripts/build.sh" "$BUILD_DIR"

rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
cp "$ROOT/plugins.conf" "$RUN_DIR/plugins.conf"
cd "$RUN_DIR"

echo
step="outbox-relay demo"
echo "== outbox-relay demo: $ORDERS orders, each written with its events in one transaction"
"$RELAY" demo -c plugins.conf -n "$ORDERS"

echo
step="outbox-relay run --once"
echo "== outbox-relay run --once: relay every pending event to stdout, then exit"
"$RELAY" run -c plugins.conf --once | tee events.jsonl

events=$(grep -c '^[[:space:]]*{' events.jsonl || true)
echo
if ((events < ORDERS)); then
    step="count the events: $ORDERS orders written but only $events events relayed (see $RUN_DIR)"
    exit 1
fi
echo "quickstart: $ORDERS orders written, $events events relayed as JSON lines (copy in quickstart-run/events.jsonl)"
