#!/usr/bin/env bash
# The metrics an operator scrapes: pmd --metrics ADDR:PORT serves them
# over HTTP (GET /metrics; anything else 404), pmctl metrics prints the
# same, and they move with a workload (requests by type, their times,
# sessions); in a cluster each peer's state, loans and traffic show.
# usage: test_metrics.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
work=$(mktemp -d /tmp/pmd-metrics-XXXXXX)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v curl >/dev/null || { echo "skipped: no curl"; exit 77; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$build/pmd/pmd" --socket "$work/pmd.sock" --memory 64M \
	--metrics "127.0.0.1:$port" >/dev/null 2>"$work/pmd.log" &
pid=$!
for _ in $(seq 1 100); do [ -S "$work/pmd.sock" ] && break; sleep 0.05; done
url=http://127.0.0.1:$port/metrics
value() { # FILE METRIC-WITH-LABELS: its value (0 when absent)
	awk -v m="$2" '$1 == m { v = $2 } END { print v + 0 }' "$1"
}
curl -sf "$url" >"$work/before" || fail "no metrics at $url"
grep -q '^pmd_accounting_ok 1$' "$work/before" || fail "pmd_accounting_ok"
PM_ENDPOINT=$work/pmd.sock "$build/deploy/pm-demo" >/dev/null
curl -sf "$url" >"$work/after"
for m in 'pmd_requests_total{type="write"}' 'pmd_requests_total{type="map"}' \
	 'pmd_request_seconds_count{type="read"}' 'pmd_sessions_total'; do
	b=$(value "$work/before" "$m") a=$(value "$work/after" "$m")
	[ "$a" -gt "$b" ] || fail "$m did not move ($b -> $a)"
done
grep -q '^pmd_request_seconds_bucket{type="write",le="+Inf"} ' "$work/after" ||
	fail "no histogram of writes"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/other")
[ "$code" = 404 ] || fail "GET /other answered $code"
# Garbage and a silent connection do not stop it.
printf 'NOT HTTP\r\n\r\n' | timeout 2 python3 -c 'import socket,sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(sys.stdin.buffer.read()); s.recv(100)' "$port" || true
curl -sf "$url" >/dev/null || fail "no metrics after garbage"
"$build/deploy/pmctl" --socket "$work/pmd.sock" metrics >"$work/pmctl"
grep -q '^pmd_requests_total{type="write"} ' "$work/pmctl" || fail "pmctl metrics"
kill "$pid"
wait "$pid" || fail "the pmd did not stop cleanly"
pid=""
grep -q "error" "$work/pmd.log" && { cat "$work/pmd.log"; fail "errors logged"; }
echo "metrics: served over HTTP and by pmctl, moving with the workload"

# In a cluster: peers' state, loans and traffic.
export PMD_BIN=$build/pmd/pmd PMD_CLUSTER_MODE=loopback
"$top/deploy/cluster.sh" run 2 -- bash -c '
	set -e
	d=$PMD_CLUSTER_DIR
	for _ in $(seq 1 100); do
		"'"$build"'/deploy/pmctl" --socket "$d/n1.sock" nodes | grep -q "node 2 up" && break
		sleep 0.05
	done
	"'"$build"'/deploy/pmctl" --socket "$d/n1.sock" metrics >"$d/m"
	grep -q "^pmd_peer_up{peer=\"2\"} 1$" "$d/m" || { echo "FAIL: pmd_peer_up"; exit 1; }
	grep -q "^pmd_fabric_messages_total{peer=\"2\",direction=\"rx\"} [1-9]" "$d/m" ||
		{ echo "FAIL: no traffic from node 2 counted"; exit 1; }
	echo "metrics: a peer up, its messages counted"
'
