#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions below are called through stage()
# Runs the whole test suite, as CI does (.ci/run calls this and nothing else):
#
#   bash scripts/test.sh
#
# Stages, in order:
#   deps        scripts/deps.sh
#   build       normal build in ./build (scripts/build.sh)
#   services    start_test_services (below)
#   ctest       ctest in ./build
#   asan-build  the whole suite with ASan+UBSan in ./build-asan (Debug)
#   asan-ctest  ctest in ./build-asan
#   tsan-build  ThreadSanitizer build in ./build-tsan
#   tsan-ctest  the tests where threads meet (engine, brokers, several
#               pipelines in one process) in ./build-tsan
# After each ctest stage the chaos suite's summary table is printed (pair,
# kills, committed, lost, phantoms, order breaks, duplicates, fault).
#   fuzz-build  only when the CMake option OBX_FUZZ exists: clang build in
#               ./build-fuzz with -DOBX_FUZZ=ON (and ASan+UBSan)
#   fuzz        every fuzz_* executable of that build, OBX_FUZZ_SECONDS
#               (default 20) each; a crash, leak, timeout or OOM fails it.
#               Seeds: tests/fuzz/corpus/<fuzz_name>/ and a dictionary
#               tests/fuzz/<fuzz_name>.dict are used when they exist; the
#               growing corpus and any crash input stay in
#               build-fuzz/fuzz-work/<fuzz_name>/.
# A failed build stops the run; a failed test stage does not stop the later
# ones. The exit status is non-zero when any stage failed, and then the last
# line names the failed stages; on success the last line is the count of
# tests and fuzz targets run, "test.sh: N passed, 0 failed".
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

FUZZ_SECONDS=${OBX_FUZZ_SECONDS:-20}
SANITIZER_ENV=(
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1}"
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
)
TSAN_ENV=(TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}")
# The tests where threads meet: the engine, the broker plugins (client
# library threads deliver results), several pipelines in one relay. Not
# kafka: Debian's librdkafka starts its threads with C11 thrd_create, which
# GCC 12's ThreadSanitizer does not intercept, so the first allocation on
# one of them crashes inside the TSan runtime (a tool limit, not a race).
TSAN_TESTS='^(test_engine|brokers_.*|rabbitmq_.*|nats_.*|test_e2e)$'
# clang's sanitizer runtime looks for "llvm-symbolizer", which Debian only
# installs under a versioned name; without it fuzz reports have no symbols.
if [[ -z ${ASAN_SYMBOLIZER_PATH:-} && -x /usr/lib/llvm-14/bin/llvm-symbolizer ]]; then
    SANITIZER_ENV+=(ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer)
fi

FAILED_STAGES=()
PASSED_STAGES=()
TESTS_PASSED=0
TESTS_FAILED=0

# ---------------------------------------------------------------------------
# Test servers. Later issues start PostgreSQL (initdb + pg_ctl), RabbitMQ
# (rabbitmq-server -detached, own node name) and NATS (nats-server -js) here,
# each on its own port and temp dir, never the default ports and never a
# system-wide instance, and export where they listen (e.g. OBX_TEST_PG_DSN)
# for the tests. A server that cannot start must fail this stage: tests that
# need a server fail, they do not skip. (ctest fixtures may take this over.)
start_test_services() {
    return 0
}

# Stops whatever start_test_services started; runs on every exit.
stop_test_services() {
    return 0
}
# ---------------------------------------------------------------------------

trap stop_test_services EXIT

banner() {
    echo
    echo "==== test.sh: $*"
}

