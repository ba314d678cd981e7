#!/usr/bin/env bash
# The chaos test: a three-node cluster under a mixed workload (a task on
# every node: tests/cluster/chaos.c) while a driver kills and restarts,
# pauses and continues pmds, and cuts and heals their links (network
# namespaces, as root; without them the links stay, and it says so).
# Node 1 is left alone; nodes 2 and 3 get the chaos. Afterwards: every
# node's accounting is exact and nothing is held with the tasks gone, no
# call of a task took more than 10 s, no read ever showed bytes that were
# not the frame's, and every acknowledged write to a frame of node 1's
# task on node 1 reads back.
# usage: test_chaos.sh TOP BUILD [SECONDS]
#   SECONDS of chaos (default PMD_CHAOS_SECONDS, else 30); the choices
#   follow PMD_CHAOS_SEED (default: random, printed). PMD_CHAOS_STABLE
#   (default 1) tells the tasks which nodes must keep every acknowledged
#   write: set it to 123 to see the test fail.
set -euo pipefail
top=$1 build=$2
secs=${3:-${PMD_CHAOS_SECONDS:-30}}
seed=${PMD_CHAOS_SEED:-$((RANDOM * 32768 + RANDOM))}
case ${PM_FABRIC_PROVIDER:-} in
verbs|*verbs*)
	echo "skipped: soft-RoCE (rdma_rxe) serves only the initial network namespace"
	exit 77 ;;
esac
export PMD_BIN=$build/pmd/pmd HEARTBEAT_MS=100 SUSPECT_MS=400 DOWN_MS=1200
export PMD_ARGS="--memory 64M --guarantee 1024 --stop-ms 100 ${PMD_CHAOS_ARGS:-}"
export chaos=$build/tests/cluster/chaos pmctl=$build/deploy/pmctl top build secs seed

drive() {
	local dir=$PMD_CLUSTER_DIR cuts=no i status=0
	local calm=$dir/calm pids=()
	[ "$(cat "$dir/mode")" = netns ] && cuts=yes
	echo "chaos: ${secs}s, seed $seed, link cuts: $cuts"
	[ $cuts = yes ] || echo "chaos: no link cuts (they need root and network namespaces)"
	RANDOM=$seed
	for i in 1 2 3; do
		"$chaos" work "$dir/n$i.sock" "$calm" "${PMD_CHAOS_STABLE:-1}" \
			>"$dir/w$i.out" 2>&1 &
		pids+=($!)
	done
	ms() { # a random time, in seconds, of A to B ms
		local t=$(($1 + RANDOM % ($2 - $1)))
		printf '%d.%03d' $((t / 1000)) $((t % 1000))
	}
	local end=$((SECONDS + secs)) n=0
	while [ $SECONDS -lt "$end" ]; do
		i=$((2 + RANDOM % 2))
		case $((RANDOM % 3)) in
		0)	echo "chaos: node $i crashes and restarts"
			"$top/deploy/cluster.sh" restart "$dir" "$i" ;;
		1)	local t
			t=$(ms 200 2800)
			echo "chaos: node $i paused ${t}s"
			kill -STOP "$(cat "$dir/n$i.pid")"
			sleep "$t"
			kill -CONT "$(cat "$dir/n$i.pid")" ;;
		2)	[ $cuts = yes ] || continue
			local t
			t=$(ms 300 3000)
			echo "chaos: node $i cut off ${t}s"
			"$top/deploy/cluster.sh" cut "$dir" "$i"
			sleep "$t"
			"$top/deploy/cluster.sh" heal "$dir" "$i" ;;
		esac
		n=$((n + 1))
		sleep "$(ms 300 1500)"
	done
	echo "chaos: $n events; calm returns"
	# Every node up and seeing every other.
	for i in 1 2 3; do
		for _ in $(seq 1 200); do
			[ "$("$pmctl" --socket "$dir/n$i.sock" nodes 2>/dev/null |
			     grep -c ' up ')" = 3 ] && break
			sleep 0.05
		done
	done
	sleep 1
	touch "$calm"
	# The tasks verify and end: within a minute, or they hung.
	for i in 0 1 2; do
		local left=600
		while kill -0 "${pids[$i]}" 2>/dev/null && [ $left -gt 0 ]; do
			sleep 0.1
			left=$((left - 1))
		done
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "chaos: FAIL: the task on node $((i + 1)) hung"
			kill -KILL "${pids[$i]}"
			status=1
		fi
		wait "${pids[$i]}" || status=1
		cat "$dir/w$((i + 1)).out"
	done
	"$chaos" check "$dir/n1.sock" "$dir/n2.sock" "$dir/n3.sock" || status=1
	for i in 1 2 3; do
		if grep -E 'Sanitizer|runtime error|\] error: check' "$dir/n$i.log"; then
			echo "chaos: FAIL: node $i logged the above"
			status=1
		fi
	done
	if [ $status -eq 0 ]; then
		echo "chaos: passed (seed $seed)"
	else
		# The logs stay for a reader: under the build directory.
		local keep=$build/Testing/chaos-$seed
		mkdir -p "$keep"
		cp "$dir"/n*.log "$dir"/w*.out "$keep/"
		echo "chaos: FAILED (seed $seed); the nodes' logs are in $keep"
		tail -n 20 "$dir"/n*.log
	fi
	return $status
}
export -f drive
"$top/deploy/cluster.sh" run 3 -- bash -c drive
