#!/usr/bin/env bash
# The alert rules and the Grafana dashboard in contrib/ name only metrics and
# labels a live relay serves. Starts the relay (sqlite store, chaos broker,
# metrics_listen = 127.0.0.1:0), scrapes /metrics, then reads every PromQL
# expression of contrib/prometheus/outbox-relay-rules.yml and
# contrib/grafana/outbox-relay.json (panel targets, the pipeline variable's
# label_values, legends, {{ $labels.X }} in annotations). A metric must be
# served, or be one of the plugin gauges docs/metrics.md lists under
# "## Plugin gauges" (they appear only once their plugin sets them); a label
# must be one that the metrics of the same expression carry. The dashboard's
# expressions must parse (promtool check rules), filter on $pipeline, and
# cover what the dashboard promises. Last, the check is run on copies with a
# misspelt metric or label and must fail on each, naming it.
#
#   bash tests/ops/test_metric_names.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1") src=$(realpath "$2")
bin=$build/outbox-relay
promtool=/usr/bin/promtool
fail() { echo "test_metric_names: FAIL: $*" >&2; exit 1; }
[[ -x $promtool ]] || fail "$promtool is not installed (scripts/deps.sh installs the prometheus package)"
command -v curl >/dev/null || fail "curl is not installed (scripts/deps.sh installs it)"
python3 -c 'import yaml' 2>/dev/null || fail "python3-yaml is not installed (scripts/deps.sh installs it)"
[[ -x $bin ]] || fail "$bin missing: build first"

tmp=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/relay.conf" <<CONF
[relay]
log_level = info
metrics_listen = 127.0.0.1:0
[pipeline orders]
store = sqlite
broker = chaos
store.path = $tmp/outbox.db
broker.output = $tmp/out.jsonl
broker.flaky_types = Flaky
poll_interval = 20ms
retry.backoff = 1ms..5ms
CONF
"$bin" demo -c "$tmp/relay.conf" -n 5 >/dev/null 2>"$tmp/demo.log" || fail "demo failed: $(cat "$tmp/demo.log")"
"$bin" run -c "$tmp/relay.conf" 2>"$tmp/relay.log" &
pid=$!
url=
for _ in $(seq 300); do
    url=$(grep -o 'metrics on http://127\.0\.0\.1:[0-9]*/metrics' "$tmp/relay.log" | head -n1 | cut -d' ' -f3) || true
    [[ -n $url ]] && break
    kill -0 "$pid" 2>/dev/null || fail "the relay exited: $(cat "$tmp/relay.log")"
    sleep 0.1
done
[[ -n $url ]] || fail "no 'metrics on http://127.0.0.1:PORT/metrics' in the log: $(cat "$tmp/relay.log")"
# Wait (up to 30 s each, the machine may be busy) for the 5 events, so the
# scrape is of a relay that has done work.
for _ in $(seq 300); do
    curl -fsS "$url" >"$tmp/metrics" || fail "scraping $url failed"
    grep -q '^outbox_events_published_total{pipeline="orders"} 5$' "$tmp/metrics" && break
    sleep 0.1
done
grep -q '^outbox_events_published_total{pipeline="orders"} 5$' "$tmp/metrics" ||
    fail "the relay did not publish the 5 demo events: $(cat "$tmp/metrics")"
kill -TERM "$pid"
wait "$pid" || fail "the relay did not exit 0 on SIGTERM: $(tail -5 "$tmp/relay.log")"
pid=
echo "scraped $url: $(grep -vc '^#' "$tmp/metrics") samples"

cat >"$tmp/check.py" <<'PY'
"""check.py METRICS DOCS RULES DASHBOARD PROMTOOL OUTDIR: prints every
unknown metric or label, exits 1 if there is one."""
import json, re, subprocess, sys, yaml

metrics_file, docs, rules_file, dash_file, promtool, outdir = sys.argv[1:7]
errors = []

# What the relay serves: sample name -> label names.
served = {}
for l in open(metrics_file):
    if l.startswith("#") or not l.strip():
        continue
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*?)\})? ", l)
    if not m:
        errors.append(f"/metrics: unparsable line {l!r}")
        continue
    labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(2) or ""))
    served.setdefault(m.group(1), set()).update(labels)
