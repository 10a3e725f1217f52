#!/usr/bin/env bash
# rabbitmq_drain with its servers: starts a private RabbitMQ
# (tests/rabbitmq/rmq_start.sh: its own node, ports and temp directory)
# and a private PostgreSQL (tests/pg/pg_start.sh), runs
# BUILD_DIR/bench/rabbitmq_drain against both, so the raw publisher,
# sqlite -> rabbitmq and pg_poll -> rabbitmq are measured in the same run,
# and stops them again.
#
#   bench/rabbitmq_drain.sh [BUILD_DIR] [rabbitmq_drain options]   (default: build)
#
# Use an optimised build for numbers that mean something:
#   bash scripts/build.sh build-rel        (RelWithDebInfo)
#   bench/rabbitmq_drain.sh build-rel -n 200000
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)
BUILD=$src/build
if (($# > 0)) && [[ $1 != -* ]]; then
    BUILD=$1
    shift
fi
BUILD=$(cd "$BUILD" && pwd)
BENCH=$BUILD/bench/rabbitmq_drain
[[ -x $BENCH ]] || { echo "rabbitmq_drain.sh: $BENCH missing; build first" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/obx-rbench-XXXXXX")
cleanup() {
    bash "$src/tests/rabbitmq/rmq_stop.sh" "$work" || true
    bash "$src/tests/pg/pg_stop.sh" "$work" || true
    rm -rf -- "$work"
}
trap cleanup EXIT
bash "$src/tests/pg/pg_start.sh" "$work" >/dev/null
bash "$src/tests/rabbitmq/rmq_start.sh" "$work" >/dev/null
OBX_BENCH_PG=$(cat "$work/pg_conninfo") OBX_BENCH_RMQ=$(cat "$work/rmq_url") "$BENCH" "$@"
