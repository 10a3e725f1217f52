#!/usr/bin/env bash
# contrib/prometheus/outbox-relay-rules.yml: promtool check rules passes;
# promtool test rules passes every case in contrib/prometheus/tests/; every
# alert has a case where it fires and one where it must not; and the
# "What to alert on" table of docs/metrics.md gives each alert's exact
# expression, for and severity (and no alert that is not in the file).
#
#   bash tests/ops/test_rules.sh SOURCE_DIR
set -euo pipefail
src=$(realpath "$1")
promtool=/usr/bin/promtool
rules=$src/contrib/prometheus/outbox-relay-rules.yml
fail() { echo "test_rules: FAIL: $*" >&2; exit 1; }
[[ -x $promtool ]] || fail "$promtool is not installed (scripts/deps.sh installs the prometheus package)"
python3 -c 'import yaml' 2>/dev/null || fail "python3-yaml is not installed (scripts/deps.sh installs it)"

"$promtool" check rules "$rules" || fail "promtool check rules $rules"
shopt -s nullglob
cases=("$src"/contrib/prometheus/tests/*.yml)
((${#cases[@]} > 0)) || fail "no test cases in contrib/prometheus/tests/"
"$promtool" test rules "${cases[@]}" || fail "promtool test rules"

python3 - "$rules" "$src/docs/metrics.md" "${cases[@]}" <<'PY'
import re, sys, yaml
rules_file, docs, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
errors = []
alerts = {r["alert"]: r for g in yaml.safe_load(open(rules_file))["groups"]
          for r in g["rules"] if "alert" in r}
fires, quiet = set(), set()
for c in cases:
    doc = yaml.safe_load(open(c))
    if not any("outbox-relay-rules.yml" in f for f in doc.get("rule_files", [])):
        errors.append(f"{c}: does not load outbox-relay-rules.yml")
    for t in doc.get("tests", []):
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
for name in alerts:
    if name not in fires:
        errors.append(f"{name}: no test case where it fires")
    if name not in quiet:
        errors.append(f"{name}: no test case where it must not fire")
for name in (fires | quiet) - set(alerts):
    errors.append(f"test cases name {name}, which the rules do not define")

text = open(docs).read()
m = re.search(r"^## What to alert on\n(.*?)(?=^## |\Z)", text, re.S | re.M)
if not m:
    errors.append(f"{docs}: no '## What to alert on' section")
else:
    rows = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and re.fullmatch(r"`\w+`", cells[0]):
            rows[cells[0].strip("`")] = cells
    for name, r in alerts.items():
        if name not in rows:
            errors.append(f"{docs}: the alert table has no row for {name}")
            continue
        cells = rows[name]
        want = "`" + " ".join(r["expr"].split()) + "`"
        if cells[2] != want:
            errors.append(f"{docs}: {name}: expression {cells[2]} is not the rule's {want}")
        if cells[3] != r.get("for", "—"):
            errors.append(f"{docs}: {name}: for {cells[3]} is not the rule's {r.get('for', '—')}")
        if cells[4] != r["labels"]["severity"]:
            errors.append(f"{docs}: {name}: severity {cells[4]} is not the rule's {r['labels']['severity']}")
    for name in set(rows) - set(alerts):
        errors.append(f"{docs}: the alert table lists {name}, which the rules do not define")
    for f in ("contrib/prometheus/outbox-relay-rules.yml", "contrib/grafana/outbox-relay.json"):
        if f not in text:
            errors.append(f"{docs}: does not link {f}")
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(alerts)} alerts, each tested firing and not firing; docs/metrics.md's table matches")
PY
echo "test_rules: ok"
