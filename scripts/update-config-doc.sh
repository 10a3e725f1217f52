#!/usr/bin/env bash
# Regenerates the two reference blocks of docs/configuration.md (the
# [relay] and [pipeline] keys) from `outbox-relay help relay|pipeline`, the
# same option tables the relay validates with. tests/e2e checks they match.
#
#   bash scripts/update-config-doc.sh [BUILD_DIR]   (default: build)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$ROOT/build}/outbox-relay
DOC=$ROOT/docs/configuration.md
[[ -x $BIN ]] || { echo "update-config-doc.sh: build first ($BIN missing)" >&2; exit 1; }
python3 - "$DOC" "$("$BIN" help relay)" "$("$BIN" help pipeline)" <<'PY'
import re, sys
doc, relay, pipeline = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(doc).read()
blocks = [m for m in re.finditer(r"```\n(.*?)```\n", text, re.S)]
def find(first_line):
    for m in blocks:
        if m.group(1).startswith(first_line):
            return m
    sys.exit(f"update-config-doc.sh: no block starting with {first_line!r} in {doc}")
out = text
for body in (pipeline, relay):
    m = find(body.splitlines()[0])
    out = out[:m.start(1)] + body.rstrip("\n") + "\n" + out[m.end(1):]
    blocks = [b for b in re.finditer(r"```\n(.*?)```\n", out, re.S)]
open(doc, "w").write(out)
PY
