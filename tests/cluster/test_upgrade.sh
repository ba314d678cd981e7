#!/usr/bin/env bash
# A rolling upgrade: nodes of the previous release (PMD_PREVIOUS_RELEASE,
# default the tag v0.1.0, built here from this repository's history) and
# of this one in one cluster. They agree on the node requests both speak
# (pmctl nodes shows it), and every cross-node path works between them,
# whichever node runs which release: remote frames, forwarded handles,
# maps that move frames between nodes (pm-span, with the old node in each
# of its three roles), and tasks on every node writing, reading and
# storing through mappings into frames on every node (the chaos test's
# worker, every node stable: every acknowledged write reads back). The
# old release runs node 1 (pm-span's home) first; node 1 is upgraded (its
# peers now speak this release's version with it); then node 3 (the
# lender) goes back to the old release, then node 2 (the server) instead.
# Skipped, saying so, outside a git checkout that has the tag.
# usage: test_upgrade.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
prev=${PMD_PREVIOUS_RELEASE:-v0.1.0}
if ! git -C "$top" rev-parse -q --verify "$prev^{commit}" >/dev/null 2>&1; then
	echo "skipped: no $prev in $top (needs a git checkout with its tags)"
	exit 77
fi
work=$(mktemp -d /tmp/pmd-upgrade-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/old"
git -C "$top" archive "$prev" | tar -x -C "$work/old"
{ cmake -S "$work/old" -B "$work/old/build" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$work/old/build" --target pmd -j"$(nproc)"; } \
	>"$work/old.log" 2>&1 || { tail -20 "$work/old.log"; echo "FAIL: $prev does not build"; exit 1; }
echo "upgrade: $prev built ($(git -C "$top" rev-parse --short "$prev^{commit}"))"

export PMD_BIN=$build/pmd/pmd PMD_BIN_1=$work/old/build/pmd/pmd
export HEARTBEAT_MS=100 SUSPECT_MS=400 DOWN_MS=1500
export PMD_ARGS="--memory 64M --guarantee 1024"
export top build prev
export span=$build/deploy/pm-span chaos=$build/tests/cluster/chaos
export pmctl=$build/deploy/pmctl

check() {
	local dir=$PMD_CLUSTER_DIR
	fail() { echo "upgrade: FAIL: $*"; tail -n 5 "$dir"/n*.log; exit 1; }
	# version K N V: node K sees node N speaking version V, within 10 s.
	version() {
		local got=""
		for _ in $(seq 1 200); do
			got=$("$pmctl" --socket "$dir/n$1.sock" --json nodes |
			      python3 -c 'import json, sys
n = [x for x in json.load(sys.stdin) if x["id"] == int(sys.argv[1])][0]
print(n["version"] if n["state"] == "up" else "down")' "$2")
			[ "$got" = "$3" ] && return 0
			sleep 0.05
		done
		fail "node $1 sees node $2 at version $got, not $3"
	}
	work() {
		local i pids=() status=0
		"$span" "$dir/n1.sock" "$dir/n2.sock" "$dir/n3.sock" >"$dir/span" 2>&1 ||
			{ cat "$dir/span"; fail "pm-span"; }
		rm -f "$dir/calm"
		for i in 1 2 3; do
			"$chaos" work "$dir/n$i.sock" "$dir/calm" 123 >"$dir/w$i.out" 2>&1 &
			pids+=($!)
		done
		sleep 4
		touch "$dir/calm"
		for i in 0 1 2; do
			wait "${pids[$i]}" || { cat "$dir/w$((i + 1)).out"; status=1; }
		done
		[ $status -eq 0 ] || fail "the tasks' writes did not all read back"
		"$chaos" check "$dir/n1.sock" "$dir/n2.sock" "$dir/n3.sock" ||
			fail "the books"
		grep -h "task on node" "$dir"/w*.out | sed 's/^/  /'
	}
	# 1 runs the old release: 4 between it and the others, 5 between
	# these two.
	version 2 1 4; version 3 1 4; version 2 3 5; version 3 2 5
	echo "upgrade: node 1 of $prev speaks version 4 with nodes 2 and 3; they speak 5"
	work
	# The upgrade of node 1: this release now.
	unset PMD_BIN_1
	"$top/deploy/cluster.sh" restart "$dir" 1
	version 2 1 5; version 1 2 5; version 1 3 5
	echo "upgrade: node 1 restarted as this release: version 5 everywhere"
	work
	# Node 3 goes back to the old release.
	PMD_BIN_3=$work_old_pmd "$top/deploy/cluster.sh" restart "$dir" 3
	version 1 3 4; version 2 3 4; version 1 2 5
	echo "upgrade: node 3 restarted as $prev: version 4 with it"
	work
	# Node 3 this release again, node 2 the old one.
	"$top/deploy/cluster.sh" restart "$dir" 3
	PMD_BIN_2=$work_old_pmd "$top/deploy/cluster.sh" restart "$dir" 2
	version 1 2 4; version 3 2 4; version 1 3 5
	echo "upgrade: node 2 restarted as $prev instead"
	work
	for i in 1 2 3; do
		! grep -E 'Sanitizer|runtime error|\] error: |failed authentication' "$dir/n$i.log" ||
			fail "node $i logged the above"
	done
	echo "upgrade: passed"
}
export -f check
export work_old_pmd=$work/old/build/pmd/pmd
"$top/deploy/cluster.sh" run 3 -- bash -c check
