#!/usr/bin/env bash
# Remote frames through the API against the raw fabric, in one run: a
# two-node cluster on loopback (deploy/cluster.sh), pm-bench's remote
# figures on node 1 with the frames on node 2, then the raw-fabric
# benchmark between two processes on the same loopback. Prints the ratios
# and writes bench/results/remote.json. Needs jq.
# Two placements of the cluster, each against the same raw figures:
#   figures:         the pmds and pm-bench share CPU 0 and sleep in epoll
#                    (the local suite's default placement: on a small VM a
#                    wake-up across vCPUs costs more than the operation);
#   forwarded:       (sleeping placement) reads and writes by a task on
#                    node 1 of a container homed on node 2, through a
#                    forwarded handle, against its owner's on node 2; 64
#                    KiB of them through the task's window (the home moves
#                    the bytes by RDMA) against a session without one; a
#                    copy of 1 MiB between homes against a task's read and
#                    write of each 64 KiB piece;
#                    and a frame both map, touched in turn (it moves to
#                    node 1 and back each time: move_pair), against a
#                    forwarded 4 KiB read; a forwarded 4 KiB read against
#                    a direct remote read (frames of node 1 on node 2);
#   figures_free:    nothing pinned, default options: what users get (the
#                    tasks' request rings spin while the other side runs on
#                    another CPU, the pmds do not busy-poll the fabric); the
#                    forwarded 4 KiB read against a direct one here too;
#   figures_polling: each pmd on a CPU of its own (node 1 with pm-bench on
#                    CPU 0, node 2 on CPU 1) and busy-polling
#                    (--poll-us 1000), as nodes with a core per pmd would
#                    run; needs two CPUs.
#   relay:           nothing pinned: the raw read against the same read
#                    asked for by a third process through shared memory
#                    (pm-bench-fabric-raw --relay: the three parties of a
#                    task's remote read, with none of the pmd's work),
#                    and the API's read (figures_free) against that;
#   window:          (sleeping placement) 64 KiB bandwidth with the bytes
#                    passing through the sessions' I/O windows (the
#                    default: RDMA straight to and from them) against the
#                    same sessions without one (bytes in the messages).
# The raw benchmark pins its two busy-polling processes to CPUs 0 and 1.
# ROUNDS (default 3) repeats all; each figure is the median of rounds.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
out="$top/bench/results"
rounds=${ROUNDS:-3}
mkdir -p "$out"
command -v jq >/dev/null || { echo "run-remote.sh needs jq" >&2; exit 1; }
command -v taskset >/dev/null || { echo "run-remote.sh needs taskset" >&2; exit 1; }
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target pmd pm-bench pm-bench-fabric-raw \
	>/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PMD_BIN="$build/pmd/pmd" PMD_CLUSTER_MODE=loopback
polling=false
[ "$(nproc)" -ge 2 ] && polling=true
bench='sleep 1; taskset -c 0 "$0/bench/pm-bench" --socket \
	"$PMD_CLUSTER_DIR/n1.sock" --remote-node 2 --home-socket \
	"$PMD_CLUSTER_DIR/n2.sock" --json "$1" remote forward >/dev/null'
free='sleep 1; "$0/bench/pm-bench" --socket "$PMD_CLUSTER_DIR/n1.sock" \
	--remote-node 2 --home-socket "$PMD_CLUSTER_DIR/n2.sock" --json "$1" \
	remote forward >/dev/null'
for r in $(seq 1 "$rounds"); do
	taskset -c 0 "$top/deploy/cluster.sh" run 2 -- bash -c "$bench" \
		"$build" "$tmp/api.$r.json" >/dev/null
	"$top/deploy/cluster.sh" run 2 -- bash -c "$free" \
		"$build" "$tmp/free.$r.json" >/dev/null
	if $polling; then
		PMD_CLUSTER_CPUS="0 1" PMD_ARGS="--poll-us 1000" \
			"$top/deploy/cluster.sh" run 2 -- bash -c "$bench" \
			"$build" "$tmp/poll.$r.json" >/dev/null
	fi
	"$build/bench/pm-bench-fabric-raw" --iters 10000 --seconds 0.5 \
		>"$tmp/raw.$r.json"
	"$build/bench/pm-bench-fabric-raw" --iters 10000 --seconds 0.1 \
		--unpinned --relay >"$tmp/relay.$r.json"
