#!/usr/bin/env bash
# Runs the benchmark suite: builds, starts a pmd in a temporary directory,
# runs pm-bench against it, then the fabric benchmarks (raw libfabric and
# the fabric/ layer) and the remote-frame figures (a 2-node cluster against
# the raw fabric), writes JSON to bench/results/ and renders PNG plots
# into docs/ with gnuplot. Installs what it needs (jq, gnuplot-nox) when
# run as root. Usage: bench/run.sh [--quick] [TEST...]
#
# PLACEMENT decides where the pmd and pm-bench run, because on a virtual
# machine a wake-up across vCPUs can cost more than the whole request:
#   same  (default) both on CPU 0: the cost of pmd's own work
#   split pmd on CPU 0, pm-bench on CPU 1: adds the cross-CPU wake-ups
#   free  no pinning: the scheduler decides (noisiest)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
out="$top/bench/results"
mkdir -p "$out"
"$top/deploy/install-deps.sh"
if ! command -v jq >/dev/null || ! command -v gnuplot >/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq gnuplot-nox >/dev/null
	else
		echo "(jq and gnuplot-nox are needed for the fabric figures and plots)"
	fi
fi
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target pmd pm-bench pm-bench-fabric \
	pm-bench-fabric-raw >/dev/null

dir=$(mktemp -d /tmp/pmd-bench-XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
placement=${PLACEMENT:-same}
pin_pmd=() pin_bench=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	case $placement in
	same) pin_pmd=(taskset -c 0) pin_bench=(taskset -c 0) ;;
	split) pin_pmd=(taskset -c 0) pin_bench=(taskset -c 1)
	       pin_bench+=("$build/bench/pm-bench" --echo-cpu 0) ;;
	free) ;;
	*) echo "PLACEMENT must be same, split or free" >&2; exit 2 ;;
	esac
else
	placement=free
fi

local=local.json
[ "$placement" = same ] || local=local-$placement.json

mkfifo "$dir/ready"
"${pin_pmd[@]}" "$build/pmd/pmd" --socket "$dir/pmd.sock" --memory 2G --guarantee 65536 \
	--log-level warning --ready-fd 3 3>"$dir/ready" >/dev/null &
pid=$!
read -r -n1 -t 10 _ <"$dir/ready" || { echo "pmd did not start" >&2; exit 1; }

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%F); placement $placement"
[ ${#pin_bench[@]} -gt 0 ] && [ "$placement" = split ] ||
	pin_bench+=("$build/bench/pm-bench")
"${pin_bench[@]}" --socket "$dir/pmd.sock" --json "$out/$local" "$@"

kill "$pid" && wait "$pid" 2>/dev/null || true
pid=""

quick=false subset=false
for a in "$@"; do
	case $a in
	--quick) quick=true ;;
	-*) ;;
	*) subset=true ;;
	esac
done
# A subset of the local figures is a quick look: no fabric run, and the
# plots (which show the whole suite) stay as they are.
$subset && exit 0
if command -v jq >/dev/null; then
	rounds=7
	$quick && rounds=1
	echo "fabric: raw libfabric against fabric/, $rounds round(s)"
	ROUNDS=$rounds "$top/bench/run-fabric.sh" "$build" >"$out/fabric.json"
	jq -r '.figures | to_entries[] | "  \(.key): raw \(.value.raw.best) layer \(.value.layer.best) \(.value.unit) (best), ratio \(.value.ratio_best) best, \(.value.ratio_mean) mean, \(.value.ratio_median) median"' "$out/fabric.json"
fi

if command -v jq >/dev/null; then
	echo "remote frames through the API against the raw fabric (2-node cluster)"
	ROUNDS=$((rounds > 3 ? 3 : rounds)) "$top/bench/run-remote.sh" >/dev/null
	jq -r '.figures | to_entries[] | "  \(.key): \(.value | del(.ratio) | to_entries | map("\(.key) \(.value * 10 | round / 10)") | join(", ")), ratio \(.value.ratio)"' "$out/remote.json"
	echo "forwarded reads and writes against the owner's on the home"
	jq -r '.forwarded // {} | to_entries[] | "  \(.key): \(.value.us) us, owner \(.value.owner_on_home_us) us, ratio \(.value.ratio)"' "$out/remote.json"
fi

if command -v gnuplot >/dev/null; then
	[ "$placement" = same ] &&
		"$top/bench/plot.sh" "$out/local.json" "$top/docs/bench-local.png"
	[ -s "$out/fabric.json" ] &&
		"$top/bench/plot.sh" --fabric "$out/fabric.json" "$top/docs/bench-fabric.png"
else
	echo "(gnuplot not installed: no plot; apt-get install gnuplot-nox)"
fi
