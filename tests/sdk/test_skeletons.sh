#!/usr/bin/env bash
# The example plugins (examples/*_skeleton.c) keep the contract they
# document, driven by the real relay binary:
#  - `plugins` lists both from plugin_path, `help` shows their options;
#  - schema_v2 prints the layout, and its error (a file where the directory
#    should be) with exit 2;
#  - events of three keys reach the broker in per-key commit order; a
#    payload over max_payload is dead-lettered at once (dead/ holds it and
#    its reason) while the later events of its key wait and then follow;
#  - a broker outage burns no attempt: the batch returns uncounted
#    (attempts 0 in the .retry files), and the next run publishes it;
#  - retries (chaos broker, flaky events) are counted, keep per-key order,
#    and leave no .retry behind once published;
#  - the directory's lease: a second relay cannot open the store while the
#    lock is held (a hot standby: UNAVAILABLE, exit 1 after once_timeout);
#  - demo and stats through the store's own ops.
# Usage: test_skeletons.sh BUILD_DIR
set -euo pipefail
build=$1
bin=$build/outbox-relay
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

conf() { # FILE BROKER_LINES...
    local file=$1; shift
    {
        printf '[relay]\nplugin_path = %s\nmetrics_listen = off\nlog_level = warn\n' \
            "$build/examples"
        printf '[pipeline p]\nstore = skeleton\nstore.dir = %s/events\n' "$tmp"
        printf 'store.poll = 5ms\npoll_interval = 20ms\nretry.backoff = 5ms..20ms\n'
        printf 'circuit.backoff = 20ms..100ms\nonce_timeout = 2s\n'
        printf '%s\n' "$@"
    } >"$file"
}
# event NAME KEY [TYPE [PAYLOAD]]: commit one event file (rename = commit)
event() {
    local payload=${4:-}
    [[ -n $payload ]] || payload="{\"n\":\"$1\"}"
    printf 'key: %s\ntype: %s\naggregate_type: thing\n\n%s' "$2" "${3:-Made}" \
        "$payload" >"$tmp/events/.$1.tmp"
    mv "$tmp/events/.$1.tmp" "$tmp/events/$1.evt"
}
pending() { find "$tmp/events" -maxdepth 1 -name '*.evt' | wc -l; }

conf "$tmp/good.conf" "broker = skeleton" "broker.path = $tmp/out.txt" \
    "broker.max_payload = 64"

# ---- discovery, help, schema ------------------------------------------
list=$("$bin" plugins -c "$tmp/good.conf")
grep -q "^store  *skeleton .*a directory of event files" <<<"$list" ||
    fail "store skeleton not listed: $list"
grep -q "^broker  *skeleton .*appends events to a file" <<<"$list" ||
    fail "broker skeleton not listed: $list"
"$bin" help skeleton -c "$tmp/good.conf" | grep -q "store.dir (string, required)" ||
    fail "no help for store.dir"
"$bin" check -c "$tmp/good.conf" >/dev/null || fail "check refused the config"
schema=$("$bin" schema skeleton -c "$tmp/good.conf")
grep -qF "mkdir -p '$tmp/events/dead'" <<<"$schema" || fail "schema: $schema"
: >"$tmp/afile"
conf "$tmp/file.conf" "broker = skeleton" "broker.path = $tmp/out.txt"
sed -i "s|store.dir = .*|store.dir = $tmp/afile|" "$tmp/file.conf"
set +e
err=$("$bin" schema skeleton -c "$tmp/file.conf" 2>&1)
rc=$?
set -e
[[ $rc == 2 ]] || fail "schema of a file: exit $rc, want 2 ($err)"
grep -qF "store.dir '$tmp/afile' exists and is not a directory" <<<"$err" ||
    fail "schema error not shown: $err"

# ---- per-key order and a permanent failure ----------------------------
mkdir -p "$tmp/events"
big=$(printf 'x%.0s' {1..100})
i=0
for k in a b c a b c a b c a b c; do
    i=$((i + 1))
    name=$(printf '%03d' $i)
    if [[ $name == 005 ]]; then
        event "$name" "$k" Made "$big" # b's second event: too large
    else
        event "$name" "$k"
    fi
done
"$bin" run -c "$tmp/good.conf" --once 2>"$tmp/run1.err" ||
    fail "run: $(cat "$tmp/run1.err")"
