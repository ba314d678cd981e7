#!/usr/bin/env bash
# pmfs with fio, in one run: a 3-node local cluster (deploy/cluster.sh,
# default options, nothing pinned: as users run it), the server on node 1
# and a mount on node 2; against the same fio jobs on a FUSE passthrough
# of a tmpfs directory (pm-bench-fusepass: the same FUSE settings, so the
# same FUSE cost) and on that tmpfs itself (context). Jobs: sequential and
# random, 4 KiB and 1 MiB, read and write, SIZE (default 64M) each, one
# pass, psync; writes end with an fsync (pmfs writes back to the server
# then: part of the cost); reads start with the page cache dropped
# (fio's invalidate), so a pmfs read is served from the mount's mapped
# frames; each read job again with O_DIRECT (every read reaches the file
# system, no page cache or readahead between). A "cold" read: node 3's mount reads a file node 2 wrote (every
# frame fetched from the server by copy). Then a copy of a 64 MiB file
# with cp: on pmfs cp's copy_file_range is a logical copy on the server;
# against cp on tmpfs and through the passthrough.
# Prints bandwidths and ratios (each the median of ROUNDS rounds, default
# 3) and writes bench/results/pmfs.json. Needs root (FUSE, tmpfs), fio.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
out="$top/bench/results"
rounds=${ROUNDS:-3}
size=${SIZE:-64M}
[ "$(id -u)" -eq 0 ] || { echo "run-pmfs.sh needs root (FUSE mounts, tmpfs)" >&2; exit 1; }
for t in fio fusermount3 python3; do
	command -v "$t" >/dev/null || { echo "run-pmfs.sh needs $t (deploy/install-deps.sh)" >&2; exit 1; }
