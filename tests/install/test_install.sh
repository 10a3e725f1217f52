#!/usr/bin/env bash
# cmake --install into a temp prefix, then build an out-of-tree plugin with
# nothing but `pkg-config --cflags outbox-plugin` and run it with the
# installed binary and the installed sqlite store.
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
echo "install test: ok ($plugindir, out-of-tree plugin published $n events)"
