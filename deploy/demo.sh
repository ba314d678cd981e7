#!/usr/bin/env bash
# The main job: installs what is needed, builds pmd, starts a local cluster
# of three nodes (deploy/cluster.sh: network namespaces as root, else
# loopback), shows how the nodes see each other, runs the demo task on one
# of them, then a container spanning the three nodes (pm-span), and stops
# the cluster. With --softroce, the same on soft-RoCE test nodes
# (deploy/softroce.sh), the nodes talking verbs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/install-deps.sh"
build="$top/build"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# (the static library too: `cmake --install build` installs it)
cmake --build "$build" -j"$(nproc)" --target pmd pm-demo pm-span pmctl pmclient_static >/dev/null

export PMD_BIN="$build/pmd/pmd" PMD_ARGS="--memory 256M"
if [ "${1:-}" = --softroce ]; then
	# The same on soft-RoCE test nodes, the nodes talking verbs.
	exec "$top/deploy/softroce.sh" run 3 -- "$top/deploy/demo-job.sh" "$build"
fi
exec "$top/deploy/cluster.sh" run 3 -- "$top/deploy/demo-job.sh" "$build"
