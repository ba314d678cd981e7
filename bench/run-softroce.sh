#!/usr/bin/env bash
# run-softroce.sh - remote frames on soft-RoCE, every figure from one run
# of one soft-RoCE node (deploy/softroce.sh node: a VM with rdma_rxe):
#   perftest   ib_read_lat and ib_write_lat (4 KiB), ib_read_bw and
#              ib_write_bw (64 KiB), over rdma_cm on the node's rxe0: the
#              device's own figures;
#   raw        pm-bench-fabric-raw over libfabric's verbs;ofi_rxm, two
#              busy-polling processes: the raw-fabric benchmark;
#   layer      pm-bench-fabric over fabric/ with the native verbs
#              transport, the same loops;
#   api        pm-bench's remote figures: a task on node 1 reads and
#              writes a container whose frames live on node 2, through its
#              pmd (two pmds talking verbs, as softroce.sh run starts
#              them: default options, nothing pinned, pmds sleeping).
# No busy-polling placement: it wants a core per pmd, and the node has two
# vCPUs for two pmds and the task (polling pmds starve the task there).
# Prints the figures and their ratios (api/perftest, api/raw, layer/raw)
# and writes bench/results/softroce.json. ROUNDS (default 3) repeats all
# inside the one node; each figure is the median of rounds. Needs jq.
# Under TCG the absolute times mean little; the ratios are the result.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
out="$top/bench/results"
rounds=${ROUNDS:-3}

if [ "${1:-}" != --inside ]; then
	command -v jq >/dev/null || { echo "run-softroce.sh needs jq" >&2; exit 1; }
	cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DPMD_BENCH=ON >/dev/null
	cmake --build "$build" -j"$(nproc)" --target pmd pm-bench pm-bench-fabric \
		pm-bench-fabric-raw >/dev/null
	mkdir -p "$out"
	tmp=$(mktemp -d "$top/bench/results/.softroce-XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	ROUNDS=$rounds "$top/deploy/softroce.sh" node -- "$0" --inside "$tmp"
	jq -n --slurpfile pt <(jq -s . "$tmp"/perftest.*.json) \
	      --slurpfile raw <(jq -s . "$tmp"/raw.*.json) \
	      --slurpfile layer <(jq -s . "$tmp"/layer.*.json) \
	      --slurpfile api <(jq -s . "$tmp"/api.*.json) '
	  def med: sort | .[(length / 2 | floor)];
	  def r3: . * 1000 | round / 1000;
	  def r1: . * 10 | round / 10;
	  def pt($k): [$pt[0][] | .[$k]] | med;
	  def fab($s; $f): [$s[0][] | .figures[$f] | (.median_us // .MBps)] | med;
	  def api($s; $n): [$s[0][] | .[] | select(.name == $n) | .value] | med;
	  def lat($s; $n): api($s; $n) / 1000;
	  def row($a; $p; $r; $l): {api: ($a | r1), perftest: ($p | r1),
	    raw: ($r | r1), layer: ($l | r1), api_per_perftest: ($a / $p | r3),
	    api_per_raw: ($a / $r | r3), layer_per_raw: ($l / $r | r3)};
	  def figs($s): {
	    read_lat_4k_us: row(lat($s; "remote.read4k"); pt("read_lat_4k");
	      fab($raw; "read_lat_4k"); fab($layer; "read_lat_4k")),
	    write_lat_4k_us: row(lat($s; "remote.write4k"); pt("write_lat_4k");
	      fab($raw; "write_lat_4k"); fab($layer; "write_lat_4k")),
	    read_bw_64k_MBps: row(api($s; "remote.read_bw_64k"); pt("read_bw_64k");
	      fab($raw; "read_bw_64k"); fab($layer; "read_bw_64k")),
	    write_bw_64k_MBps: row(api($s; "remote.write_bw_64k"); pt("write_bw_64k");
	      fab($raw; "write_bw_64k"); fab($layer; "write_bw_64k"))};
	  {bench: "softroce", rounds: ($api[0] | length),
	   note: "perftest write latency is ib_write_lat doubled (it reports half a round trip)",
	   figures: figs($api),
	   local_read_4k_us: ([$api[0][] | .[] | select(.name == "remote.read4k") |
	     .baseline_value] | med / 1000 | r1)}' | tee "$out/softroce.json"
	exit 0
fi

# --- inside the node ---
res=$2
addr=${PM_TEST_ADDR:?not on a soft-RoCE node}
export PMD_BIN="$build/pmd/pmd"

# perftest NAME ARGS...: server and client on this node; the data row.
perftest() {
	local name=$1 port=$2
	shift 2
	"$name" -R -p "$port" "$@" >/dev/null 2>&1 &
	local srv=$!
	sleep 1
	"$name" -R -p "$port" "$@" "$addr" 2>/dev/null |
		awk '/^ *[0-9]+ +[0-9]+ +[0-9.]+/ { print; exit }'
	wait "$srv" || true
}

api_run() { # out.json
	"$top/deploy/softroce.sh" run 2 -- bash -c '
		sleep 1
		"$0/bench/pm-bench" --socket "$PMD_CLUSTER_DIR/n1.sock" \
			--remote-node 2 --home-socket "$PMD_CLUSTER_DIR/n2.sock" \
			--json "$1" remote >/dev/null' "$build" "$1" >/dev/null
}

for r in $(seq 1 "$rounds"); do
	echo "round $r of $rounds"
	rl=$(perftest ib_read_lat 18515 -s 4096 -n 2000 | awk '{ print $5 }')
	wl=$(perftest ib_write_lat 18516 -s 4096 -n 2000 | awk '{ print $5 }')
	rb=$(perftest ib_read_bw 18517 -s 65536 -D 2 | awk '{ print $4 }')
	wb=$(perftest ib_write_bw 18518 -s 65536 -D 2 | awk '{ print $4 }')
	[ -n "$rl" ] && [ -n "$wl" ] && [ -n "$rb" ] && [ -n "$wb" ] ||
		{ echo "perftest gave no figures" >&2; exit 1; }
	jq -n --argjson rl "$rl" --argjson wl "$wl" --argjson rb "$rb" \
		--argjson wb "$wb" '{read_lat_4k: $rl, write_lat_4k: ($wl * 2),
		read_bw_64k: $rb, write_bw_64k: $wb}' >"$res/perftest.$r.json"
	"$build/bench/pm-bench-fabric-raw" --provider "verbs;ofi_rxm" \
		--iters 5000 --seconds 1 >"$res/raw.$r.json"
	"$build/bench/pm-bench-fabric" --provider verbs --iters 5000 \
		--seconds 1 >"$res/layer.$r.json"
	api_run "$res/api.$r.json"
done
