#!/usr/bin/env bash
# Renders a pm-bench JSON file as a bar chart of ratios to their baselines.
# Usage: bench/plot.sh [--fabric] RESULTS.json OUT.png
# --fabric: the file is run-fabric.sh output (layer / raw libfabric).
set -euo pipefail
kind=local
[ "${1:-}" = --fabric ] && { kind=fabric; shift; }
in=$1 out=$2
data=$(mktemp)
trap 'rm -f "$data"' EXIT
python3 - "$kind" "$in" >"$data" <<'PY'
import json, sys
doc = json.load(open(sys.argv[2]))
if sys.argv[1] == "fabric":
    for k, v in sorted(doc["figures"].items()):
        print(f'"{k}" {v["ratio_best"]:.4f} {v.get("ratio_mean", v["ratio_median"]):.4f}')
else:
    for r in doc:
        print(f'"{r["name"]}" {r["ratio"]:.4f}')
PY
if [ $kind = fabric ]; then
	gnuplot <<GP
set terminal pngcairo size 1000,440 noenhanced
set output "$out"
set title "fabric/ layer: ratio to raw libfabric (tcp;ofi_rxm, two processes)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.6
set yrange [0:1.5]
set ylabel "layer / raw"
set xtics rotate by -30
set grid ytics
set key top left
plot "$data" using 2:xtic(1) title "best of rounds", "" using 3 title "mean of rounds", 1 with lines dt 2 lc "black" notitle
GP
	echo "plot: $out"
	exit 0
fi
gnuplot <<GP
set terminal pngcairo size 900,420 noenhanced
set output "$out"
set title "pmd local paths: ratio to the baseline measured in the same run"
set rmargin 18
set bmargin 7
set style fill solid 0.6
set boxwidth 0.6
set logscale y
set ylabel "ratio (log scale)"
set xtics rotate by -30
set grid ytics
unset key
plot "$data" using 0:2:xtic(1) with boxes
GP
echo "plot: $out"
