# shellcheck shell=bash
# Shared by rmq_start.sh, rmq_stop.sh and rmq_ctl.sh: where
# a private test RabbitMQ lives and how to run its tools. Sourced, not
# executed.
#
# STATE_DIR (a test build directory) holds:
#   rmq_url    amqp://obx:PASSWORD@127.0.0.1:PORT/ (written last, on success)
#   rmq_state  ROOT=..., NODE=..., PORT=... of the running server
#
# Everything the server needs is under ROOT (a temp dir): mnesia, logs,
# pid file, config, and a HOME with its own Erlang cookie, so rabbitmqctl
# and the node share a cookie without touching /var/lib/rabbitmq. The node
# has its own name, AMQP port, distribution port and epmd port: it never
# meets the system's RabbitMQ or another test run's.
#
# Debian's /usr/sbin wrappers run every tool as the `rabbitmq` user via
# su; we call the scripts under /usr/lib/rabbitmq/bin ourselves, through
# runuser when we are root, so the environment below reaches them.

RMQ_BIN=${OBX_RMQ_BINDIR:-/usr/lib/rabbitmq/bin}

# Run a RabbitMQ tool as the owner of ROOT with the server's environment
# (rmq_state must be loaded).
rmq_as_owner() {
    local envs=(
        "HOME=$ROOT/home"
        "RABBITMQ_NODENAME=$NODE"
        "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
        "RABBITMQ_NODE_PORT=$PORT"
        "RABBITMQ_DIST_PORT=$DIST_PORT"
        "ERL_EPMD_PORT=$EPMD_PORT"
        "RABBITMQ_MNESIA_BASE=$ROOT/mnesia"
        "RABBITMQ_LOG_BASE=$ROOT/log"
        "RABBITMQ_PID_FILE=$ROOT/rabbitmq.pid"
        "RABBITMQ_CONFIG_FILE=$ROOT/rabbitmq.conf"
        "RABBITMQ_ENABLED_PLUGINS_FILE=$ROOT/enabled_plugins"
        "RABBITMQ_ADVANCED_CONFIG_FILE=$ROOT/advanced.config"
        "RABBITMQ_CONF_ENV_FILE=$ROOT/rabbitmq-env.conf"
        "RABBITMQ_ALLOW_INPUT="
        "LC_ALL=C.UTF-8"
    )
    if ((EUID == 0)); then
        runuser -u rabbitmq -- env "${envs[@]}" "$@"
    else
        env "${envs[@]}" "$@"
    fi
}

rmq_ctl() {
    rmq_as_owner "$RMQ_BIN/rabbitmqctl" -n "$NODE" "$@"
}

# Start the node recorded in rmq_state and wait until it serves AMQP.
# await_startup fails at once ("not running at all") while the node has
# not yet registered with epmd, so ask again until it answers, the node's
# process is gone, or two minutes passed.
rmq_boot() {
    rmq_as_owner "$RMQ_BIN/rabbitmq-server" -detached >>"$ROOT/start.log" 2>&1 ||
        return 1
    local end=$((SECONDS + 120)) start=$SECONDS
    while ((SECONDS < end)); do
        rmq_ctl await_startup --timeout 60 >>"$ROOT/start.log" 2>&1 && return 0
        if ((SECONDS - start > 10)) && ! pgrep -f -- "-home $ROOT/home " >/dev/null; then
            echo "rmq_boot: the node's process is gone" >>"$ROOT/start.log"
            return 1
        fi
        sleep 1
    done
    return 1
}

# Stop the node (rabbitmqctl stop waits for the pid to exit), then kill
# what is left of it and of its private epmd. Given a pid file that does
# not exist (a node that died while booting never wrote it), rabbitmqctl
# stop waits for it forever: then it gets none, and fails at once.
rmq_halt() {
    local pidfile=()
    [[ -f $ROOT/rabbitmq.pid ]] && pidfile=("$ROOT/rabbitmq.pid")
    rmq_ctl stop "${pidfile[@]}" >/dev/null 2>&1 || true
    local pid
    if [[ -f $ROOT/rabbitmq.pid ]]; then
        pid=$(cat "$ROOT/rabbitmq.pid" 2>/dev/null || true)
        [[ $pid =~ ^[0-9]+$ ]] && kill -9 "$pid" 2>/dev/null || true
        rm -f "$ROOT/rabbitmq.pid"
    fi
}

rmq_kill_epmd() {
    ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
}

# Stop the server recorded in $1/rmq_state, if any, and remove its files.
rmq_stop_recorded() {
    local state=$1/rmq_state ROOT="" NODE="" PORT="" DIST_PORT="" EPMD_PORT=""
    [[ -f $state ]] || return 0
    # shellcheck disable=SC1090
    source "$state"
    if [[ -n $ROOT && -d $ROOT ]]; then
        rmq_halt
        rmq_kill_epmd
        [[ $ROOT == */obx-rmq-* ]] && rm -rf -- "$ROOT"
    fi
    rm -f -- "$state" "$1/rmq_url" "$1/rmq_tls"
}
