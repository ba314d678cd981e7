#!/usr/bin/env bash
# Memory pressure across nodes, in one run: a two-node cluster on
# loopback (deploy/cluster.sh) whose node 1 holds 16 MiB (4096 frames)
# and node 2 lends; pm-bench's pressure figures on node 1 (a page-in of a
# frame from node 2 against a remote read of 4 KiB, each frame allocated
# for it, and in steady state, a run of frames mapped one by one; a Zipf
# working set of four times node 1's memory, mapped frame by frame,
# through the pmd and by the fast path), once with the pmd's page-out policy (the coldest
# frames) and once with PMD_PAGEOUT_POLICY=random; then the raw fabric's
# 4 KiB read on the same loopback; and a lone pmd of 16 MiB with a
# backing store of 64 MiB (a file in a temporary directory): a page-in
# from the store against a pread of 4 KiB of its data (with the store's
# page cache holding the frames, and from the device, the cache dropped
# before each; skipped on tmpfs), and the Zipf set with
# the store; then the kernel's own swap under the same draws (below).
# Prints the ratios and writes
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
	pm-bench-kswap >/dev/null
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
# The kernel's own swap under the same draws (pm-bench-kswap): 4 x 16 MiB
# of anonymous memory, written, in a memory cgroup of 16 MiB (and 2 MiB
# for the program itself), with a swap file of its own on the disk under
# KSWAP_DIR (default /var/tmp; swap cannot live on tmpfs; KSWAP=0 skips
# it: the swap file is the system's while the script runs). Root only;
# otherwise, or when a step fails, skipped with the reason on stderr.
# Everything it set up goes when the script ends.
kswap_file="" kswap_cg=""
kswap_cleanup() {
	[ -n "$kswap_cg" ] && rmdir "$kswap_cg" 2>/dev/null
	if [ -n "$kswap_file" ]; then
		swapoff "$kswap_file" 2>/dev/null
		rm -f "$kswap_file"
	fi
	rm -rf "$tmp"
}
trap kswap_cleanup EXIT
kswap_setup() {
	local dir=${KSWAP_DIR:-/var/tmp} limit=$(((16 + 2) * 1024 * 1024))
	[ "$(id -u)" -eq 0 ] || { echo "kernel swap: skipped (needs root)" >&2; return 1; }
	command -v mkswap >/dev/null && command -v swapon >/dev/null ||
		{ echo "kernel swap: skipped (no mkswap/swapon)" >&2; return 1; }
	kswap_file=$(mktemp "$dir/pm-bench-swap-XXXXXX") || return 1
	if ! { dd if=/dev/zero of="$kswap_file" bs=1M count=128 status=none &&
	       chmod 600 "$kswap_file" && mkswap "$kswap_file" >/dev/null &&
	       swapon "$kswap_file"; }; then
		echo "kernel swap: skipped (no swap file in $dir)" >&2
		rm -f "$kswap_file"
		kswap_file=""
		return 1
	fi
	if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
		kswap_cg=/sys/fs/cgroup/pm-bench-kswap-$$
		mkdir "$kswap_cg" && echo "$limit" >"$kswap_cg/memory.max" ||
			{ echo "kernel swap: skipped (no cgroup)" >&2; return 1; }
	elif [ -d /sys/fs/cgroup/memory ]; then
		kswap_cg=/sys/fs/cgroup/memory/pm-bench-kswap-$$
		mkdir "$kswap_cg" &&
			echo "$limit" >"$kswap_cg/memory.limit_in_bytes" ||
			{ echo "kernel swap: skipped (no cgroup)" >&2; return 1; }
	else
		echo "kernel swap: skipped (no memory cgroup)" >&2
		return 1
	fi
}
kswap_json=null
if [ "${KSWAP:-1}" = 0 ]; then
	echo "kernel swap: skipped (KSWAP=0)" >&2
