#!/bin/sh
# run-fabric.sh - run pm-bench-fabric-raw and pm-bench-fabric in turn and
# print each figure of the layer as a ratio to the raw fabric.
#
# usage: bench/run-fabric.sh [BUILD_DIR] [bench options, e.g. --wait-fd]
# ROUNDS (default 3) alternating runs of each; each figure is the median
# over the rounds, which damps the noise of a small shared machine.
# Needs jq.
set -eu

build=${1:-build}
[ $# -gt 0 ] && shift
rounds=${ROUNDS:-3}
raw="$build/bench/pm-bench-fabric-raw"
layer="$build/bench/pm-bench-fabric"
for p in "$raw" "$layer"; do
    [ -x "$p" ] || { echo "missing $p (build the bench targets)" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "run-fabric.sh needs jq" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=1
while [ "$i" -le "$rounds" ]; do
    "$raw" --iters 10000 --seconds 0.5 "$@" > "$tmp/raw.$i.json"
    "$layer" --iters 10000 --seconds 0.5 "$@" > "$tmp/layer.$i.json"
    i=$((i + 1))
done

# per figure: the median over rounds of median_us (latency) or MBps.
best='(.[0].figures | keys) as $k | . as $runs | reduce $k[] as $f ({};
        .[$f] = ([$runs[].figures[$f] | (.median_us // .MBps)] | sort
                 | .[(length / 2 | floor)]))'
jq -s "$best" "$tmp"/raw.*.json > "$tmp/raw.json"
jq -s "$best" "$tmp"/layer.*.json > "$tmp/layer.json"
jq -n --slurpfile r "$tmp/raw.json" --slurpfile l "$tmp/layer.json" \
   --slurpfile meta "$tmp/raw.1.json" '
  ($r[0]) as $raw | ($l[0]) as $lay |
  {bench: "fabric", provider: $meta[0].provider, wait_fd: $meta[0].wait_fd,
   rounds: '"$rounds"',
   figures: ($raw | to_entries | map({key: .key, value: {
       raw: .value, layer: $lay[.key],
       ratio: (($lay[.key] / .value) * 1000 | round / 1000),
       unit: (if (.key | test("lat|rtt")) then "us median" else "MB/s" end)
   }}) | from_entries)}'
