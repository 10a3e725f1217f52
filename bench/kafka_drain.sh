#!/usr/bin/env bash
# kafka_drain with PostgreSQL: starts a private server with the test
# scripts (tests/pg/pg_start.sh: initdb in a temp directory, a free port,
# never the system cluster; fsync and synchronous_commit off, as for the
# tests), runs BUILD_DIR/bench/kafka_drain against it, so sqlite -> kafka,
# pg_poll -> kafka and the raw producer are measured in the same run, and
# stops the server again.
#
#   bench/kafka_drain.sh [BUILD_DIR] [kafka_drain options]   (default: build)
#
# Use an optimised build for numbers that mean something:
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build-rel -j
#   bench/kafka_drain.sh build-rel -n 200000 -b 1000
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)
BUILD=$src/build
if (($# > 0)) && [[ $1 != -* ]]; then
    BUILD=$1
    shift
fi
BUILD=$(cd "$BUILD" && pwd)
BENCH=$BUILD/bench/kafka_drain
[[ -x $BENCH ]] || { echo "kafka_drain.sh: $BENCH missing; build first" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/obx-kbench-XXXXXX")
cleanup() {
    bash "$src/tests/pg/pg_stop.sh" "$work" || true
    rm -rf -- "$work"
}
trap cleanup EXIT
bash "$src/tests/pg/pg_start.sh" "$work" >/dev/null
OBX_BENCH_PG=$(cat "$work/pg_conninfo") "$BENCH" "$@"