[[ $(pending) == 0 ]] || fail "events left pending: $(ls "$tmp/events")"
[[ -f $tmp/events/dead/005.evt ]] || fail "005 not buried"
grep -q "^attempts: 1$" "$tmp/events/dead/005.evt.why" || fail "why: $(cat "$tmp/events/dead/005.evt.why")"
grep -q "^reason: permanent: payload of 100 bytes is larger than max_payload (64)$" \
    "$tmp/events/dead/005.evt.why" || fail "reason: $(cat "$tmp/events/dead/005.evt.why")"
[[ $(wc -l <"$tmp/out.txt") == 11 ]] || fail "want 11 lines: $(cat "$tmp/out.txt")"
keys=(a b c)
for k in a b c; do
    got=$(awk -v k=$k '$2 == k {print $3}' "$tmp/out.txt" | tr '\n' ' ')
    want=
    for j in $(seq 1 12); do
        n=$(printf '%03d' "$j")
        [[ ${keys[$(((j - 1) % 3))]} == "$k" && $n != 005 ]] && want+="$n.evt "
    done
    [[ $got == "$want" ]] || fail "key $k published as '$got', want '$want'"
done
grep -q "^outbox.thing a 001.evt {\"n\":\"001\"}$" "$tmp/out.txt" ||
    fail "line format: $(head -1 "$tmp/out.txt")"
[[ -z $(find "$tmp/events" -maxdepth 1 -name '*.retry') ]] || fail "retry files left"

# ---- a broker outage counts no attempt --------------------------------
conf "$tmp/down.conf" "broker = skeleton" "broker.path = $tmp/missing/out.txt"
event 101 a
event 102 b
set +e
"$bin" run -c "$tmp/down.conf" --once 2>"$tmp/down.err"
rc=$?
set -e
[[ $rc == 1 ]] || fail "run with the broker down: exit $rc"
grep -q "cannot open $tmp/missing/out.txt" "$tmp/down.err" || fail "reason: $(cat "$tmp/down.err")"
[[ $(pending) == 2 ]] || fail "events lost in the outage"
for f in "$tmp"/events/10[12].evt.retry; do
    [[ $(head -c 2 "$f") == "0 " ]] || fail "outage counted an attempt: $(cat "$f")"
done
"$bin" run -c "$tmp/good.conf" --once 2>"$tmp/run2.err" || fail "run: $(cat "$tmp/run2.err")"
[[ $(pending) == 0 ]] || fail "not published after the outage"
grep -q " 102.evt " "$tmp/out.txt" || fail "102 missing"

# ---- counted retries keep per-key order (chaos broker) ----------------
conf "$tmp/chaos.conf" "broker = chaos" "broker.output = $tmp/chaos.jsonl" \
    "broker.flaky_types = Flaky" "broker.flaky_times = 2"
event 201 k Flaky
event 202 k
event 203 m
event 204 k
"$bin" run -c "$tmp/chaos.conf" --once 2>"$tmp/run3.err" || fail "run: $(cat "$tmp/run3.err")"
[[ $(pending) == 0 ]] || fail "flaky events left pending"
got=$(grep -o '"event_id":"20[0-9].evt"' "$tmp/chaos.jsonl" | tr -d '"' | sed 's/event_id://' | tr '\n' ' ')
[[ $got == "203.evt 201.evt 202.evt 204.evt " ]] || fail "chaos order: $got"
[[ -z $(find "$tmp/events" -maxdepth 1 -name '*.retry') ]] || fail "retry files left"

# ---- the lease: one instance per directory ----------------------------
event 301 a
flock -o "$tmp/events/.lock" sleep 5 &
holder=$!
sleep 0.2
set +e
"$bin" run -c "$tmp/good.conf" --once 2>"$tmp/lease.err"
rc=$?
set -e
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
[[ $rc == 1 ]] || fail "second owner ran: exit $rc"
grep -q "another instance holds $tmp/events" "$tmp/lease.err" || fail "lease: $(cat "$tmp/lease.err")"
[[ $(pending) == 1 ]] || fail "the standby touched the event"

# ---- demo and stats ---------------------------------------------------
"$bin" demo -c "$tmp/good.conf" -n 4 >/dev/null
stats=$("$bin" stats -c "$tmp/good.conf" --json)
grep -q '"pending": *5' <<<"$stats" || fail "stats: $stats"
grep -q '"dead": *1' <<<"$stats" || fail "stats: $stats"
"$bin" run -c "$tmp/good.conf" --once 2>"$tmp/run4.err" || fail "run: $(cat "$tmp/run4.err")"
[[ $(grep -c "^outbox.order order-[1-4] " "$tmp/out.txt") == 4 ]] || fail "demo events: $(cat "$tmp/out.txt")"
echo "skeletons: ok"
