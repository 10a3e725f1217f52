#!/usr/bin/env bash
# pg_wal benchmark (target: relay >= 0.8 x min(ceilings)): in one run, on one private
# PostgreSQL server (tests/pg/pg_start.sh: wal_level=logical, fsync off),
#   1. the raw ceiling: pg_recvlogical streaming the backlog's inserts
#      (pgoutput, protocol 1, the same publication) to /dev/null from its
#      own slot, up to the backlog's end LSN;
#   2. the relay: `outbox-relay run --once` (store pg_wal, broker stdout
#      writing to /dev/null) draining the same backlog from its slot;
#   3. commit-to-publish latency at RATE events/s: pgbench commits single
#      -event transactions whose payload carries clock_timestamp(); the
#      relay's stdout broker writes to a FIFO read by a timestamping
#      reader. Latency = arrival at the reader - insert time (the commit
#      follows the insert at once), p50 and p99. The writers use
#      synchronous_commit = on (the default; the test server's default is
#      off, which delays WAL flushes, and so decoding, by up to 200 ms).
#
#   bench/pg_wal_drain.sh [BUILD_DIR]     (default: build)
#
# Use a Release build:
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j
#   bench/pg_wal_drain.sh build-rel
# Knobs (environment): EVENTS=200000 TXN=100 BATCH=1000 KEYS=1000
#   PAYLOAD=256 RATE=1000 DURATION=10 (seconds of the latency run)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)
BUILD=$(cd "${1:-$src/build}" && pwd)
EVENTS=${EVENTS:-200000}
TXN=${TXN:-100}
BATCH=${BATCH:-1000}
KEYS=${KEYS:-1000}
PAYLOAD=${PAYLOAD:-256}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
RELAY=$BUILD/outbox-relay
for f in "$RELAY" "$BUILD/plugins/obx_store_pg_wal.so" "$BUILD/plugins/obx_broker_stdout.so"; do
    [[ -e $f ]] || { echo "pg_wal_drain.sh: $f missing; build first" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "pg_wal_drain.sh: needs python3" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/obx-bench-XXXXXX")
chmod 0755 "$work"
relay_pid=""
cleanup() {
    [[ -n $relay_pid ]] && kill "$relay_pid" 2>/dev/null || true
    bash "$src/tests/pg/pg_stop.sh" "$work" || true
    rm -rf -- "$work"
}
trap cleanup EXIT
bash "$src/tests/pg/pg_start.sh" "$work" >/dev/null
CONNINFO=$(cat "$work/pg_conninfo")
# shellcheck disable=SC1091
source "$work/pg_state"
psql() { "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d "$CONNINFO" "$@"; }

cat >"$work/relay.conf" <<CONF
[relay]
log_level = warn
metrics_listen = off
[pipeline bench]
store = pg_wal
broker = stdout
batch_size = $BATCH
store.conninfo = $CONNINFO
broker.output = /dev/null
CONF

# Table, publication and the relay's slot as a DBA would create them; a
# second slot on the same publication for pg_recvlogical.
"$RELAY" schema pg_wal | psql >/dev/null
psql -c "SELECT pg_create_logical_replication_slot('raw_ceiling', 'pgoutput')" >/dev/null

# The backlog: EVENTS events over KEYS keys, PAYLOAD bytes each, in
# transactions of TXN, committed while nobody streams (as after an outage).
psql -c "DO \$\$ BEGIN FOR t IN 0..$((EVENTS / TXN - 1)) LOOP
           INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
           SELECT 'order', (g % $KEYS)::text, 'OrderCreated',
                  convert_to(rpad('{\"n\":' || g || ',\"pad\":\"', $PAYLOAD - 2, 'x') || '\"}', 'UTF8')
           FROM generate_series(t * $TXN, t * $TXN + $TXN - 1) g;
           COMMIT; END LOOP; END \$\$" >/dev/null
END_LSN=$(psql -At -c "SELECT pg_current_wal_insert_lsn()")
psql -c "CHECKPOINT" >/dev/null

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

# 1. raw ceiling
t0=$(now)
"$BINDIR/pg_recvlogical" -d "$CONNINFO" -S raw_ceiling --start -E "$END_LSN" \
    -o proto_version=1 -o publication_names=outbox_relay -f /dev/null
t1=$(now)
raw_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
raw_rate=$(rate "$EVENTS" "$t0" "$t1")

# 2. relay drain
t0=$(now)
"$RELAY" run -c "$work/relay.conf" --once
t1=$(now)
relay_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
relay_rate=$(rate "$EVENTS" "$t0" "$t1")
confirmed=$(psql -At -c "SELECT confirmed_flush_lsn >= '$END_LSN'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'outbox_relay'")
[[ $confirmed == t ]] || { echo "relay exited before confirming the backlog" >&2; exit 1; }
psql -c "SELECT pg_drop_replication_slot('raw_ceiling')" >/dev/null

# 3. latency at RATE events/s
mkfifo "$work/fifo"
sed -e "s|broker.output = /dev/null|broker.output = $work/fifo|" \
    -e "s|batch_size = $BATCH|batch_size = 256|" "$work/relay.conf" >"$work/lat.conf"
want=$((RATE * DURATION))
python3 - "$work/fifo" "$want" >"$work/lat.txt" <<'PY' &
import json, sys, time
path, want = sys.argv[1], int(sys.argv[2])
lat = []
with open(path, "r", buffering=1) as f:
    for line in f:
        now = time.time_ns() // 1000
        t = json.loads(line)["payload"]["t"]
        lat.append((now - t) / 1000.0)
        if len(lat) >= want:
            break
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(len(lat), pick(0.5), pick(0.99), lat[-1])
PY
reader=$!
"$RELAY" run -c "$work/lat.conf" &
relay_pid=$!
sleep 1
cat >"$work/ins.sql" <<SQL
INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
VALUES ('order', (random() * $KEYS)::int::text, 'OrderCreated',
        convert_to('{"t":' || (extract(epoch FROM clock_timestamp()) * 1000000)::int8
                   || ',"pad":"' || repeat('x', $PAYLOAD - 40) || '"}', 'UTF8'));
SQL
# The test server runs with synchronous_commit = off, which leaves WAL
# unflushed for up to wal_writer_delay (200 ms) and the walsender only
# decodes flushed WAL; applications commit with the default, on.
PGOPTIONS="-c synchronous_commit=on" "$BINDIR/pgbench" -n -c 4 -j 2 -R "$RATE" -t $((want / 4)) -f "$work/ins.sql" "$CONNINFO" >"$work/pgbench.log" 2>&1
wait "$reader"
kill "$relay_pid"; wait "$relay_pid" || true
relay_pid=""
read -r lat_n p50 p99 pmax <"$work/lat.txt"

printf 'pg_wal, %d events of %d bytes over %d keys in transactions of %d, batches of %d, %s\n' \
    "$EVENTS" "$PAYLOAD" "$KEYS" "$TXN" "$BATCH" "$("$BINDIR/postgres" --version)"
printf '  raw pg_recvlogical (pgoutput) -> /dev/null: %8s events/s (%.2f s)\n' "$raw_rate" "$raw_secs"
printf '  relay run --once -> stdout >/dev/null:      %8s events/s (%.2f s)\n' "$relay_rate" "$relay_secs"
printf '  relay / ceiling:                            %8.2f\n' "$(awk -v a="$relay_rate" -v b="$raw_rate" 'BEGIN { print a / b }')"
printf '  commit-to-publish at %d events/s (%d events): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n' \
    "$RATE" "$lat_n" "$p50" "$p99" "$pmax"