finish() {
    echo
    if ((${#FAILED_STAGES[@]})); then
        echo "test.sh: stages passed: ${PASSED_STAGES[*]:-none}"
        echo "test.sh: $TESTS_PASSED passed, $TESTS_FAILED failed"
        echo "test.sh: FAILED at stage(s): ${FAILED_STAGES[*]}"
        exit 1
    fi
    echo "test.sh: all stages passed: ${PASSED_STAGES[*]}"
    echo "test.sh: $TESTS_PASSED passed, $TESTS_FAILED failed"
    exit 0
}

# stage NAME COMMAND...: runs COMMAND, records NAME as passed or failed.
stage() {
    local name=$1
    shift
    banner "$name"
    if "$@"; then
        PASSED_STAGES+=("$name")
        return 0
    fi
    echo "test.sh: stage $name failed" >&2
    FAILED_STAGES+=("$name")
    return 1
}

# run_ctest BUILD_DIR [ENV...] [-- CTEST_ARGS...]: ctest, adding its counts
# to the totals, then the chaos summary table when the chaos suite ran.
run_ctest() {
    local dir=$1 log rc=0 total failed
    shift
    local -a envs=() args=()
    while (($#)) && [[ $1 != -- ]]; do envs+=("$1"); shift; done
    (($#)) && shift && args=("$@")
    log=$(mktemp)
    env "${envs[@]}" ctest --test-dir "$dir" --output-on-failure -j2 "${args[@]}" 2>&1 | tee "$log" || rc=$?
    if [[ -f $dir/tests/chaos/summary.txt ]] && grep -q chaos_summary "$log"; then
        echo "chaos summary ($dir):"
        bash tests/chaos/chaos_summary.sh "$dir/tests/chaos/summary.txt"
    fi
    if [[ $(grep -E '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1) =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
        failed=${BASH_REMATCH[1]}
        total=${BASH_REMATCH[2]}
        TESTS_FAILED=$((TESTS_FAILED + failed))
        TESTS_PASSED=$((TESTS_PASSED + total - failed))
    fi
    rm -f "$log"
    return "$rc"
}

# Is OBX_FUZZ declared (option() or cmake_dependent_option()) in the sources?
# (Not read from a CMakeCache.txt: a cache keeps options the tree dropped.)
has_fuzz_option() {
    grep -rqsiE --include=CMakeLists.txt --include='*.cmake' \
        --exclude-dir='build*' --exclude-dir=.git --exclude-dir=quickstart-run \
        -e 'option[[:space:]]*\([[:space:]]*OBX_FUZZ([[:space:]]|\)|$)' .
}

# run_fuzzers BUILD_DIR: each fuzz_* executable for FUZZ_SECONDS.
run_fuzzers() {
    local dir=$1 exe name work log rc first bad=0
    local -a fuzzers args found current=()
    local targets
    # Only targets the build defines now: a stale fuzz_* binary left from an
    # older tree must not run. (The target list comes from the Makefile
    # generator's "help" target; without it, take every fuzz_* executable.)
    mapfile -t fuzzers < <(find "$dir" -name CMakeFiles -prune -o \
        -type f -name 'fuzz_*' -perm -u+x -print | sort)
    if targets=$(cmake --build "$dir" --target help 2>/dev/null); then
        for exe in "${fuzzers[@]}"; do
            grep -qx "\.\.\. $(basename "$exe")" <<<"$targets" && current+=("$exe")
        done
        fuzzers=("${current[@]}")
    fi
    if ((${#fuzzers[@]} == 0)); then
        echo "test.sh: OBX_FUZZ=ON built no fuzz_* executable in $dir" >&2
        return 1
    fi
    for exe in "${fuzzers[@]}"; do
        name=$(basename "$exe")
        work=$dir/fuzz-work/$name
        rm -rf "$work/artifacts"
        mkdir -p "$work/corpus" "$work/artifacts"
        log=$work/fuzz.log
        args=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048
            -print_final_stats=1 -artifact_prefix="$work/artifacts/")
        [[ -f tests/fuzz/$name.dict ]] && args+=(-dict="tests/fuzz/$name.dict")
        args+=("$work/corpus")
        [[ -d tests/fuzz/corpus/$name ]] && args+=("tests/fuzz/corpus/$name")
        echo "fuzz: $name for ${FUZZ_SECONDS}s (log: $log)"
        rc=0
        env "${SANITIZER_ENV[@]}" timeout -k 10 $((FUZZ_SECONDS + 120)) \
            "$exe" "${args[@]}" >"$log" 2>&1 || rc=$?
        mapfile -t found < <(find "$work/artifacts" -type f)
        if ((rc == 0 && ${#found[@]} == 0)); then
            echo "fuzz: $name ok: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1)"
            TESTS_PASSED=$((TESTS_PASSED + 1))
        else
            bad=1
            TESTS_FAILED=$((TESTS_FAILED + 1))
            echo "fuzz: $name FAILED (exit $rc); from $log:"
            first=$(grep -nE -m1 '==[0-9]+==ERROR|runtime error:|ERROR: libFuzzer|deadly signal' "$log" | cut -d: -f1)
            if [[ -n $first ]]; then
                tail -n +"$first" "$log" | head -n 80
            else
                tail -n 80 "$log"
            fi
            for f in "${found[@]}"; do
                echo "fuzz: $name input kept: $f"
                echo "fuzz: reproduce with: $exe $f"
            done
        fi
    done
    return "$bad"
}

stage deps bash scripts/deps.sh || finish
stage build bash scripts/build.sh "$ROOT/build" || finish
stage services start_test_services || finish

stage ctest run_ctest build

if stage asan-build bash scripts/build.sh "$ROOT/build-asan" \
    -DOBX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug; then
    stage asan-ctest run_ctest build-asan "${SANITIZER_ENV[@]}"
fi

if stage tsan-build bash scripts/build.sh "$ROOT/build-tsan" -DOBX_TSAN=ON; then
    stage tsan-ctest run_ctest build-tsan "${TSAN_ENV[@]}" -- -R "$TSAN_TESTS"
fi

if has_fuzz_option; then
    if stage fuzz-build env CC=clang bash scripts/build.sh "$ROOT/build-fuzz" \
        -DOBX_FUZZ=ON -DOBX_SANITIZE=ON; then
        stage fuzz run_fuzzers build-fuzz
    fi
else
    banner "fuzz: skipped, the CMake option OBX_FUZZ does not exist yet"
fi

finish
