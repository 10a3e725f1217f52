#!/usr/bin/env bash
# The typed option macros refuse, at compile time, a member whose type or
# width does not match the option type, and bounds that are inverted or
# the ambiguous 0..0. Usage: option_macros_compile.sh CC INCLUDE_DIR SRC_DIR
set -uo pipefail
cc=$1 inc=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=(-std=c11 -Wall -Wextra -Wpedantic -Werror -I"$inc" -c -o "$tmp/o.o")
fail=0
if ! "$cc" "${flags[@]}" "$src/option_macros.c" 2>"$tmp/err"; then
    echo "FAIL: the valid table does not compile:"; cat "$tmp/err"; fail=1
fi
expect() { # CASE message
    if "$cc" "${flags[@]}" -D"$1" "$src/option_macros.c" 2>"$tmp/err"; then
        echo "FAIL: $1 compiled"; fail=1
    elif ! grep -qF "$2" "$tmp/err"; then
        echo "FAIL: $1 failed without \"$2\":"; cat "$tmp/err"; fail=1
    else
        echo "ok: $1: $2"
    fi
}
expect CASE_INT_NARROW "OBX_OPT_INT: field must be int64_t"
expect CASE_INT_DOUBLE "OBX_OPT_INT_ANY: field must be int64_t"
expect CASE_BOOL_INT "OBX_OPT_BOOL: field must be bool"
expect CASE_ENUM_INT64 "OBX_OPT_ENUM: field must be int"
expect CASE_STRING_ARRAY "OBX_OPT_STRING: field must be char *"
expect CASE_LIST_KVLIST "OBX_OPT_LIST: field must be obx_list"
expect CASE_DURATION_ZERO_BOUNDS "option bounds: need min <= max"
expect CASE_INT_INVERTED "option bounds: need min <= max"
exit $fail
