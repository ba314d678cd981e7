#!/usr/bin/env bash
# Memory pressure across nodes, in one run: a two-node cluster on
# loopback (deploy/cluster.sh) whose node 1 holds 16 MiB (4096 frames)
# and node 2 lends; pm-bench's pressure figures on node 1 (a page-in of a
# frame from node 2 against a remote read of 4 KiB; a Zipf working set of
# four times node 1's memory, mapped frame by frame, through the pmd and
# by the fast path), once with the pmd's page-out policy (the coldest
# frames) and once with PMD_PAGEOUT_POLICY=random; then the raw fabric's
# 4 KiB read on the same loopback; and a lone pmd of 16 MiB with a
# backing store of 64 MiB (a file in a temporary directory): a page-in
# from the store against a pread of 4 KiB of it. Prints the ratios and writes
# bench/results/pressure.json. Needs jq. Nothing is pinned (as users run
# it); ROUNDS (default 3) repeats all, each figure the median of rounds.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
out="$top/bench/results"
rounds=${ROUNDS:-3}
mkdir -p "$out"
command -v jq >/dev/null || { echo "run-pressure.sh needs jq" >&2; exit 1; }
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target pmd pm-bench pm-bench-fabric-raw \
	>/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PMD_BIN="$build/pmd/pmd" PMD_CLUSTER_MODE=loopback
export PMD_ARGS="--guarantee 1024 --extra 20000"
export PMD_ARGS_1="--memory 16M" PMD_ARGS_2="--memory 256M"
bench='sleep 1; "$0/bench/pm-bench" --quick --socket \
	"$PMD_CLUSTER_DIR/n1.sock" --remote-node 2 --json "$1" pressure \
	>/dev/null'
for r in $(seq 1 "$rounds"); do
	"$top/deploy/cluster.sh" run 2 -- bash -c "$bench" "$build" \
		"$tmp/cold.$r.json" >/dev/null
	PMD_PAGEOUT_POLICY=random "$top/deploy/cluster.sh" run 2 -- \
		bash -c "$bench" "$build" "$tmp/random.$r.json" >/dev/null
	"$build/bench/pm-bench-fabric-raw" --iters 10000 --seconds 0.5 \
		>"$tmp/raw.$r.json"
	mkfifo "$tmp/ready"
	"$build/pmd/pmd" --socket "$tmp/pmd.sock" --memory 16M \
		--guarantee 20000 --backing-store "$tmp/store" \
		--backing-size 64M --log-level warning --ready-fd 3 \
		3>"$tmp/ready" >/dev/null 2>&1 &
	pid=$!
	read -r -n1 -t 10 _ <"$tmp/ready" || { echo "pmd did not start" >&2; exit 1; }
	"$build/bench/pm-bench" --quick --socket "$tmp/pmd.sock" \
		--store-file "$tmp/store" --json "$tmp/store.$r.json" store \
		>/dev/null
	kill "$pid"
	wait "$pid" || true
	rm -f "$tmp/ready" "$tmp/store"
done
# The median over rounds of figure NAME's FIELD in files GLOB.
med() {
	jq -s --arg n "$1" --arg f "$2" \
		'[.[][] | select(.name == $n) | .[$f]] | sort | .[length / 2 | floor]' \
		$3
}
raw_read=$(jq -s '[.[] | .figures.read_lat_4k.median_us * 1000] | sort | .[length / 2 | floor]' "$tmp"/raw.*.json)
pagein=$(med pressure.pagein4k value "$tmp/cold.*.json")
rread=$(med pressure.pagein4k baseline_value "$tmp/cold.*.json")
jq -n --argjson pagein "$pagein" --argjson rread "$rread" \
	--argjson raw "${raw_read:-0}" \
	--argjson cold_pmd "$(med pressure.zipf_pmd_maps value "$tmp/cold.*.json")" \
	--argjson rand_pmd "$(med pressure.zipf_pmd_maps value "$tmp/random.*.json")" \
	--argjson cold_pmd_po "$(med pressure.zipf_pmd_maps baseline_value "$tmp/cold.*.json")" \
	--argjson rand_pmd_po "$(med pressure.zipf_pmd_maps baseline_value "$tmp/random.*.json")" \
	--argjson cold_fast "$(med pressure.zipf_fast_maps value "$tmp/cold.*.json")" \
	--argjson rand_fast "$(med pressure.zipf_fast_maps value "$tmp/random.*.json")" \
	--argjson cold_fast_po "$(med pressure.zipf_fast_maps baseline_value "$tmp/cold.*.json")" \
	--argjson rand_fast_po "$(med pressure.zipf_fast_maps baseline_value "$tmp/random.*.json")" \
	--argjson store_pagein "$(med store.pagein4k value "$tmp/store.*.json")" \
	--argjson store_pread "$(med store.pagein4k baseline_value "$tmp/store.*.json")" \
	'{pagein4k_ns: $pagein, remote_read4k_ns: $rread, raw_read4k_ns: $raw,
	  pagein_vs_raw: (if $raw > 0 then $pagein / $raw else null end),
	  pagein_vs_api_read: ($pagein / $rread),
	  zipf_pmd_maps: {cold: $cold_pmd, random: $rand_pmd,
	                  ratio: ($cold_pmd / $rand_pmd),
	                  paged_per_access: {cold: $cold_pmd_po, random: $rand_pmd_po}},
	  zipf_fast_maps: {cold: $cold_fast, random: $rand_fast,
	                   ratio: ($cold_fast / $rand_fast),
	                   paged_per_access: {cold: $cold_fast_po, random: $rand_fast_po}},
	  store_pagein4k_ns: $store_pagein, store_pread4k_ns: $store_pread,
	  store_pagein_vs_pread: ($store_pagein / $store_pread)}' \
	| tee "$out/pressure.json"