elif kswap_setup; then
	for r in $(seq 1 "$rounds"); do
		sh -c 'echo $$ >"$1/cgroup.procs" && exec "$2" 16384' sh \
			"$kswap_cg" "$build/bench/pm-bench-kswap" >"$tmp/kswap.$r.json"
	done
	kswap_json=$(jq -s 'sort_by(.accesses_per_s) | .[length / 2 | floor]' \
		"$tmp"/kswap.*.json)
fi
# The median over rounds of figure NAME's FIELD in files GLOB.
med() {
	jq -s --arg n "$1" --arg f "$2" \
		'[.[][] | select(.name == $n) | .[$f]] | sort | .[length / 2 | floor]' \
		$3
}
raw_read=$(jq -s '[.[] | .figures.read_lat_4k.median_us * 1000] | sort | .[length / 2 | floor]' "$tmp"/raw.*.json)
pagein=$(med pressure.pagein4k value "$tmp/cold.*.json")
rread=$(med pressure.pagein4k baseline_value "$tmp/cold.*.json")
steady=$(med pressure.pagein4k_steady value "$tmp/cold.*.json")
sread=$(med pressure.pagein4k_steady baseline_value "$tmp/cold.*.json")
jq -n --argjson pagein "$pagein" --argjson rread "$rread" \
	--argjson steady "$steady" --argjson sread "$sread" \
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
	--argjson store_dev "$(med store.pagein4k_device value "$tmp/store.*.json")" \
	--argjson store_dev_pread "$(med store.pagein4k_device baseline_value "$tmp/store.*.json")" \
	--argjson store_read "$(med store.read4k value "$tmp/store.*.json")" \
	--argjson store_read_pread "$(med store.read4k baseline_value "$tmp/store.*.json")" \
	--argjson store_zipf "$(med store.zipf_fast_maps value "$tmp/store.*.json")" \
	--argjson store_zipf_po "$(med store.zipf_fast_maps baseline_value "$tmp/store.*.json")" \
	--argjson kswap "$kswap_json" \
	'{pagein4k_ns: $pagein, remote_read4k_ns: $rread, raw_read4k_ns: $raw,
	  pagein_vs_raw: (if $raw > 0 then $pagein / $raw else null end),
	  pagein_vs_api_read: ($pagein / $rread),
	  steady_pagein4k_ns: $steady, steady_remote_read4k_ns: $sread,
	  steady_pagein_vs_raw: (if $raw > 0 then $steady / $raw else null end),
	  steady_pagein_vs_api_read: ($steady / $sread),
	  zipf_pmd_maps: {cold: $cold_pmd, random: $rand_pmd,
	                  ratio: ($cold_pmd / $rand_pmd),
	                  paged_per_access: {cold: $cold_pmd_po, random: $rand_pmd_po}},
	  zipf_fast_maps: {cold: $cold_fast, random: $rand_fast,
	                   ratio: ($cold_fast / $rand_fast),
	                   paged_per_access: {cold: $cold_fast_po, random: $rand_fast_po}},
	  store_pagein4k_ns: $store_pagein, store_pread4k_ns: $store_pread,
	  store_pagein_vs_pread: ($store_pagein / $store_pread),
	  store_pagein4k_device_ns: $store_dev,
	  store_pread4k_device_ns: $store_dev_pread,
	  store_pagein_device_vs_pread: (if $store_dev then $store_dev / $store_dev_pread else null end),
	  store_read4k_ns: $store_read, store_read_pread4k_ns: $store_read_pread,
	  store_read_vs_pread: ($store_read / $store_read_pread),
	  zipf_store_fast_maps: {accesses_per_s: $store_zipf,
	                         paged_per_access: $store_zipf_po},
	  kernel_swap: $kswap,
	  store_vs_kernel_swap: (if $kswap then $store_zipf / $kswap.accesses_per_s else null end),
	  remote_vs_kernel_swap: (if $kswap then $cold_fast / $kswap.accesses_per_s else null end)}' \
	| tee "$out/pressure.json"
