#!/usr/bin/env bash
# Start a private RabbitMQ for the tests (DESIGN 10): its own node name,
# AMQP, distribution and epmd ports on 127.0.0.1, its own temp directory
# (owned by the `rabbitmq` user when we are root: a root-only directory
# makes the server exit with 69), a user `obx` with a random password.
# Also a TLS listener with certificates made here (a test CA; the server
# certificate names DNS:localhost only, so 127.0.0.1 fails hostname
# verification; a client certificate; a second CA nobody signed with).
# Writes STATE_DIR/rmq_tls (TLS_URL, CA, OTHER_CA, CLIENT_CERT, CLIENT_KEY)
# and, last, STATE_DIR/rmq_url when the server accepts connections.
#
#   tests/rabbitmq/rmq_start.sh STATE_DIR
#
# Exits non-zero (and the tests that need the server fail) when it cannot
# start. A server left over from an interrupted run is stopped first.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/rabbitmq/rmq_common.sh
source "$here/rmq_common.sh"

STATE_DIR=${1:?usage: rmq_start.sh STATE_DIR}
mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)
rmq_stop_recorded "$STATE_DIR"

die() {
    echo "rmq_start.sh: $*" >&2
    exit 1
}

[[ -x $RMQ_BIN/rabbitmq-server && -x $RMQ_BIN/rabbitmqctl ]] ||
    die "no RabbitMQ server in $RMQ_BIN (install the 'rabbitmq-server' package: scripts/deps.sh)"
command -v epmd >/dev/null || die "no epmd (erlang-base) on PATH"
command -v openssl >/dev/null || die "no openssl (the 'openssl' package: scripts/deps.sh)"
if ((EUID == 0)); then
    getent passwd rabbitmq >/dev/null || die "running as root but there is no 'rabbitmq' user"
    command -v runuser >/dev/null || die "running as root needs runuser (util-linux)"
fi

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/obx-rmq-XXXXXX")
chmod 0755 "$ROOT"
mkdir -p "$ROOT/home" "$ROOT/mnesia" "$ROOT/log"
# The Erlang cookie rabbitmqctl and the node share (HOME=$ROOT/home).
od -An -N20 -tx1 /dev/urandom | tr -d ' \n' >"$ROOT/home/.erlang.cookie"
chmod 0400 "$ROOT/home/.erlang.cookie"
echo "[]." >"$ROOT/enabled_plugins"
echo "[]." >"$ROOT/advanced.config"
: >"$ROOT/rabbitmq-env.conf"

# Certificates for the TLS listener (EC keys: quick to make).
TLS=$ROOT/tls
mkdir -p "$TLS"
mkcert() { # NAME SUBJECT [SIGNER SAN]
    if [[ -z ${3:-} ]]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$TLS/$1.key" -out "$TLS/$1.pem" -days 3 -subj "$2" 2>/dev/null
    else
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$TLS/$1.key" -out "$TLS/$1.csr" -subj "$2" 2>/dev/null
        printf '%s\n' "$4" >"$TLS/$1.ext"
        openssl x509 -req -in "$TLS/$1.csr" -CA "$TLS/$3.pem" -CAkey "$TLS/$3.key" \
            -CAcreateserial -out "$TLS/$1.pem" -days 3 -extfile "$TLS/$1.ext" 2>/dev/null
    fi
}
mkcert ca "/CN=obx-test-ca" || die "openssl: cannot make the test CA"
mkcert other-ca "/CN=obx-other-ca" || die "openssl: cannot make the second CA"
mkcert server "/CN=localhost" ca "subjectAltName=DNS:localhost" || die "openssl: server certificate"
mkcert client "/CN=obx-client" ca "extendedKeyUsage=clientAuth" || die "openssl: client certificate"
chmod 0644 "$TLS"/*
((EUID == 0)) && chown -R rabbitmq: "$ROOT"

NODE="" PORT="" DIST_PORT="" EPMD_PORT="" TLS_PORT=""
cleanup_on_error() {
    local rc=$?
    if ((rc != 0)); then
        [[ -f $ROOT/start.log ]] && tail -n 20 "$ROOT/start.log" >&2
        ls "$ROOT"/log/*.log >/dev/null 2>&1 && tail -n 30 "$ROOT"/log/*.log >&2
        if [[ -n $NODE ]]; then
            rmq_halt
            rmq_kill_epmd
        fi
        [[ -n ${OBX_RMQ_KEEP:-} ]] || rm -rf -- "$ROOT"
    fi
}
trap cleanup_on_error EXIT

# Ports nobody listens on. The server binds them itself, so a race with
# another process only costs a retry.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
started=false
for attempt in ${OBX_RMQ_ATTEMPTS:-1 2 3}; do
    PORT=$((20000 + RANDOM % 40000))
    DIST_PORT=$((PORT + 1))
    EPMD_PORT=$((PORT + 2))
    TLS_PORT=$((PORT + 3))
    port_free "$PORT" && port_free "$DIST_PORT" && port_free "$EPMD_PORT" &&
        port_free "$TLS_PORT" || continue
    NODE="obx-test-$PORT@localhost"
    cat >"$ROOT/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$PORT
listeners.ssl.1 = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $TLS/ca.pem
ssl_options.certfile = $TLS/server.pem
ssl_options.keyfile = $TLS/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users = none
log.console = false
log.file.level = warning
max_message_size = 1048576
vm_memory_high_watermark.relative = 0.6
disk_free_limit.absolute = 1MB
CONF
    ((EUID == 0)) && chown rabbitmq: "$ROOT/rabbitmq.conf"
    cat >"$ROOT/state.tmp" <<STATE
ROOT='$ROOT'
NODE='$NODE'
PORT='$PORT'
DIST_PORT='$DIST_PORT'
EPMD_PORT='$EPMD_PORT'
STATE
    mv "$ROOT/state.tmp" "$STATE_DIR/rmq_state"
    if rmq_boot; then
        started=true
        break
    fi
    echo "rmq_start.sh: start on port $PORT failed (attempt $attempt), retrying" >&2
    rmq_halt
    rmq_kill_epmd
done
$started || die "the server did not start"

rmq_ctl add_user obx "$PASSWORD" >/dev/null || die "add_user failed"
rmq_ctl set_permissions -p / obx '.*' '.*' '.*' >/dev/null || die "set_permissions failed"

cat >"$STATE_DIR/rmq_tls" <<TLSSTATE
TLS_URL=amqps://obx:$PASSWORD@localhost:$TLS_PORT/
TLS_URL_IP=amqps://obx:$PASSWORD@127.0.0.1:$TLS_PORT/
CA=$TLS/ca.pem
OTHER_CA=$TLS/other-ca.pem
CLIENT_CERT=$TLS/client.pem
CLIENT_KEY=$TLS/client.key
TLSSTATE

trap - EXIT
# Written last: its presence means the server is up.
printf 'amqp://obx:%s@127.0.0.1:%s/\n' "$PASSWORD" "$PORT" >"$STATE_DIR/rmq_url"
echo "rmq_start.sh: RabbitMQ node $NODE on port $PORT, files in $ROOT"