done
[ -n "$(ls "$tmp"/poll.*.json 2>/dev/null)" ] || echo '[]' >"$tmp/poll.0.json"
jq -n --slurpfile api <(jq -s . "$tmp"/api.*.json) \
      --slurpfile poll <(jq -s . "$tmp"/poll.*.json) \
      --slurpfile free <(jq -s . "$tmp"/free.*.json) \
      --slurpfile raw <(jq -s . "$tmp"/raw.*.json) \
      --slurpfile relay <(jq -s . "$tmp"/relay.*.json) '
  def med: sort | .[(length / 2 | floor)];
  def api($s; $n): [$s[] | .[] | select(.name == $n) | .value] | med;
  def raw($f): [$raw[0][] | .figures[$f] | (.median_us // .MBps)] | med;
  def r3: . * 1000 | round / 1000;
  def figs($s): {
    read_lat_4k:  {api_us: (api($s; "remote.read4k") / 1000), raw_us: raw("read_lat_4k")},
    write_lat_4k: {api_us: (api($s; "remote.write4k") / 1000), raw_us: raw("write_lat_4k")},
    read_bw_64k:  {api_MBps: api($s; "remote.read_bw_64k"), raw_MBps: raw("read_bw_64k")},
    write_bw_64k: {api_MBps: api($s; "remote.write_bw_64k"), raw_MBps: raw("write_bw_64k")}
  } | with_entries(.value += {ratio: ((.value | to_entries |
      (.[0].value / .[1].value)) | r3)});
  def fwd($s; $n): [$s[] | .[] | select(.name == $n)] as $v |
    {us: ([$v[].value] | med / 1000 * 10 | round / 10),
     owner_on_home_us: ([$v[].baseline_value] | med / 1000 * 10 | round / 10),
     ratio: ([$v[].ratio] | med | r3)};
  def mv($s; $n): [$s[] | .[] | select(.name == $n)] as $v |
    {us: ([$v[].value] | med / 1000 * 10 | round / 10),
     forwarded_read_4k_us: ([$v[].baseline_value] | med / 1000 * 10 | round / 10),
     ratio: ([$v[].ratio] | med | r3)};
  def rel($s; $n): [$s[] | .[] | select(.name == $n)] as $v |
    {us: ([$v[].value] | med / 1000 * 10 | round / 10),
     baseline: ($v[0].baseline // ""),
     baseline_us: ([$v[].baseline_value] | med / 1000 * 10 | round / 10),
     ratio: ([$v[].ratio] | med | r3)};
  def wg($s; $n): [$s[] | .[] | select(.name == $n)] as $v |
    {window_MBps: ([$v[].value] | med | round),
     messages_MBps: ([$v[].baseline_value] | med | round),
     ratio: ([$v[] | .value / .baseline_value] | med | r3)};
  {bench: "remote", rounds: ($api[0] | length), figures: figs($api[0]),
   figures_free: figs($free[0]),
   forwarded: {read_4k: fwd($api[0]; "forward.read4k"),
               write_4k: fwd($api[0]; "forward.write4k"),
               read_64k: fwd($api[0]; "forward.read64k"),
               write_64k: fwd($api[0]; "forward.write64k"),
               move_pair: mv($api[0]; "forward.move_pair"),
               read_64k_window: rel($api[0]; "forward.read64k_window"),
               write_64k_window: rel($api[0]; "forward.write64k_window"),
               copy_1m_out: rel($api[0]; "forward.copy_1m_out"),
               copy_1m_in: rel($api[0]; "forward.copy_1m_in"),
               read_4k_vs_remote: rel($api[0]; "forward.read4k_vs_remote"),
               read_4k_vs_remote_free: rel($free[0]; "forward.read4k_vs_remote")},
   relay: (([$relay[0][] | .figures.read_lat_4k.median_us] | med) as $ru |
          ([$relay[0][] | .figures.relay_read_lat_4k.median_us] | med) as $rl |
          (api($free[0]; "remote.read4k") / 1000) as $au |
          {raw_unpinned_us: $ru, relay_us: $rl, relay_vs_raw: ($rl / $ru | r3),
           api_free_us: $au, api_free_vs_relay: ($au / $rl | r3)}),
   window: {read_bw_64k: wg($api[0]; "remote.read_bw_64k"),
            write_bw_64k: wg($api[0]; "remote.write_bw_64k")}} +
  (if ($poll[0] | map(length) | add) > 0
   then {figures_polling: figs($poll[0])} else {} end)' | tee "$out/remote.json"
