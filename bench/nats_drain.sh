#!/usr/bin/env bash
# nats_drain with its servers: starts a private nats-server with JetStream
# (tests/nats/nats_start.sh: a free port, its own store directory) and a
# private PostgreSQL (tests/pg/pg_start.sh: initdb in a temp directory,
# wal_level = logical, fsync off as for the tests), runs
# BUILD_DIR/bench/nats_drain against them, so the raw JetStream publish,
# sqlite -> nats and pg_wal -> nats are measured in the same run, and
# stops both again.
#
#   bench/nats_drain.sh [BUILD_DIR] [nats_drain options]   (default: build)
#
# Use an optimised build for numbers that mean something (scripts/build.sh
# builds RelWithDebInfo):
#   bench/nats_drain.sh build -n 200000 -b 1000
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)
BUILD=$src/build
if (($# > 0)) && [[ $1 != -* ]]; then
    BUILD=$1
    shift
fi
BUILD=$(cd "$BUILD" && pwd)
BENCH=$BUILD/bench/nats_drain
[[ -x $BENCH ]] || { echo "nats_drain.sh: $BENCH missing; build first" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/obx-nbench-XXXXXX")
chmod 0755 "$work"
mkdir -p "$work/nats"
cleanup() {
    bash "$src/tests/nats/nats_stop.sh" "$work/nats" || true
    bash "$src/tests/pg/pg_stop.sh" "$work" || true
    rm -rf -- "$work"
}
trap cleanup EXIT
bash "$src/tests/pg/pg_start.sh" "$work" >/dev/null
bash "$src/tests/nats/nats_start.sh" "$work/nats" >/dev/null
OBX_BENCH_PG=$(cat "$work/pg_conninfo") OBX_BENCH_NATS=$(cat "$work/nats/nats_url") \
    "$BENCH" "$@"
