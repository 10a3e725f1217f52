#!/usr/bin/env bash
# The generated man pages: lint clean (groff -ww, mandoc -Tlint), not stale
# (regenerating from the binary and plugins as built gives the same bytes),
# complete (every word of every command, option, exit code and signal that
# `outbox-relay --help` prints, in order, and every key line, values line and
# description that `help relay|pipeline|PLUGIN` prints for every plugin
# `outbox-relay plugins` finds, are in the rendered text), and installed by
# `cmake --install` into share/man/man1 and man5.
#
#   bash tests/ops/test_man.sh BUILD_DIR SOURCE_DIR GEN_ARGS...
#
# GEN_ARGS: gen-man.sh's arguments after BIN, as man/CMakeLists.txt passes
# them (its first is the directory holding the pages).
set -euo pipefail
build=$(realpath "$1") src=$(realpath "$2")
shift 2
gen_args=("$@")
mandir=${gen_args[0]}
bin=$build/outbox-relay
fail() { echo "test_man: FAIL: $*" >&2; exit 1; }
for tool in groff mandoc python3; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/deps.sh installs it)"
done
pages=("$mandir/outbox-relay.1" "$mandir/outbox-relay.conf.5")
for p in "${pages[@]}"; do
    [[ -s $p ]] || fail "$p missing: the build generates it (target 'man')"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Lint: both tools must print nothing.
out=$(groff -ww -man -z "${pages[@]}" 2>&1) || fail "groff -ww failed: $out"
[[ -z $out ]] || fail "groff -ww -man -z warns:"$'\n'"$out"
out=$(mandoc -Tlint -W all "${pages[@]}" 2>&1) || fail "mandoc -Tlint:"$'\n'"$out"
[[ -z $out ]] || fail "mandoc -Tlint -W all warns:"$'\n'"$out"
echo "lint: groff -ww and mandoc -Tlint -W all print nothing"

# 2. Not stale: regenerate from the same binary and plugins, compare.
regen=("$tmp/regen" "${gen_args[@]:1}")
bash "$src/scripts/gen-man.sh" "$bin" "${regen[@]}"
for p in outbox-relay.1 outbox-relay.conf.5; do
    cmp -s "$mandir/$p" "$tmp/regen/$p" ||
        fail "$mandir/$p is stale (differs from what gen-man.sh makes now); rebuild: cmake --build $build --target man"$'\n'"$(diff "$mandir/$p" "$tmp/regen/$p" | head -20)"
done
echo "in sync: regenerating gives the same bytes"

# 3. Complete: compare the rendered text with what the binary prints.
# A line length no paragraph reaches, so nothing is hyphenated or broken.
render() { groff -man -Tascii -rLL=3000n -P-c -P-b -P-o -P-u "$1" 2>/dev/null; }
render "$mandir/outbox-relay.1" >"$tmp/man1.txt"
render "$mandir/outbox-relay.conf.5" >"$tmp/man5.txt"
printf '[relay]\nplugin_path = %s\n' "${gen_args[1]}" >"$tmp/gen.conf"
(cd "$tmp" && "$bin" --help) >"$tmp/usage"
(cd "$tmp" && "$bin" help relay) >"$tmp/help.relay"
(cd "$tmp" && "$bin" help pipeline) >"$tmp/help.pipeline"
(cd "$tmp" && "$bin" plugins -c gen.conf) >"$tmp/plugins"
while read -r kind name _; do
    [[ $kind == store || $kind == broker ]] || continue
    (cd "$tmp" && "$bin" help "$name" -c gen.conf) >"$tmp/help.plugin.$name"
done <"$tmp/plugins"
python3 - "$tmp" "${OBX_PLUGIN_TARGETS:-}" <<'PY'
import glob, os, re, sys
tmp, targets = sys.argv[1], sys.argv[2].split()
def read(n):
    with open(os.path.join(tmp, n)) as f:
        return f.read()
errors = []
def words(s):
    return s.split()

def sections(text):
    """Rendered page: {HEADING: body} for lines at column 0."""
    out, cur = {}, None
    for l in text.splitlines():
        if l and not l[0].isspace():
            cur = l.strip()
            out.setdefault(cur, "")
        elif cur:
            out[cur] += l + "\n"
    return out

# outbox-relay(1) against --help.
usage, man1 = read("usage"), read("man1.txt")
s1 = sections(man1)
def usage_block(title):
    m = re.search(r"^" + title + r":\n(.*?)(?:\n\n|\Z)", usage, re.S | re.M)
    if not m:
        errors.append(f"--help has no '{title}:' block")
        return ""
    return m.group(1)
# COMMANDS and OPTIONS: the same words as --help's blocks, nothing more.
for title, heading in (("commands", "COMMANDS"), ("options", "OPTIONS")):
    want, got = words(usage_block(title)), words(s1.get(heading, ""))
    if want != got:
        errors.append(f"outbox-relay(1) {heading} is not --help's '{title}:' text:\n"
                      f"  --help: {' '.join(want)}\n  page:   {' '.join(got)}")
