#!/usr/bin/env bash
# Runs the benchmark suite: builds, starts a pmd in a temporary directory,
# runs pm-bench against it (and the fabric benchmarks when present),
# writes JSON to bench/results/ and renders PNG plots into docs/ when
# gnuplot is installed. Usage: bench/run.sh [--quick] [TEST...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
out="$top/bench/results"
mkdir -p "$out"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target pmd pm-bench >/dev/null

dir=$(mktemp -d /tmp/pmd-bench-XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
mkfifo "$dir/ready"
"$build/pmd/pmd" --socket "$dir/pmd.sock" --memory 2G --guarantee 65536 \
	--log-level warning --ready-fd 3 3>"$dir/ready" >/dev/null &
pid=$!
read -r -n1 -t 10 _ <"$dir/ready" || { echo "pmd did not start" >&2; exit 1; }

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%F)"
"$build/bench/pm-bench" --socket "$dir/pmd.sock" --json "$out/local.json" "$@"

if command -v gnuplot >/dev/null; then
	"$top/bench/plot.sh" "$out/local.json" "$top/docs/bench-local.png"
else
	echo "(gnuplot not installed: no plot; apt-get install gnuplot-nox)"
fi
