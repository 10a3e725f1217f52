#!/usr/bin/env bash
# Generates the man pages outbox-relay(1) and outbox-relay.conf(5) from what
# the built binary prints, the way update-config-doc.sh regenerates
# docs/configuration.md: `outbox-relay --help` (core/main.c's usage_text) for
# the commands, options, exit codes and signals; `outbox-relay help relay`,
# `help pipeline` and `help PLUGIN` (the option tables the relay validates
# with) for every key, for every plugin `outbox-relay plugins` finds. A new
# plugin in the tree appears in outbox-relay.conf(5) without editing this.
# The build runs it (man/CMakeLists.txt); tests/ops/test_man.sh checks the
# result. No network.
#
#   bash scripts/gen-man.sh BIN OUTDIR [PLUGIN_DIR [PLUGIN_INSTALL_DIR [CONF_INSTALL_PATH]]]
#
# PLUGIN_DIR (default: BIN's directory/plugins) is searched first, so an
# installed copy of a plugin never shadows the one just built.
# PLUGIN_INSTALL_DIR and CONF_INSTALL_PATH are named in FILES (defaults:
# /usr/local/lib/outbox-relay, /usr/local/share/outbox-relay/plugins.conf).
# The page date is SOURCE_DATE_EPOCH when set, else BIN's mtime, so running it
# twice on one build gives the same bytes.
set -euo pipefail
(($# >= 2)) || { echo "usage: gen-man.sh BIN OUTDIR [PLUGIN_DIR [PLUGIN_INSTALL_DIR [CONF_INSTALL_PATH]]]" >&2; exit 2; }
BIN=$1 OUT=$2
PLUGIN_DIR=${3:-$(dirname "$BIN")/plugins}
PLUGIN_INSTALL_DIR=${4:-/usr/local/lib/outbox-relay}
CONF_INSTALL_PATH=${5:-/usr/local/share/outbox-relay/plugins.conf}
[[ -x $BIN ]] || { echo "gen-man.sh: $BIN is not an executable (build first)" >&2; exit 1; }
BIN=$(realpath "$BIN") PLUGIN_DIR=$(realpath -m "$PLUGIN_DIR")
command -v python3 >/dev/null || { echo "gen-man.sh: python3 is needed (scripts/deps.sh installs it)" >&2; exit 1; }
mkdir -p "$OUT"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A config that only sets plugin_path, and an empty working directory, so no
# plugins.conf lying around changes what the binary reports.
printf '[relay]\nplugin_path = %s\n' "$PLUGIN_DIR" >"$tmp/gen.conf"
run() { (cd "$tmp" && "$BIN" "$@"); }

run --help >"$tmp/usage"
run -V >"$tmp/version"
run help relay >"$tmp/relay"
run help pipeline >"$tmp/pipeline"
# `plugins` prints "KIND NAME VERSION DESCRIPTION" and then the path,
# indented. Shadowed copies are warnings on stderr, not listed.
run plugins -c "$tmp/gen.conf" >"$tmp/plugins"
mkdir "$tmp/plugin"
while read -r kind name _; do
    [[ $kind == store || $kind == broker ]] || continue
    run help "$name" -c "$tmp/gen.conf" >"$tmp/plugin/$kind.$name"
done <"$tmp/plugins"

epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$BIN")}
date=$(date -u -d "@$epoch" +%Y-%m-%d)

python3 - "$tmp" "$OUT" "$date" "$PLUGIN_INSTALL_DIR" "$CONF_INSTALL_PATH" <<'PY'
import os, re, sys

tmp, out, date, plugin_install_dir, conf_install_path = sys.argv[1:6]

def read(name):
    with open(os.path.join(tmp, name)) as f:
        return f.read()

def die(msg):
    sys.exit("gen-man.sh: " + msg)

# ---- roff -----------------------------------------------------------------

def esc(s):
    """Text for roff: backslashes, and '-' as the ASCII minus (\\-) so that
    options and keys copied from the page work in a shell."""
    return s.replace("\\", "\\e").replace("-", "\\-")

def line(s):
    """A text line: a leading '.' or "'" would be read as a request."""
    return "\\&" + s if s[:1] in (".", "'") else s

def arg(s):
    """A quoted macro argument."""
    return '"' + esc(s).replace('"', "\\(dq") + '"'

def synopsis(s):
    """Bold for literal words, italic for PLACEHOLDERS, roman for []|, as
    man-pages(7) asks of a synopsis."""
    parts = []
    for tok in re.split(r"([\[\]|,\s]+)", s):
        if not tok:
            continue
        if re.fullmatch(r"[\[\]|,\s]+", tok):
            parts.append(esc(tok))
        elif re.fullmatch(r"[A-Z][A-Z_]*", tok):
            parts.append("\\fI" + esc(tok) + "\\fR")
        else:
            parts.append("\\fB" + esc(tok) + "\\fR")
    return "".join(parts)

def wrap(text, width=78):
    """Source lines of at most width bytes, broken at spaces (never after a
    word ending in '.' unless a capital follows: roff would take that for
    the end of a sentence), each safe as a text line."""
    words, out, cur = text.split(" "), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width and not (
                cur.endswith(".") and not w[:1].isupper()):
            out.append(cur)
            cur = w
        else:
            cur = cur + " " + w if cur else w
    if cur:
        out.append(cur)
    return [line(l) for l in out]

def para(text):
    return wrap(esc(text))

def paras(*texts):
    """Paragraphs, separated by .PP."""
    out = []
    for i, t in enumerate(texts):
        out += ([".PP"] if i else []) + para(t)
    return out

# ---- outbox-relay --help --------------------------------------------------

usage = read("usage")
version = (read("version").split() + ["?", "?"])[1]

def entries(lines, what):
    """Two-column help entries: the term starts in the first 8 columns, its
    description either after two spaces, or at the description column (where
    the continuation lines start) after one space when it starts like prose
    (lower case or '('), or on the following, deeper indented lines."""
    conts = [len(l) - len(l.lstrip(" ")) for l in lines
             if len(l) - len(l.lstrip(" ")) >= 8]
    col = max(set(conts), key=conts.count) if conts else None
    items = []
    for l in lines:
        indent = len(l) - len(l.lstrip(" "))
        if indent < 8:
            body = l.strip()
            m = re.match(r"(.*?\S)  +(\S.*)", body)
            if m:
                term, desc = m.groups()
            elif col and len(l) > col and l[col - 1] == " " and re.match(r"[a-z(]", l[col:]):
                term, desc = l[:col].strip(), l[col:].strip()
            else:
                term, desc = body, ""
            items.append([term, desc])
        elif items:
            items[-1][1] = (items[-1][1] + " " + l.strip()).strip()
        else:
            die(f"{what}: continuation line before any entry: {l!r}")
    if not items:
        die(f"no {what} in outbox-relay --help")
    return items

# --help is blocks separated by blank lines: "usage: outbox-relay ARGS", a
# summary, then "TITLE:" blocks of two-column entries (commands, options) and
# "title: text" paragraphs (exit codes, signals). Each becomes a section, in
# the order --help has them; one this script does not know by name becomes a
# section of its own, so nothing --help says is left out of the page.
blocks = [b for b in usage.rstrip("\n").split("\n\n") if b.strip()]
m = re.fullmatch(r"usage: outbox-relay ([^\n]*)", blocks[0]) if blocks else None
if not m or len(blocks) < 2:
    die("outbox-relay --help does not start with 'usage: outbox-relay ...' and a paragraph")
usage_args, summary = m.group(1), " ".join(blocks[1].split())
SECTION = {"commands": "COMMANDS", "options": "OPTIONS", "exit codes": "EXIT STATUS",
           "signals": "SIGNALS"}
# Paragraph titles that may start a line in the middle of a block; any other
# "word: " at the start of a line only starts a paragraph after a blank line
# (a wrapped line may well begin with "cleanly: ").
TAIL_TITLES = ("exit codes", "signals")
sections = []        # (heading, kind, content)
for blk in blocks[2:]:
    lines = blk.splitlines()
    t = re.fullmatch(r"([a-z][a-z ]*):", lines[0])
    if t:
        title = t.group(1)
        sections.append((SECTION.get(title, title.upper()), "entries",
                         entries(lines[1:], title)))
        continue
    nxt = "|".join(re.escape(x) for x in TAIL_TITLES)
    pieces = re.split(r"(?m)^(?=(?:" + nxt + r"): )", blk)
    for piece in pieces:
        if not piece.strip():
            continue
        t = re.match(r"([a-z][a-z ]*): (.*)", piece, re.S)
        if t:
            sections.append((SECTION.get(t.group(1), t.group(1).upper()), t.group(1),
                             " ".join(t.group(2).split())))
        else:        # prose without a title
            sections.append(("NOTES", "prose", " ".join(piece.split())))
commands = next((c for h, k, c in sections if h == "COMMANDS"), None)
if not commands:
    die("no 'commands:' block in outbox-relay --help")

def header(title, section, volume):
    return [
        f'.TH {arg(title)} {section} "{date}" {arg("outbox-relay " + version)} {arg(volume)}',
        # Keys, paths and commands must not be hyphenated, nor stretched.
        ".nh",
        ".ad l",
    ]

man1 = header("OUTBOX-RELAY", 1, "User Commands")
man1 += [".SH NAME"] + wrap("outbox\\-relay \\- " + esc(summary[:1].lower() + summary[1:].rstrip(".")))
man1 += [".SH SYNOPSIS"]
man1 += [".B outbox\\-relay", synopsis(usage_args)]
for term, _ in commands:
    man1 += [".br", ".B outbox\\-relay", synopsis(term)]
man1 += [".SH DESCRIPTION"] + paras(
    summary,
    "The relay reads a configuration file (see outbox-relay.conf(5)): a [relay] "
    "section for the process and one [pipeline NAME] section per store -> broker "
    "pipeline. Stores and brokers are plugins, shared objects loaded at run time.",
    "With metrics_listen set, the relay serves Prometheus /metrics, /healthz (the "
    "process is alive) and /readyz (every pipeline has its store and broker "
    "connected, its circuit closed, and makes progress while events are pending).",
    "Options may come before or after the command. Without a command, run is meant.")
for heading, kind, content in sections:
    man1 += [".SH " + arg(heading)]
    if kind == "entries":
        for term, desc in content:
            man1 += [".TP", synopsis(term)] + para(desc)
    elif kind == "exit codes":
        codes = re.split(r",\s+(?=\d+ )", content)
        if not all(re.match(r"\d+ ", c) for c in codes):
            die(f"cannot split the exit codes: {content!r}")
        for c in codes:
            code, _, meaning = c.partition(" ")
            man1 += [".TP", "\\fB" + code + "\\fR"] + para(meaning)
    else:
        man1 += para(content[:1].upper() + content[1:].rstrip(".") + ".")
man1 += [".SH FILES",
         ".TP", "\\fIplugins.conf\\fR"] + para(
    "the configuration file read when -c is not given, in the working directory") + [
         ".TP", "\\fI" + esc(conf_install_path) + "\\fR"] + para(
    "the shipped default configuration, to copy") + [
         ".TP", "\\fI" + esc(plugin_install_dir) + "/\\fR"] + para(
    "the plugins, obx_store_NAME.so and obx_broker_NAME.so; the directories in "
    "plugin_path are searched before it, the binary's own directory and its "
    "plugins/ subdirectory after it")
man1 += [".SH SEE ALSO", ".BR outbox\\-relay.conf (5)"]

# ---- help relay|pipeline|PLUGIN -------------------------------------------

def keys(text, what):
    """The entries of obx_options_help: 'KEY (ATTRS)' at column 0, then
    lines indented by four: an optional 'values: ...', an optional masking
    note, the wrapped description."""
    items = []
    for l in text.splitlines():
        if not l.strip():
            continue
        if not l.startswith(" "):
            m = re.fullmatch(r"(\S+) \((.*)\)", l)
            if not m:
                die(f"{what}: not a key line: {l!r}")
            items.append({"key": m.group(1), "attrs": m.group(2), "values": None,
                          "notes": [], "desc": []})
        elif not items:
            die(f"{what}: description before any key: {l!r}")
        else:
            s = l.strip()
            it = items[-1]
            if s.startswith("values: ") and not it["desc"] and it["values"] is None:
                it["values"] = s[len("values: "):]
            elif re.fullmatch(r"values of keys .* are masked", s) and not it["desc"]:
                it["notes"].append(s)
            else:
                it["desc"].append(s)
    if not items:
        die(f"{what}: no keys")
    return items

def split_help(text, what):
    """The heading lines, then the key entries after the first blank line
    that follows a line ending in ':'."""
    m = re.search(r":\n\n", text)
    if not m:
        die(f"{what}: no 'keys:' heading")
    return text[:m.start()], keys(text[m.end():], what)

def render_keys(items):
    r = []
    for it in items:
        r += [".TP", "\\fB\\%" + esc(it["key"]) + "\\fR (" + esc(it["attrs"]) + ")"]
        body = []
        if it["values"] is not None:
            body.append("values: " + ", ".join(
                "\\fB" + esc(v.strip()) + "\\fR" for v in it["values"].split(",")))
        body += [esc(n) for n in it["notes"]]
        if it["desc"]:
            body.append(esc(" ".join(it["desc"])))
        for i, b in enumerate(body):
            if i:
                r.append(".br")
            r += wrap(b)
    return r

_, relay_keys = split_help(read("relay"), "help relay")
_, pipeline_keys = split_help(read("pipeline"), "help pipeline")

plugins = []
for l in read("plugins").splitlines():
    m = re.match(r"(store|broker)\s+(\S+)\s+(\S+)\s+(.*)", l)
    if m:
        plugins.append(m.groups())
if not plugins:
    die("outbox-relay plugins listed no plugin")
plugins.sort(key=lambda p: p[1])

man5 = header("OUTBOX-RELAY.CONF", 5, "File Formats")
man5 += [".SH NAME", "outbox\\-relay.conf \\- configuration file of outbox\\-relay(1)",
         ".SH SYNOPSIS", "\\fIplugins.conf\\fR, or the file given with \\fB\\-c\\fR",
         ".SH DESCRIPTION"]
man5 += paras(
    "One INI file configures the relay: a [relay] section for the process and one "
    "[pipeline NAME] section per store -> broker pipeline. Check a file with "
    "outbox-relay check -c FILE (add --connect to reach the stores and brokers too).",
    "key = value, one per line; # or ; at the start of a line, or after whitespace, "
    "starts a comment. A key may appear once per section. ${env:NAME} expands an "
    "environment variable anywhere in a value, so secrets stay out of the file; an "
    "unset variable is an error, never an empty string. ${field} in a route template "
    "(topic, and broker templates) is an event field: aggregate_type, aggregate_id, "
    "event_type, event_id, key, topic.",
    "Durations take a unit: 250ms, 5s, 2m, 1h, 1d, or compounds such as 1h30m, each "
    "unit once, largest first. Sizes: 512, 64KiB, 1MiB, 1GB. Ranges: MIN..MAX. A "
    "list is comma-separated. A prefix key (NAME.*) takes any key below it.",
    "Each key below shows its type, its default (or that it is required), its "
    "allowed range and whether it is a secret (masked in logs and in check). "
    "Every error names the file, the line and the key.")
man5 += [".SH \"[relay] SECTION\""] + render_keys(relay_keys)
man5 += [".SH \"[pipeline NAME] SECTIONS\""] + para(
    "One per pipeline; NAME labels its log lines and metrics. The store.* and "
    "broker.* keys go to the store and broker plugins, whose keys follow.") + render_keys(pipeline_keys)
for kind, title in (("store", "STORE PLUGINS"), ("broker", "BROKER PLUGINS")):
    mine = [p for p in plugins if p[0] == kind]
    if not mine:
        continue
    man5 += [f'.SH "{title}"'] + para(
        f"Set with {kind} = NAME in a [pipeline] section; their keys are {kind}.KEY in the same section.")
    for _, name, ver, desc in mine:
        _, items = split_help(read(f"plugin/{kind}.{name}"), f"help {name}")
        man5 += [".SS " + arg(name)] + para(f"{desc} (version {ver}).") + render_keys(items)
man5 += [".SH EXAMPLE", ".RS", ".nf"]
man5 += [line(esc(l)) for l in (
    "[relay]",
    "log_level = info",
    "metrics_listen = 127.0.0.1:9464",
    "",
    "[pipeline orders]",
    "store = sqlite",
    "broker = stdout",
    "topic = outbox.${aggregate_type}",
    "store.path = outbox.db",
    "broker.output = -",
)]
man5 += [".fi", ".RE"]
man5 += [".SH FILES", ".TP", "\\fI" + esc(conf_install_path) + "\\fR"] + para(
    "the shipped default configuration, every key commented")
man5 += [".SH SEE ALSO", ".BR outbox\\-relay (1)", ".PP"] + para(
    "outbox-relay help PLUGIN prints the keys of any plugin, also one built out of the tree.")

for name, text in (("outbox-relay.1", man1), ("outbox-relay.conf.5", man5)):
    with open(os.path.join(out, name + ".tmp"), "w") as f:
        f.write("\n".join(text) + "\n")
    os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
PY
