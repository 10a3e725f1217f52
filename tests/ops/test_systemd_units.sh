#!/usr/bin/env bash
# systemd-analyze verify on the shipped units, pointed at this build's
# binary, with the man pages they cite on MANPATH: no error and no warning
# (an unknown key is only a warning to systemd, a failure here).
#   tests/ops/test_systemd_units.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=${1:?usage: test_systemd_units.sh BUILD_DIR SOURCE_DIR}
src=${2:?}
command -v systemd-analyze >/dev/null ||
    { echo "systemd-analyze is missing (package systemd)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/units" "$work/man/man1" "$work/man/man5"
for unit in outbox-relay.service outbox-relay@.service; do
    sed "s|@OBX_BINDIR@|$build|" "$src/contrib/systemd/$unit.in" >"$work/units/$unit"
done
cp "$build/man/outbox-relay.1" "$work/man/man1/"
cp "$build/man/outbox-relay.conf.5" "$work/man/man5/"
out=$(MANPATH="$work/man" SYSTEMD_LOG_LEVEL=notice systemd-analyze verify \
    "$work/units/outbox-relay.service" "$work/units/outbox-relay@orders.service" 2>&1) ||
    { echo "$out" >&2; echo "systemd-analyze verify failed" >&2; exit 1; }
if [[ -n $out ]]; then
    echo "$out" >&2
    echo "systemd-analyze verify printed warnings" >&2
    exit 1
fi
# what the relay speaks must match what the unit expects
grep -q '^Type=notify$' "$work/units/outbox-relay.service"
grep -q '^WatchdogSec=' "$work/units/outbox-relay.service"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$work/units/outbox-relay.service"
echo "systemd units verify clean"
