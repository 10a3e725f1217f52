#!/usr/bin/env bash
# rabbitmqctl against the private test server of STATE_DIR, e.g.
#
#   tests/rabbitmq/rmq_ctl.sh STATE_DIR close_all_connections test
#   tests/rabbitmq/rmq_ctl.sh STATE_DIR set_vm_memory_high_watermark 0.000001
#
# Special commands: `restart SECONDS` stops the node, waits, starts it
# again with the same data (queues and messages survive); `halt` and `boot`
# do its two halves, for a test that does things while the node is down;
# `url` prints the AMQP URL.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/rabbitmq/rmq_common.sh
source "$here/rmq_common.sh"
STATE_DIR=${1:?usage: rmq_ctl.sh STATE_DIR COMMAND...}
shift
[[ -f $STATE_DIR/rmq_state ]] || {
    echo "rmq_ctl.sh: no server recorded in $STATE_DIR" >&2
    exit 1
}
# shellcheck disable=SC1091
source "$STATE_DIR/rmq_state"
case ${1:-} in
restart)
    rmq_halt
    sleep "${2:-0}"
    rmq_boot || {
        tail -n 30 "$ROOT/start.log" >&2
        exit 1
    }
    ;;
halt) rmq_halt ;;
boot)
    rmq_boot || {
        tail -n 30 "$ROOT/start.log" >&2
        exit 1
    }
    ;;
url) cat "$STATE_DIR/rmq_url" ;;
*) rmq_ctl "$@" ;;
esac
