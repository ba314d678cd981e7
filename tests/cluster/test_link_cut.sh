#!/usr/bin/env bash
# A cluster in network namespaces: three nodes come up; node 3's link is
# cut: both sides see each other down, nodes 1 and 2 stay up; the link
# heals: all up again. Needs root and `ip netns` (skipped otherwise).
# usage: test_link_cut.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
if [ "$(id -u)" -ne 0 ] || ! ip netns list >/dev/null 2>&1; then
	echo "skipped: network namespaces need root and ip netns"
	exit 77
fi
case ${PM_FABRIC_PROVIDER:-} in
verbs|*verbs*)
	echo "skipped: soft-RoCE (rdma_rxe) serves only the initial network namespace"
	exit 77 ;;
esac
export PMD_BIN=$build/pmd/pmd PMD_CLUSTER_MODE=netns
export HEARTBEAT_MS=100 SUSPECT_MS=400 DOWN_MS=1200
pmctl=$build/deploy/pmctl

check() { # DIR
	local dir=$1
	# state I OF: what node I says of node OF
	state() { "$pmctl" --socket "$dir/n$1.sock" nodes |
		awk -v n="$2" '$2 == n { print $3 }'; }
	# await I OF STATE: within 6 s
	await() {
		for _ in $(seq 1 120); do
			[ "$(state "$1" "$2")" = "$3" ] && return 0
			sleep 0.05
		done
		echo "FAIL: node $1 sees node $2 as $(state "$1" "$2"), not $3"
		"$pmctl" --socket "$dir/n$1.sock" nodes
		return 1
	}
	for i in 1 2 3; do for j in 1 2 3; do
		[ "$i" = "$j" ] || await "$i" "$j" up
	done; done
	"$top/deploy/cluster.sh" cut "$dir" 3
	await 1 3 down
	await 2 3 down
	await 3 1 down
	await 3 2 down
	[ "$(state 1 2)" = up ] || { echo "FAIL: 1 lost 2 while 3 was cut"; return 1; }
	"$top/deploy/cluster.sh" heal "$dir" 3
	for i in 1 2 3; do for j in 1 2 3; do
		[ "$i" = "$j" ] || await "$i" "$j" up
	done; done
	for i in 1 2 3; do
		"$pmctl" --socket "$dir/n$i.sock" stat | grep -q "invariant ok"
	done
	echo "link cut and healed: every node saw it"
}
export -f check
export pmctl top
"$top/deploy/cluster.sh" run 3 -- bash -c 'check "$PMD_CLUSTER_DIR"'