# The plugin gauges docs/metrics.md lists: | `name` | type | `label`, ... | ...
text = open(docs).read()
sec = re.search(r"^## Plugin gauges\n(.*?)(?=^## |\Z)", text, re.S | re.M)
if not sec:
    errors.append(f"{docs}: no '## Plugin gauges' section")
else:
    for name, labels in re.findall(r"^\| `([a-z_:]+)` \| \w+ \| ([^|]*)\|", sec.group(1), re.M):
        served.setdefault(name, set()).update(re.findall(r"`(\w+)`", labels))
if "outbox_events_published_total" not in served:
    errors.append("/metrics has no outbox_events_published_total: not a relay's page?")

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan"}
GROUPING = r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)"

def grafana_vars(expr):
    expr = re.sub(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}", "5m", expr)
    return expr

def names(expr):
    """(metrics, labels) an expression names."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    labels = set()
    for _, group in re.findall(GROUPING, e):
        labels.update(x.strip() for x in group.split(",") if x.strip())
    e = re.sub(GROUPING, " ", e)
    for body in re.findall(r"\{([^{}]*)\}", e):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", body))
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\[[^\[\]]*\]", " ", e)                 # ranges, subqueries
    e = re.sub(r"\boffset\s+\w+", " ", e)
    metrics = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w.])(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS or re.fullmatch(r"\d\w*", word):
            continue
        metrics.add(word)
    return metrics, labels

def check(where, expr, extra_labels=()):
    metrics, labels = names(expr)
    if not metrics:
        errors.append(f"{where}: names no metric: {expr!r}")
    carried = set()
    for m in sorted(metrics):
        if m not in served:
            errors.append(f"{where}: metric {m} is not served by the relay (nor a plugin gauge in docs/metrics.md)")
        else:
            carried |= served[m]
    for l in sorted(set(labels) | set(extra_labels)):
        if l != "__name__" and metrics <= set(served) and l not in carried:
            errors.append(f"{where}: label {l} is not carried by {', '.join(sorted(metrics))} (they have: {', '.join(sorted(carried)) or 'none'})")
    return metrics, labels

# The rules.
rules = yaml.safe_load(open(rules_file))
nrules = 0
for g in rules["groups"]:
    for r in g["rules"]:
        nrules += 1
        name = r.get("alert") or r.get("record")
        tmpl = " ".join(str(v) for v in (r.get("annotations") or {}).values())
        tmpl += " " + " ".join(str(v) for v in (r.get("labels") or {}).values())
        check(f"{rules_file}: {name}", r["expr"], re.findall(r"\$labels\.([a-zA-Z_]\w*)", tmpl))

# The dashboard.
dash = json.load(open(dash_file))
var_names = {v["name"] for v in dash["templating"]["list"]}
if "pipeline" not in var_names:
    errors.append(f"{dash_file}: no template variable 'pipeline'")
for v in dash["templating"]["list"]:
    if v["type"] != "query":
        continue
    q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
    m = re.fullmatch(r"\s*label_values\(\s*(.*),\s*(\w+)\s*\)\s*", q)
    if not m:
        errors.append(f"{dash_file}: variable {v['name']}: not label_values(METRIC, LABEL): {q!r}")
        continue
    check(f"{dash_file}: variable {v['name']}", m.group(1), [m.group(2)])

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))
exprs, used = [], {}
for p in walk(dash["panels"]):
    for t in p.get("targets", []):
        where = f"{dash_file}: panel {p['title']!r} {t['refId']}"
        expr = grafana_vars(t["expr"])
        legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", ""))
        metrics, labels = check(where, expr, legend)
        exprs.append((where, expr))
        for m in metrics:
            used.setdefault(m, []).append(t["expr"])
        for sel in re.finditer(r"\b(outbox_\w+)(\{[^}]*\})?", t["expr"]):
            if 'pipeline=~"$pipeline"' not in (sel.group(2) or ""):
                errors.append(f"{where}: {sel.group(1)} without pipeline=~\"$pipeline\"")

# What the dashboard promises.
def promise(what, ok):
    if not ok:
        errors.append(f"{dash_file}: no panel for {what}")
allx = [e for _, e in exprs]
promise("the publish rate", any(re.search(r"rate\(outbox_events_published_total", e) for e in allx))
promise("errors by class", any("outbox_publish_errors_total" in e and re.search(r"by \([^)]*\bclass\b", e) for e in allx))
for m in ("outbox_pending_events", "outbox_oldest_pending_age_seconds", "outbox_circuit_open",
          "outbox_wal_slot_lag_bytes"):
    promise(m, m in used)
for h in ("outbox_publish_latency_seconds", "outbox_batch_duration_seconds"):
    promise(f"quantiles of {h}", any(re.search(r"histogram_quantile\(0\.\d+, sum by \([^)]*\ble\b[^)]*\) \(rate\(" + h + "_bucket", e) for e in allx))

# The dashboard's PromQL must parse: promtool check rules on them as
# recording rules.
with open(f"{outdir}/dashboard-as-rules.yml", "w") as f:
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e.replace("$pipeline", ".*")}
        for i, (_, e) in enumerate(exprs)]}]}, f)
r = subprocess.run([promtool, "check", "rules", f"{outdir}/dashboard-as-rules.yml"],
                   capture_output=True, text=True)
if r.returncode != 0:
    errors.append(f"{dash_file}: promtool does not parse its queries:\n{r.stdout}{r.stderr}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"ok: {nrules} rules and {len(exprs)} dashboard queries name only served metrics and labels")
PY

rules=$src/contrib/prometheus/outbox-relay-rules.yml
dash=$src/contrib/grafana/outbox-relay.json
docs=$src/docs/metrics.md
check() { python3 "$tmp/check.py" "$tmp/metrics" "$docs" "$1" "$2" "$promtool" "$tmp"; }
check "$rules" "$dash" || fail "the rules or the dashboard name what the relay does not serve (above)"

# The check itself: each misspelling must be caught, by name.
mutant() {  # FILE_KIND SED WANT
    local kind=$1 expr=$2 want=$3 r=$rules d=$dash out
    if [[ $kind == rules ]]; then r=$tmp/mutant.yml; sed "$expr" "$rules" >"$r"; cmp -s "$r" "$rules" && fail "mutation $expr changed nothing"; fi
    if [[ $kind == dash ]]; then d=$tmp/mutant.json; sed "$expr" "$dash" >"$d"; cmp -s "$d" "$dash" && fail "mutation $expr changed nothing"; fi
    if out=$(check "$r" "$d"); then fail "the check passed a $kind file with $expr"; fi
    grep -q -- "$want" <<<"$out" || fail "the check of a $kind file with $expr does not name $want: $out"
    echo "caught: $kind $expr"
}
mutant rules 's/deriv(outbox_pending_events\[/deriv(outbox_pending_event[/' 'metric outbox_pending_event is not served'
mutant rules 's/\$labels.pipeline }}: not ready/$labels.pipline }}: not ready/' 'label pipline is not carried'
mutant rules 's/outbox_wal_slot_lag_bytes > 1e9/outbox_wal_slot_lag > 1e9/' 'metric outbox_wal_slot_lag is not served'
mutant dash 's/outbox_circuit_open{/outbox_circuit_opened{/' 'metric outbox_circuit_opened is not served'
mutant dash 's/sum by (pipeline, class)/sum by (pipeline, klass)/' 'label klass is not carried'
mutant dash 's/outbox_pending_events{pipeline=~/outbox_pending_events{pipelines=~/' 'label pipelines is not carried'
mutant dash 's/label_values(outbox_events_published_total, pipeline)/label_values(outbox_events_published, pipeline)/' 'metric outbox_events_published is not served'
mutant dash 's/outbox_publish_latency_seconds_bucket{/outbox_publish_latency_bucket{/' 'metric outbox_publish_latency_bucket is not served'
mutant dash 's/{{pipeline}} {{class}}/{{pipeline}} {{reason}}/' 'label reason is not carried'
mutant dash 's/(rate(outbox_events_published_total{/(rate(rate outbox_events_published_total{/' 'promtool does not parse'
echo "test_metric_names: ok"