done
mkdir -p "$out"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target pmd pmfsd pmfs pm-bench-fusepass >/dev/null
tmp=$(mktemp -d /tmp/pmfs-bench-XXXXXX)
dir="" spid="" mounted=()
cleanup() {
	for m in "${mounted[@]}"; do
		fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	[ -z "$spid" ] || kill "$spid" 2>/dev/null || true
	[ -z "$dir" ] || "$top/deploy/cluster.sh" down "$dir" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
export PMD_BIN="$build/pmd/pmd"
export PMD_ARGS="--guarantee 131072"     # the server holds the files
dir=$("$top/deploy/cluster.sh" up 3 | sed -n 's/^cluster: .* in //p')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$build/examples/pmfs/pmfsd" --socket "$dir/n1.sock" --listen "127.0.0.1:$port" \
	>"$tmp/pmfsd.log" 2>&1 &
spid=$!
for _ in $(seq 100); do grep -q serving "$tmp/pmfsd.log" && break; sleep 0.05; done
mkdir -p "$tmp/pmfs" "$tmp/pmfs3" "$tmp/tmpfs" "$tmp/fp"
"$build/examples/pmfs/pmfs" --socket "$dir/n2.sock" --server "127.0.0.1:$port" "$tmp/pmfs"
mounted+=("$tmp/pmfs")
"$build/examples/pmfs/pmfs" --socket "$dir/n3.sock" --server "127.0.0.1:$port" "$tmp/pmfs3"
mounted+=("$tmp/pmfs3")
mount -t tmpfs -o size=1G tmpfs "$tmp/tmpfs"
mounted+=("$tmp/tmpfs")
mkdir "$tmp/tmpfs/under"
"$build/bench/pm-bench-fusepass" "$tmp/tmpfs/under" "$tmp/fp"
mounted=("$tmp/fp" "${mounted[@]}")
mkdir "$tmp/tmpfs/plain"
declare -A where=([pmfs]="$tmp/pmfs" [fusepass]="$tmp/fp" [tmpfs]="$tmp/tmpfs/plain")

# job NAME DIR RW BS [fio options]: bytes/s of one fio run.
job() {
	local name=$1 d=$2 rw=$3 bs=$4
	shift 4
	(cd "$tmp" && fio --name="$name" --directory="$d" --rw="$rw" --bs="$bs" \
		--size="$size" --ioengine=psync --invalidate=1 "$@" \
		--output-format=json --output="$tmp/fio.json") >/dev/null
	python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print(j["read"]["bw_bytes"] + j["write"]["bw_bytes"])' "$tmp/fio.json"
}
results="$tmp/results"
: >"$results"
for r in $(seq 1 "$rounds"); do
	for rw in read write randread randwrite; do
		for bs in 4k 1m; do
			for fs in pmfs fusepass tmpfs; do
				extra=()
				case $rw in *write) extra=(--end_fsync=1) ;; esac
				bw=$(job "$rw$bs" "${where[$fs]}" "$rw" "$bs" "${extra[@]}")
				echo "$rw.$bs $fs $r $bw" >>"$results"
				case $rw in *read)
					# Direct: every read reaches the file
					# system (no page cache between).
					bw=$(job "$rw$bs" "${where[$fs]}" "$rw" "$bs" --direct=1)
					echo "$rw.direct.$bs $fs $r $bw" >>"$results" ;;
				esac
				rm -f "${where[$fs]}/$rw$bs".*
			done
		done
	done
	# The cold read: written on node 2, read on node 3 (nothing held).
	job cold "$tmp/pmfs" write 1m --end_fsync=1 >/dev/null
	bw=$(job cold "$tmp/pmfs3" read 1m)
	echo "coldread.1m pmfs $r $bw" >>"$results"
	rm -f "$tmp/pmfs/cold".*
	# A 64 MiB copy with cp, seconds.
	for fs in pmfs fusepass tmpfs; do
		d=${where[$fs]}
		head -c 64M /dev/urandom >"$d/big"
		s=$(date +%s.%N)
		cp "$d/big" "$d/big.copy"
		e=$(date +%s.%N)
		if [ "$fs" = pmfs ]; then
			python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.pmfs.info").decode())' \
				"$d/big.copy" >"$tmp/copy.info"
		fi
		cmp "$d/big" "$d/big.copy" || { echo "cp on $fs: the copy differs" >&2; exit 1; }
		echo "cp.64m $fs $r $(python3 -c "print(67108864 / ($e - $s))")" >>"$results"
		rm -f "$d/big" "$d/big.copy"
	done
done
python3 - "$results" "$out/pmfs.json" "$(cat "$tmp/copy.info")" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
res = {}
for name, fs, r, bw in rows:
    res.setdefault(name, {}).setdefault(fs, []).append(float(bw))
out = {"copy_info": sys.argv[3], "jobs": {}}
print("%-16s %12s %12s %12s %10s %10s" % ("job (MiB/s)", "pmfs", "fusepass", "tmpfs",
                                          "/fusepass", "/tmpfs"))
for name in res:
    med = {fs: statistics.median(v) for fs, v in res[name].items()}
    base = res["read.1m"]["fusepass"] if name == "coldread.1m" else None
    fp = med.get("fusepass", statistics.median(base) if base else None)
    tf = med.get("tmpfs", statistics.median(res["read.1m"]["tmpfs"]) if base else None)
    row = {"pmfs": med["pmfs"], "fusepass": fp, "tmpfs": tf,
           "vs_fusepass": med["pmfs"] / fp, "vs_tmpfs": med["pmfs"] / tf,
           "rounds": {fs: v for fs, v in res[name].items()}}
    out["jobs"][name] = row
    print("%-16s %12.1f %12.1f %12.1f %10.2f %10.2f" % (name, med["pmfs"] / 2**20,
          fp / 2**20, tf / 2**20, row["vs_fusepass"], row["vs_tmpfs"]))
print("(coldread.1m is against read.1m's fusepass and tmpfs; the pmfs copy: %s)" % sys.argv[3])
json.dump(out, open(sys.argv[2], "w"), indent=1)
PY
