#!/usr/bin/env bash
# node_suite.sh TOP BUILD GROUP - the tests of GROUP over the verbs
# transport, run on a soft-RoCE node (deploy/softroce.sh node, which sets
# PM_TEST_ADDR to the node's RDMA address):
#   fabric   the fabric tests (one process, and forked processes)
#   cluster  the cluster tests (real pmds), and the mapping invariant's
#            tests on one pmd (the node's own kernel: userfaultfd
#            write-protection of shared memory)
#   demo     three pmds and pm-span, which checks every byte it shows
# A test that skips here fails: on a soft-RoCE node the verbs transport
# must be there.
set -uo pipefail
top=$1 build=$2 group=$3
[ -n "${PM_TEST_ADDR:-}" ] || { echo "FAIL: no PM_TEST_ADDR: not on a soft-RoCE node"; exit 1; }
export PM_FABRIC_PROVIDER=verbs
case $group in
fabric)	tests=(fabric/test_fabric_local fabric/test_fabric_fork) ;;
cluster) tests=(cluster/test_cluster_membership cluster/test_cluster_remote
		cluster/test_cluster_forward cluster/test_cluster_fwdmap
		cluster/test_cluster_pressure integration/test_sound) ;;
demo)	PMD_BIN=$build/pmd/pmd PMD_ARGS="--memory 256M" \
		exec "$top/deploy/softroce.sh" run 3 -- \
		"$top/deploy/demo-job.sh" "$build" ;;
*)	echo "node_suite.sh: no group '$group'" >&2; exit 2 ;;
esac
# A cluster test that fails runs once more and both results are printed:
# under TCG the node is slow and noisy, and one known flake is open (a
# loan lost when a task goes mid-allocation: test_cluster_remote). A test
# that fails twice fails the suite.
status=0
for t in "${tests[@]}"; do
	for try in 1 2; do
		echo "=== $t over verbs at $PM_TEST_ADDR (run $try) ==="
		start=$(date +%s)
		"$build/tests/$t"
		rc=$?
		echo "=== $t: status $rc in $(( $(date +%s) - start )) s ==="
		[ "$rc" -eq 0 ] && break
		[ "$group" = cluster ] && [ "$try" -eq 1 ] &&
			echo "=== FLAKY? $t failed over verbs; once more ===" && continue
		status=1
		break
	done
done
exit "$status"
