#!/usr/bin/env bash
# Stop the private test server started by pg_start.sh and remove its
# directory.
#
#   tests/pg/pg_stop.sh STATE_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/pg/pg_common.sh
source "$here/pg_common.sh"
pg_stop_recorded "${1:?usage: pg_stop.sh STATE_DIR}"
