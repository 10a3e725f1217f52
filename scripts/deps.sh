#!/usr/bin/env bash
# Installs every Debian 12 (bookworm) package that the build, the quick start
# and the tests need. Safe to run again: when everything is installed it says
# nothing and returns at once (one dpkg-query, no apt-get).
#
#   bash scripts/deps.sh
#
# Runs apt-get as root, through sudo when you are not root.
set -euo pipefail

# One package a line; a comment says who needs it.
PACKAGES=(
    build-essential      # gcc, make, libc headers
    cmake
    pkg-config
    libinih-dev          # config file parser
    libsqlite3-dev       # sqlite store
    libjansson-dev       # JSON (stdout broker, headers column)
    libmicrohttpd-dev    # /metrics, /healthz, /readyz
    libcmocka-dev        # unit and integration tests
    sqlite3              # sqlite3 CLI: look into the quick start's outbox.db
    curl                 # tests scrape the HTTP endpoints
    prometheus           # for /usr/bin/promtool only (promtool check metrics); see below
    clang                # fuzz build (scripts/test.sh)
    libclang-rt-14-dev   # libFuzzer and clang's sanitizer runtimes
    llvm-14              # llvm-symbolizer: readable stack traces in fuzz/ASan reports
    libpq-dev            # pg_poll, pg_wal stores
    postgresql           # initdb/pg_ctl for the tests' private server (tests/pg); the system cluster is never used
    python3              # the build: scripts/gen-man.sh writes the man pages; bench/run uses pgbench and pg_recvlogical, which come with postgresql
    python3-yaml         # tests/ops: reads the alert rules to check the metric names they use
    mandoc               # tests/ops: mandoc -Tlint on the generated man pages
    groff-base           # tests/ops: groff -ww lints the man pages and renders them to compare with --help
    librdkafka-dev       # kafka broker; its tests use librdkafka's mock cluster (Debian has no Kafka broker)
    systemd              # systemd-analyze verify on contrib/systemd units (tests/ops); nothing is started
    man-db               # man: systemd-analyze checks the units' Documentation= pages
    librabbitmq-dev      # rabbitmq broker (librabbitmq-c 0.11)
    rabbitmq-server      # the tests' private RabbitMQ node (tests/rabbitmq); the system node is never used
    openssl              # tests/rabbitmq/rmq_start.sh: certificates for the node's TLS listener
    libnats-dev          # nats broker (cnats 3.4)
    nats-server          # the tests' private nats-server -js (tests/nats); the system service is never used
)

# Which of PACKAGES are not fully installed ("ii"). dpkg-query skips names it
# has never heard of (exit 1, message on stderr): those count as missing.
missing_packages() {
    local -A ok=()
    local name status
    while read -r name status; do
        [[ $status == ii ]] && ok[$name]=1
    done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
    for name in "${PACKAGES[@]}"; do
        [[ -n ${ok[$name]:-} ]] || printf '%s\n' "$name"
    done
}

mapfile -t MISSING < <(missing_packages)
((${#MISSING[@]} == 0)) && exit 0

if ((EUID == 0)); then
    AS_ROOT=(env DEBIAN_FRONTEND=noninteractive)
elif command -v sudo >/dev/null 2>&1; then
    AS_ROOT=(sudo env DEBIAN_FRONTEND=noninteractive)
else
    echo "deps.sh: need root to install: ${MISSING[*]}" >&2
    echo "deps.sh: run this script as root, or install sudo" >&2
    exit 1
fi

echo "deps.sh: installing ${MISSING[*]}"

# Debian's prometheus package is the only one that ships promtool (it pulls
# ~330 MB, mostly libjs-moment-timezone for the web UI), and its
# postinst enables and starts a Prometheus server (prometheus.service on
# systemd, /etc/init.d/prometheus otherwise; port 9090). Nothing of ours uses
# that server. When this run is the one installing it, keep it from starting:
# on systemd with a runtime mask (lives in /run, never outlives a reboot, and
# is lifted again below), elsewhere by stopping it right after. Then leave it
# disabled. An existing prometheus install is never touched.
installing_prometheus=false
[[ " ${MISSING[*]} " == *" prometheus "* ]] && installing_prometheus=true
systemd_running=false
[[ -d /run/systemd/system ]] && systemd_running=true

if $installing_prometheus && $systemd_running; then
    "${AS_ROOT[@]}" systemctl mask --runtime --quiet prometheus.service || true
fi

APT_OPTS=(-y -q --no-install-recommends
    -o DPkg::Lock::Timeout=300            # a fresh machine may be running unattended-upgrades
    -o Dpkg::Options::=--force-confdef
    -o Dpkg::Options::=--force-confold)
install_rc=0
{
    "${AS_ROOT[@]}" apt-get update -q &&
        "${AS_ROOT[@]}" apt-get install "${APT_OPTS[@]}" "${MISSING[@]}"
} || install_rc=$?

if $installing_prometheus; then
    if $systemd_running; then
        "${AS_ROOT[@]}" systemctl disable --quiet prometheus.service 2>/dev/null || true
        "${AS_ROOT[@]}" systemctl unmask --runtime --quiet prometheus.service || true
    elif [[ -x /etc/init.d/prometheus ]]; then
        "${AS_ROOT[@]}" invoke-rc.d prometheus stop >/dev/null 2>&1 || true
        "${AS_ROOT[@]}" update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
fi

if ((install_rc != 0)); then
    echo "deps.sh: apt-get failed (exit $install_rc)" >&2
    exit "$install_rc"
fi

mapfile -t STILL < <(missing_packages)
if ((${#STILL[@]} != 0)); then
    echo "deps.sh: still not installed: ${STILL[*]}" >&2
    exit 1
fi
echo "deps.sh: done"
