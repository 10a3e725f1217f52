#!/usr/bin/env bash
# Prints the chaos suite's summary table from the rows the pairs wrote.
#   tests/chaos/chaos_summary.sh SUMMARY_FILE
set -euo pipefail
file=${1:?usage: chaos_summary.sh SUMMARY_FILE}
printf '%-22s %5s %9s %6s %8s %12s %10s\n' pair kills committed lost phantoms \
    "order-breaks" duplicates
if [[ -s $file ]]; then
    sort "$file"
else
    echo "(no pair reported a row)"
fi
