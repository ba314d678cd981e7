#!/usr/bin/env bash
# demo-job.sh BUILD - the demo's workload, run beside a three-node cluster
# (cluster.sh or softroce.sh sets PMD_CLUSTER_DIR): how node 1 sees the
# cluster, the demo task on node 2, a container spanning the three nodes
# (pm-span), and every node's accounting check.
set -euo pipefail
build=$1
pmctl=$build/deploy/pmctl
[ -n "${PMD_CLUSTER_DIR:-}" ] || { echo "demo-job.sh: no PMD_CLUSTER_DIR" >&2; exit 2; }
sleep 1
echo "--- the cluster, as node 1 sees it ---"
sed -n 's/.*cluster: \(node 1 of .*\), incarnation.*/\1/p' "$PMD_CLUSTER_DIR/n1.log"
"$pmctl" --socket "$PMD_CLUSTER_DIR/n1.sock" nodes
echo "--- demo task on node 2 ---"
"$build/deploy/pm-demo" "$PMD_CLUSTER_DIR/n2.sock"
echo "--- node 2 after the task: accounting check ---"
"$pmctl" --socket "$PMD_CLUSTER_DIR/n2.sock" stat
echo "--- a container spanning the three nodes ---"
"$build/deploy/pm-span" "$PMD_CLUSTER_DIR/n1.sock" \
	"$PMD_CLUSTER_DIR/n2.sock" "$PMD_CLUSTER_DIR/n3.sock"
for i in 1 2 3; do
	"$pmctl" --socket "$PMD_CLUSTER_DIR/n$i.sock" stat
done
echo "--- stopping the cluster ---"
