#!/usr/bin/env bash
# The main job: installs what is needed, builds pmd, starts a local cluster
# of three nodes (deploy/cluster.sh: network namespaces as root, else
# loopback), shows how the nodes see each other, runs the demo task on one
# of them, then a container spanning the three nodes (pm-span), and stops
# the cluster.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/install-deps.sh"
build="$top/build"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target pmd pm-demo pm-span pmctl >/dev/null

export PMD_BIN="$build/pmd/pmd" PMD_ARGS="--memory 256M"
exec "$top/deploy/cluster.sh" run 3 -- bash -c '
	set -e
	pmctl='"$build"'/deploy/pmctl
	demo='"$build"'/deploy/pm-demo
	sleep 1
	echo "--- the cluster, as node 1 sees it ---"
	"$pmctl" --socket "$PMD_CLUSTER_DIR/n1.sock" nodes
	echo "--- demo task on node 2 ---"
	"$demo" "$PMD_CLUSTER_DIR/n2.sock"
	echo "--- node 2 after the task: accounting check ---"
	"$pmctl" --socket "$PMD_CLUSTER_DIR/n2.sock" stat
	echo "--- a container spanning the three nodes ---"
	'"$build"'/deploy/pm-span "$PMD_CLUSTER_DIR/n1.sock" \
		"$PMD_CLUSTER_DIR/n2.sock" "$PMD_CLUSTER_DIR/n3.sock"
	for i in 1 2 3; do
		"$pmctl" --socket "$PMD_CLUSTER_DIR/n$i.sock" stat
	done
	echo "--- stopping the cluster ---"
'
