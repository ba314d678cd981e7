#!/usr/bin/env bash
# Remote frames through the API against the raw fabric, in one run: a
# two-node cluster on loopback (deploy/cluster.sh), pm-bench's remote
# figures on node 1 with the frames on node 2, then the raw-fabric
# benchmark between two processes on the same loopback. Prints the ratios
# and writes bench/results/remote.json. Needs jq.
# The cluster and pm-bench run on CPU 0 (taskset), as the local suite's
# default placement: on a small VM a wake-up across vCPUs costs more than
# the whole operation. The raw benchmark pins its two busy-polling
# processes to CPUs 0 and 1 itself.
# ROUNDS (default 3) repeats both; each figure is the median of rounds.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
out="$top/bench/results"
rounds=${ROUNDS:-3}
mkdir -p "$out"
command -v jq >/dev/null || { echo "run-remote.sh needs jq" >&2; exit 1; }
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target pmd pm-bench pm-bench-fabric-raw \
	>/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PMD_BIN="$build/pmd/pmd" PMD_CLUSTER_MODE=loopback
for r in $(seq 1 "$rounds"); do
	pin=()
	command -v taskset >/dev/null && pin=(taskset -c 0)
	"${pin[@]}" "$top/deploy/cluster.sh" run 2 -- bash -c '
		sleep 1
		"$0/bench/pm-bench" --socket "$PMD_CLUSTER_DIR/n1.sock" \
			--remote-node 2 --json "$1" remote >/dev/null' \
		"$build" "$tmp/api.$r.json" >/dev/null
	"$build/bench/pm-bench-fabric-raw" --iters 10000 --seconds 0.5 \
		>"$tmp/raw.$r.json"
done
jq -n --slurpfile api <(jq -s . "$tmp"/api.*.json) \
      --slurpfile raw <(jq -s . "$tmp"/raw.*.json) '
  def med: sort | .[(length / 2 | floor)];
  def api($n): [$api[0][] | .[] | select(.name == $n) | .value] | med;
  def raw($f): [$raw[0][] | .figures[$f] | (.median_us // .MBps)] | med;
  def r3: . * 1000 | round / 1000;
  {bench: "remote", rounds: ($api[0] | length), figures: {
    read_lat_4k:  {api_us: (api("remote.read4k") / 1000), raw_us: raw("read_lat_4k")},
    write_lat_4k: {api_us: (api("remote.write4k") / 1000), raw_us: raw("write_lat_4k")},
    read_bw_64k:  {api_MBps: api("remote.read_bw_64k"), raw_MBps: raw("read_bw_64k")},
    write_bw_64k: {api_MBps: api("remote.write_bw_64k"), raw_MBps: raw("write_bw_64k")}
  }} | .figures |= with_entries(.value += {ratio: ((.value | to_entries |
      (.[0].value / .[1].value)) | r3)})' | tee "$out/remote.json"
