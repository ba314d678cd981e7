#!/usr/bin/env bash
# Runs the fuzz targets with libFuzzer: tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# Builds the fuzzing build (clang, -DPMD_FUZZING=ON: libFuzzer's coverage
# and ASan+UBSan in every library) in build-fuzz/, then runs each target
# (all six by default) for SECONDS (60 by default) from its checked-in
# corpus. What the run learns goes to build-fuzz/corpus/TARGET, never into
# the tree. A failure stops the run with the input that caused it in
# build-fuzz/findings/TARGET/: once fixed, copy it into corpus/TARGET/ as
# crash-WHAT, and every test run replays it from then on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] ||
	targets=(task_request ring node_request membership cluster_file config_file)
case $secs in
	''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
command -v clang >/dev/null || "$top/deploy/install-deps.sh"

build=$top/build-fuzz
CC=clang cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DPMD_FUZZING=ON -DPMD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzzers

status=0
for t in "${targets[@]}"; do
	bin=$build/tests/fuzz/fuzz_$t
	if [ ! -x "$bin" ]; then
		echo "run.sh: no fuzz target '$t'" >&2
		exit 2
	fi
	mkdir -p "$build/corpus/$t" "$build/findings/$t"
	log=$build/findings/$t/log
	echo "=== fuzz_$t: ${secs}s ==="
	# The pmd logs what it refuses: that goes to the log, with
	# libFuzzer's report; the summary and any failure are printed.
	if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	   "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 \
		-print_final_stats=1 \
		-artifact_prefix="$build/findings/$t/" \
		"$build/corpus/$t" "$here/corpus/$t" >"$log" 2>&1; then
		grep -E '^stat::number_of_executed_units|^stat::new_units_added' \
			"$log" | sed "s/^/  /"
	else
		echo "fuzz_$t FAILED; its input and report in $build/findings/$t/" >&2
		grep -v '^pmd: ' "$log" | tail -40 >&2
		status=1
	fi
done
exit $status
