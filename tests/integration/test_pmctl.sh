#!/usr/bin/env bash
# pmctl as an operator uses it: every command, as text and as JSON (read
# by jq), on a pmd serving a task that holds containers; --help lists
# them all; a pmd that is not there is named in the error.
# usage: test_pmctl.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
work=$(mktemp -d /tmp/pmd-pmctl-XXXXXX)
pid="" wpid=""
trap '[ -z "$wpid" ] || kill "$wpid" 2>/dev/null || true
      [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
      rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v jq >/dev/null || { echo "skipped: no jq"; exit 77; }
pmctl=$build/deploy/pmctl

help=$("$pmctl" --help)
for c in nodes stat tasks containers config version ping metrics drain; do
	grep -q "^  $c" <<<"$help" || fail "--help does not list $c"
done
set +e
err=$("$pmctl" --socket "$work/none.sock" stat 2>&1)
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "$work/none.sock" <<<"$err" ||
	fail "the error does not name the socket: $err"

"$build/pmd/pmd" --socket "$work/pmd.sock" --memory 64M >/dev/null \
	2>"$work/pmd.log" &
pid=$!
for _ in $(seq 1 100); do [ -S "$work/pmd.sock" ] && break; sleep 0.05; done
# A task that holds containers until told (the chaos test's).
"$build/tests/cluster/chaos" work "$work/pmd.sock" "$work/calm" 1 \
	>"$work/worker" 2>&1 &
wpid=$!
p() { "$pmctl" --socket "$work/pmd.sock" "$@"; }
for _ in $(seq 1 100); do
	[ "$(p --json containers | jq length)" -ge 1 ] && break
	sleep 0.05
done
[ "$(p --json tasks | jq length)" -ge 2 ] || fail "tasks"
task=$(p --json tasks | jq "[.[] | select(.containers > 0)][0].task")
[ "$task" != null ] || fail "no task with containers"
n=$(p --json containers --task "$task" | jq length)
[ "$n" -ge 1 ] || fail "containers --task"
[ "$(p --json containers --task "$task" | jq "[.[] | select(.owner != $task)] | length")" = 0 ] ||
	fail "containers --task shows another's"
[ "$(p --json stat | jq .invariant_ok)" = true ] || fail "stat"
[ "$(p --json config | jq -r .memory)" = 67108864 ] || fail "config"
[ "$(p --json version | jq -r .pmd)" = "$(p --json version | jq -r .pmctl)" ] ||
	fail "version"
[ "$(p --json nodes | jq '.[0].state')" = '"up"' ] || fail "nodes"
# (whole outputs first: grep -q would end a pipe before pmctl is done)
out=$(p stat); grep -q "invariant ok" <<<"$out" || fail "stat as text"
out=$(p tasks); grep -q "^task " <<<"$out" || fail "tasks as text"
out=$(p containers); grep -q "^container " <<<"$out" || fail "containers as text"
out=$(p metrics); grep -q "^pmd_tasks " <<<"$out" || fail "metrics"
touch "$work/calm"
wait "$wpid" || fail "the task: $(cat "$work/worker")"
wpid=""
# A bad drain command line is refused (status 2) and the pmd goes on.
for bad in "--timeout" "--timeout x" "--timeout 0" "now"; do
	set +e
	# shellcheck disable=SC2086
	p drain $bad >/dev/null 2>&1
	rc=$?
	set -e
	[ $rc -eq 2 ] || fail "drain $bad: status $rc, not 2"
done
kill -0 "$pid" || fail "a bad drain command line stopped the pmd"
# drain: alone, nothing is lent: it answers and the pmd stops by itself.
[ "$(p --json drain | jq .drained)" = true ] || fail "drain"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$pid" 2>/dev/null || fail "the pmd did not stop after drain"
wait "$pid" || fail "the pmd did not stop cleanly after drain"
pid=""
echo "pmctl: every command, as text and JSON"
