#!/usr/bin/env bash
# cmake --install into a temp prefix, then build an out-of-tree plugin with
# nothing but `pkg-config --cflags outbox-plugin` and run it with the
# installed binary and the installed sqlite store; then build the example
# plugins installed under the docs directory with their own Makefile and
# relay the demo events from one to the other; then build the conformance
# kit's skeleton harnesses against the installed kit and run them.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(find "$tmp/prefix" -name outbox-plugin.pc -printf '%h\n' | head -n1)
[[ -n $libdir ]] || { echo "no outbox-plugin.pc installed"; exit 1; }
export PKG_CONFIG_PATH=$libdir
cflags=$(pkg-config --cflags outbox-plugin)
plugindir=$(pkg-config --variable=plugindir outbox-plugin)
[[ -f $plugindir/obx_store_sqlite.so ]] || { echo "sqlite plugin not installed in $plugindir"; exit 1; }
mkdir "$tmp/mine"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -shared -fPIC $cflags \
    -o "$tmp/mine/obx_broker_hello.so" "$src/hello_broker.c"
cat >"$tmp/relay.conf" <<CONF
[relay]
plugin_path = $tmp/mine
metrics_listen = off
log_level = warn
[pipeline p]
store = sqlite
broker = hello
store.path = $tmp/outbox.db
broker.greeting = hi
CONF
bin=$tmp/prefix/bin/outbox-relay
"$bin" plugins -c "$tmp/relay.conf" | grep -q "hello" || { echo "plugin not listed"; exit 1; }
"$bin" help hello -c "$tmp/relay.conf" | grep -q "broker.greeting" || { echo "no help"; exit 1; }
"$bin" demo -c "$tmp/relay.conf" -n 3 >/dev/null
out=$("$bin" run -c "$tmp/relay.conf" --once)
n=$(grep -c '^hi ' <<<"$out" || true)
[[ $n == 3 ]] || { echo "expected 3 greetings, got: $out"; exit 1; }

docdir=$tmp/prefix/share/doc/outbox-relay
[[ -f $docdir/writing-plugins.md ]] || { echo "no writing-plugins.md in $docdir"; exit 1; }
cp -r "$docdir/examples" "$tmp/examples"
make -s -C "$tmp/examples" CFLAGS="-O2 -Wall -Wextra -Werror -Wno-unused-parameter" >/dev/null
cat >"$tmp/skel.conf" <<CONF
[relay]
plugin_path = $tmp/examples
metrics_listen = off
log_level = warn
[pipeline p]
store = skeleton
broker = skeleton
store.dir = $tmp/events
broker.path = $tmp/skel.out
CONF
"$bin" plugins -c "$tmp/skel.conf" | grep -q "^store  *skeleton" || { echo "store skeleton not listed"; exit 1; }
"$bin" plugins -c "$tmp/skel.conf" | grep -q "^broker  *skeleton" || { echo "broker skeleton not listed"; exit 1; }
"$bin" demo -c "$tmp/skel.conf" -n 3 >/dev/null
"$bin" run -c "$tmp/skel.conf" --once
m=$(grep -c '^outbox.order order-' "$tmp/skel.out" || true)
[[ $m == 3 ]] || { echo "expected 3 lines from the skeletons, got: $(cat "$tmp/skel.out")"; exit 1; }
# The conformance kit, as an out-of-tree author runs it: the skeleton
# harnesses built against the installed header and library only, run on
# the skeleton plugins just built from the installed sources.
pkg-config --exists outbox-contract || { echo "no outbox-contract.pc installed"; exit 1; }
[[ -f $tmp/prefix/include/outbox/contract.h ]] || { echo "outbox/contract.h not installed"; exit 1; }
for kind in store broker; do
    # shellcheck disable=SC2046,SC2086
    cc -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter ${OBX_HARNESS_FLAGS:-} \
        -o "$tmp/contract_$kind" "$src/../contract/contract_${kind}_skeleton.c" \
        $(pkg-config --cflags --libs outbox-contract)
    "$tmp/contract_$kind" "$tmp/examples/obx_${kind}_skeleton.so" >"$tmp/contract_$kind.out" 2>&1 ||
        { cat "$tmp/contract_$kind.out"; echo "contract suite failed on the $kind skeleton"; exit 1; }
    grep -q "0 failed" "$tmp/contract_$kind.out" || { cat "$tmp/contract_$kind.out"; exit 1; }
done
echo "install test: ok ($plugindir, out-of-tree plugin published $n events, installed examples $m)"
