#!/usr/bin/env bash
# Stop the private test server started by rmq_start.sh (rabbitmqctl stop,
# then kill what is left, its epmd too) and remove its directory.
#
#   tests/rabbitmq/rmq_stop.sh STATE_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/rabbitmq/rmq_common.sh
source "$here/rmq_common.sh"
rmq_stop_recorded "${1:?usage: rmq_stop.sh STATE_DIR}"
