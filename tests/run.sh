#!/usr/bin/env bash
# The whole test suite: installs what is needed, then builds and runs every
# test three times: in a normal build with warnings as errors, in an
# ASan+UBSan build and in a ThreadSanitizer build. Tests that need
# something this machine lacks print why and count as skipped. The tests
# on a soft-RoCE node (label rdma: a virtual machine, about two minutes)
# run in the normal build only; the verbs transport's logic runs under the
# sanitizers in its mock tests (test_fab_verbs). The chaos test (label
# chaos) runs in the normal build only too: timing is its matter, and a
# sanitizer's pace changes it. Last, each fuzz target runs for a minute
# (tests/fuzz/run.sh, a clang build of its own).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/install-deps.sh"
jobs=$(nproc)

run() { # build-dir build-type [ctest options]
	local dir="$top/$1" type=$2
	shift 2
	echo "=== $type build ($dir) ==="
	cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DPMD_WERROR=ON >/dev/null
	cmake --build "$dir" -j"$jobs"
	ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 900 "$@"
}

run build RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run build-asan AddressSanitizer -LE 'rdma|chaos'
# tsan.supp says why its one entry is not a race; some tests fork after
# the library started its fault thread (their children start their own).
TSAN_OPTIONS="halt_on_error=1:die_after_fork=0:suppressions=$top/tests/tsan.supp" \
	run build-tsan ThreadSanitizer -LE 'rdma|chaos'
"$top/tests/fuzz/run.sh" 60
