#!/usr/bin/env bash
# Prints the chaos suite's summary table from the rows the runs wrote: per
# pair and fault schedule, the kills, the events committed, and what the
# broker held of them (lost, phantoms, per-key order breaks, duplicates).
#   tests/chaos/chaos_summary.sh SUMMARY_FILE
set -euo pipefail
file=${1:?usage: chaos_summary.sh SUMMARY_FILE}
printf '%-22s %5s %9s %6s %8s %12s %10s  %s\n' pair kills committed lost \
    phantoms "order-breaks" duplicates fault
if [[ -s $file ]]; then
    sort "$file"
else
    echo "(no pair reported a row)"
fi
