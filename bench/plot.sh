#!/usr/bin/env bash
# Renders a pm-bench JSON file as a bar chart of ratios to their baselines.
# Usage: bench/plot.sh RESULTS.json OUT.png
set -euo pipefail
in=$1 out=$2
data=$(mktemp)
trap 'rm -f "$data"' EXIT
python3 - "$in" >"$data" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f'"{r["name"]}" {r["ratio"]:.4f}')
PY
gnuplot <<GP
set terminal pngcairo size 900,420
set output "$out"
set title "pmd local paths: ratio to the baseline measured in the same run"
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