# Everything --help says is in the page, in order: each paragraph (split at
# a line starting 'word: ') as a run of words, with or without its title.
def plain(s):
    return re.sub(r"[,.;:()]", " ", s).lower().split()
page = plain(man1)
def has_run(ws):
    n = len(ws)
    return any(page[i:i + n] == ws for i in range(len(page) - n + 1))
blocks = usage.rstrip("\n").split("\n\n")
m0 = re.fullmatch(r"usage: (outbox-relay .*)", blocks[0])
if not m0 or not has_run(plain(m0.group(1))):
    errors.append(f"outbox-relay(1) lacks the usage line {blocks[0]!r}")
for blk in blocks[1:]:
    for piece in re.split(r"(?m)^(?=[a-z][a-z ]*:(?: |$))", blk):
        if not piece.strip():
            continue
        t = re.match(r"([a-z][a-z ]*):(?: |$)", piece)
        rest = piece[t.end():] if t else piece
        if not (has_run(plain(piece)) or has_run(plain(rest))):
            errors.append(f"outbox-relay(1) lacks this of --help: {piece!r}")
for cmd in re.findall(r"^  ([a-z]+) ", usage_block("commands"), re.M):
    if not re.search(r"^\s+outbox-relay " + cmd + r"\b", s1.get("SYNOPSIS", ""), re.M):
        errors.append(f"outbox-relay(1) SYNOPSIS lacks the command {cmd}")
for h in ("EXIT STATUS", "SIGNALS", "FILES"):
    if not s1.get(h, "").strip():
        errors.append(f"outbox-relay(1) has no {h} section")

# outbox-relay.conf(5) against help relay|pipeline|PLUGIN.
man5 = read("man5.txt")
lines5 = [l.strip() for l in man5.splitlines()]
flat5 = " ".join(man5.split())
helps = ["help.relay", "help.pipeline"] + sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(tmp, "help.plugin.*")))
if len(helps) < 3:
    errors.append("outbox-relay plugins listed no plugin")
nkeys = 0
for h in helps:
    text = read(h)
    body = text[text.index(":\n\n") + 3:] if ":\n\n" in text else ""
    if h.startswith("help.plugin."):
        first = text.splitlines()[0]
        m = re.match(r"(store|broker) plugin '(\S+)' (\S+): (.*)", first)
        if not m:
            errors.append(f"{h}: unexpected first line {first!r}")
            continue
        kind, name, ver, desc = m.groups()
        sec = sections(man5).get(kind.upper() + " PLUGINS", "")
        if not re.search(r"^   " + re.escape(name) + r"$", sec, re.M):
            errors.append(f"outbox-relay.conf(5) has no subsection for the {kind} plugin {name}")
        if f"{desc} (version {ver})." not in " ".join(sec.split()):
            errors.append(f"outbox-relay.conf(5) lacks the description of {name}")
    entry = None
    for l in body.splitlines() + [""]:
        if l and not l.startswith(" "):
            nkeys += 1
            if l not in lines5:
                errors.append(f"{h}: key line {l!r} is not a line of outbox-relay.conf(5)")
            entry = []
        elif l.startswith("    "):
            s = l.strip()
            if s.startswith("values: ") and s not in lines5:
                errors.append(f"{h}: {s!r} is not a line of outbox-relay.conf(5)")
            entry.append(s)
        elif entry:
            desc = " ".join(x for x in entry if not x.startswith("values: "))
            if " ".join(desc.split()) not in flat5:
                errors.append(f"{h}: description not in outbox-relay.conf(5): {desc!r}")
            entry = None
# Every plugin the build made (obx_store_NAME, obx_broker_NAME targets).
if not targets:
    errors.append("OBX_PLUGIN_TARGETS is empty: run this through ctest")
s5 = sections(man5)
for t in targets:
    m = re.fullmatch(r"obx_(store|broker)_(\w+)", t)
    if not m:
        errors.append(f"plugin target {t} is not obx_store_NAME or obx_broker_NAME")
    elif not re.search(r"^   " + m.group(2) + r"$", s5.get(m.group(1).upper() + " PLUGINS", ""), re.M):
        errors.append(f"the build makes the {m.group(1)} plugin {m.group(2)} ({t}); "
                      f"outbox-relay.conf(5) has no section for it (did it fail to load? "
                      f"see the warnings of: outbox-relay plugins)")
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"complete: every paragraph of --help; {nkeys} keys of the core and of "
      f"{len(helps) - 2} plugins ({len(targets)} built), with values and descriptions")
PY

# 4. Installed: CMAKE_INSTALL_MANDIR/man1 and man5, where man(1) looks.
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for page in man1/outbox-relay.1 man5/outbox-relay.conf.5; do
    found=$tmp/prefix/share/man/$page
    [[ -f $found ]] || fail "cmake --install did not install $page (nothing at $found)"
    cmp -s "$found" "$mandir/${page#*/}" || fail "installed $found differs from $mandir/${page#*/}"
done
echo "installed: share/man/man1/outbox-relay.1, share/man/man5/outbox-relay.conf.5"
echo "test_man: ok"
