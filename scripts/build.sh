#!/usr/bin/env bash
# Configures and builds outbox-relay with CMake, after installing what the
# build needs (scripts/deps.sh).
#
#   bash scripts/build.sh [BUILD_DIR [CMAKE_ARGS...]]
#
# BUILD_DIR defaults to ./build at the top of the repository. The default build
# is RelWithDebInfo with warnings as errors; extra CMAKE_ARGS come last, so they
# win, e.g.:
#   bash scripts/build.sh build-asan -DOBX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
# Result: BUILD_DIR/outbox-relay and its plugins in BUILD_DIR/plugins/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$ROOT/build}
(($# > 0)) && shift

bash "$ROOT/scripts/deps.sh"

cmake -S "$ROOT" -B "$BUILD_DIR" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DOBX_WERROR=ON \
    "$@"
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
