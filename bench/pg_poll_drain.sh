#!/usr/bin/env bash
# pg_poll drain benchmark (target: relay >= 0.8 x min(ceilings)): in one run, on one private
# PostgreSQL server,
#   1. the raw ceiling: the store's own claim statement and its
#      ack_mode=mark statement in a loop over a 200k-event backlog (libpq,
#      nothing else; bench/pg_poll_raw.c);
#   2. the relay: `outbox-relay run --once` draining the same backlog into
#      the stdout broker writing to /dev/null;
# and prints both rates and their ratio.
#
#   bench/pg_poll_drain.sh [BUILD_DIR]     (default: build)
#
# Use a Release build for numbers that mean something:
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j
#   bench/pg_poll_drain.sh build-rel
# Knobs (environment): EVENTS=200000 BATCH=1000 KEYS=1000 PAYLOAD=256 ROUNDS=3
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)
BUILD=$(cd "${1:-$src/build}" && pwd)
EVENTS=${EVENTS:-200000}
BATCH=${BATCH:-1000}
KEYS=${KEYS:-1000}
PAYLOAD=${PAYLOAD:-256}
ROUNDS=${ROUNDS:-3}
RELAY=$BUILD/outbox-relay
RAW=$BUILD/stores/pg_poll/obx_bench_pg_poll_raw
for f in "$RELAY" "$RAW" "$BUILD/plugins/obx_store_pg_poll.so" "$BUILD/plugins/obx_broker_stdout.so"; do
    [[ -e $f ]] || { echo "pg_poll_drain.sh: $f missing; build first" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/obx-bench-XXXXXX")
cleanup() {
    bash "$src/tests/pg/pg_stop.sh" "$work" || true
    rm -rf -- "$work"
}
trap cleanup EXIT
bash "$src/tests/pg/pg_start.sh" "$work" >/dev/null
CONNINFO=$(cat "$work/pg_conninfo")
# shellcheck disable=SC1091
source "$work/pg_state"
psql() { "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$CONNINFO" "$@"; }

"$RELAY" schema pg_poll | psql >/dev/null

# A backlog of EVENTS events over KEYS keys, PAYLOAD bytes each, written
# before anyone claims (as after an outage), then vacuumed and analyzed
# as autovacuum would have by then.
fill() {
    psql -c "TRUNCATE outbox" >/dev/null
    psql -c "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
             SELECT 'order', (g % $KEYS)::text, 'OrderCreated',
                    convert_to(rpad('{\"n\":' || g || ',\"pad\":\"', $PAYLOAD - 2, 'x') || '\"}', 'UTF8')
             FROM generate_series(1, $EVENTS) g" >/dev/null
    psql -c "VACUUM ANALYZE outbox" >/dev/null
}

pending() { psql -At -c "SELECT count(*) FROM outbox WHERE published_at IS NULL"; }

cat >"$work/relay.conf" <<CONF
[relay]
log_level = warn
metrics_listen = off
[pipeline bench]
store = pg_poll
broker = stdout
batch_size = $BATCH
store.conninfo = $CONNINFO
broker.output = /dev/null
CONF

# Alternate the two, ROUNDS times each, on a freshly filled table every
# time, and keep the best of each: on a shared machine the slowest runs
# measure the neighbours, not us.
best_raw=0 best_relay=0 raw_all="" relay_all=""
for ((round = 1; round <= ROUNDS; round++)); do
    fill
    read -r raw_rows _ raw_rate < <("$RAW" "$CONNINFO" "$BATCH")
    [[ $(pending) == 0 && $raw_rows == "$EVENTS" ]] || { echo "raw run left events pending" >&2; exit 1; }
    fill
    t0=$(date +%s.%N)
    "$RELAY" run -c "$work/relay.conf" --once
    t1=$(date +%s.%N)
    [[ $(pending) == 0 ]] || { echo "relay left events pending" >&2; exit 1; }
    relay_rate=$(awk -v n="$EVENTS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    raw_all+=" $raw_rate" relay_all+=" $relay_rate"
    ((raw_rate > best_raw)) && best_raw=$raw_rate
    ((relay_rate > best_relay)) && best_relay=$relay_rate
done

printf 'pg_poll drain: %d events of %d bytes over %d keys, batches of %d, best of %d rounds\n' \
    "$EVENTS" "$PAYLOAD" "$KEYS" "$BATCH" "$ROUNDS"
printf '  %s, %s cores\n' "$("$BINDIR/postgres" --version)" "$(nproc)"
printf '  raw SQL claim+mark (same statements): %7d rows/s    (runs:%s)\n' "$best_raw" "$raw_all"
printf '  relay -> stdout broker > /dev/null:   %7d events/s  (runs:%s)\n' "$best_relay" "$relay_all"
printf '  relay / ceiling:                      %7.2f\n' "$(awk -v a="$best_relay" -v b="$best_raw" 'BEGIN { print a / b }')"
