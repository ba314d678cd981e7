#!/usr/bin/env bash
# The main job: installs what is needed, builds pmd, starts a node in a
# temporary directory, runs the demo task against it, and stops the node.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/install-deps.sh"
build="$top/build"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target pmd pm-demo >/dev/null

dir=$(mktemp -d /tmp/pmd-demo-XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

mkfifo "$dir/ready"
"$build/pmd/pmd" --socket "$dir/pmd.sock" --memory 256M --ready-fd 3 \
	3>"$dir/ready" &
pid=$!
read -r -n1 -t 10 _ <"$dir/ready" || { echo "pmd did not start" >&2; exit 1; }
echo "--- demo task ---"
"$build/deploy/pm-demo" "$dir/pmd.sock"
echo "--- stopping the node ---"
kill -TERM "$pid"
wait "$pid"
pid=""
