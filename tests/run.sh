#!/usr/bin/env bash
# The whole test suite: installs what is needed, then builds and runs every
# test three times: in a normal build with warnings as errors, in an
# ASan+UBSan build and in a ThreadSanitizer build. Tests that need something this machine lacks print why
# and count as skipped.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/install-deps.sh"
jobs=$(nproc)

run() { # build-dir build-type
	local dir="$top/$1"
	echo "=== $2 build ($1) ==="
	cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE="$2" -DPMD_WERROR=ON >/dev/null
	cmake --build "$dir" -j"$jobs"
	ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600
}

run build RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run build-asan AddressSanitizer
# tsan.supp says why its one entry is not a race; some tests fork after
# the library started its fault thread (their children start their own).
TSAN_OPTIONS="halt_on_error=1:die_after_fork=0:suppressions=$top/tests/tsan.supp" \
	run build-tsan ThreadSanitizer
