#!/usr/bin/env bash
# cluster.sh - an N-node pmd cluster on this machine.
#
#   deploy/cluster.sh run N [-- COMMAND...]   start, run COMMAND (default: a
#                                             shell), then stop, whatever
#                                             happens
#   deploy/cluster.sh up N                    start; prints the directory
#   deploy/cluster.sh down DIR                stop and remove everything
#   deploy/cluster.sh cut DIR I | heal DIR I  take node I's link down / up
#                                             (network namespaces only)
#   deploy/cluster.sh restart DIR I           node I crashes (SIGKILL) and
#                                             starts again
#
# As root (and with `ip netns`), every node gets its own network namespace,
# joined to the others by a veth link to a bridge in a hub namespace, so a
# link can be cut; otherwise the nodes share loopback on free ports (and
# links cannot be cut), or, in the address mode, one address of this host
# (an RDMA device's, for verbs). Sockets, logs, the cluster file and its
# secret live in one directory; COMMAND sees it as PMD_CLUSTER_DIR, with
# node I's socket at $PMD_CLUSTER_DIR/nI.sock, its pid in nI.pid and its
# log in nI.log. Environment: PMD_BIN (the pmd to run; PMD_BIN_I for
# node I alone, e.g. another release's, read when it starts or restarts),
# PMD_CLUSTER_MODE=netns|loopback|address (default: netns when possible),
# PMD_CLUSTER_ADDR (the address mode's address, default 127.0.0.1),
# PMD_TRANSPORT (tcp, verbs or ofi:PROVIDER; default tcp), PMD_ARGS (more
# pmd options; PMD_ARGS_I more still for node I, read when it starts or
# restarts), PMD_CLUSTER_CPUS (a list of CPUs: node I runs pinned to the
# I-th, round robin), PMD_START_S (seconds a node may take to start,
# default 10), HEARTBEAT_MS/SUSPECT_MS/DOWN_MS.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
pmd_bin=${PMD_BIN:-$top/build/pmd/pmd}

die() { echo "cluster.sh: $*" >&2; exit 1; }

netns_possible() {
	[ "$(id -u)" -eq 0 ] && command -v ip >/dev/null &&
		ip netns list >/dev/null 2>&1
}

# free_ports N ADDR: N different free ports of ADDR (held at once while
# chosen).
free_ports() {
	python3 -c 'import socket, sys
s = [socket.socket(socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET)
     for _ in range(int(sys.argv[1]))]
for x in s: x.bind((sys.argv[2], 0))
print(" ".join(str(x.getsockname()[1]) for x in s))' "$1" "$2"
}

# up N: creates the directory, starts the nodes, waits until each is ready.
up() {
	local n=$1 i mode dir tag
	[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 32 ] ||
		die "N must be 1 to 32"
	[ -x "$pmd_bin" ] || die "no pmd at $pmd_bin (build first, or set PMD_BIN)"
	mode=${PMD_CLUSTER_MODE:-}
	if [ -z "$mode" ]; then
		if netns_possible; then mode=netns; else mode=loopback; fi
	fi
	case $mode in
	netns)	netns_possible || die "network namespaces need root and ip netns" ;;
	loopback|address) ;;
	*)	die "PMD_CLUSTER_MODE: '$mode' is not netns, loopback or address" ;;
	esac
	local addr=127.0.0.1
	[ "$mode" = address ] && addr=${PMD_CLUSTER_ADDR:-127.0.0.1}
	local start_s=${PMD_START_S:-10}
	[[ "$start_s" =~ ^[0-9]+$ ]] || die "PMD_START_S: '$start_s' is not a number"
	local cpus=() c
	read -r -a cpus <<<"${PMD_CLUSTER_CPUS:-}"
	for c in "${cpus[@]}"; do
		[[ "$c" =~ ^[0-9]+$ ]] || die "PMD_CLUSTER_CPUS: '$c' is not a CPU number"
	done
	[ "${#cpus[@]}" -eq 0 ] || command -v taskset >/dev/null ||
		die "PMD_CLUSTER_CPUS needs taskset"
	dir=$(mktemp -d /tmp/pmd-cluster-XXXXXX)
	tag=$(basename "$dir" | tail -c 5 | tr -dc 'a-zA-Z0-9')
	echo "$mode" >"$dir/mode"
	echo "$tag" >"$dir/tag"
	head -c 32 /dev/urandom >"$dir/cluster.key"
	chmod 600 "$dir/cluster.key"
	{
		echo "[cluster]"
		echo "secret_file = cluster.key"
		echo "heartbeat_ms = ${HEARTBEAT_MS:-100}"
		echo "suspect_ms = ${SUSPECT_MS:-500}"
		echo "down_ms = ${DOWN_MS:-1500}"
		[ -z "${PMD_TRANSPORT:-}" ] || echo "transport = $PMD_TRANSPORT"
	} >"$dir/cluster.ini"

	if [ "$mode" = netns ]; then
		local hub="pmd${tag}hub"
		ip netns add "$hub"
		echo "$hub" >>"$dir/netns"
		ip -n "$hub" link add br0 type bridge
		ip -n "$hub" link set br0 up
		for i in $(seq 1 "$n"); do
			local ns="pmd${tag}n$i"
			ip netns add "$ns"
			echo "$ns" >>"$dir/netns"
			ip link add "pmd${tag}v$i" type veth peer name "pmd${tag}h$i"
			ip link set "pmd${tag}v$i" netns "$ns"
			ip link set "pmd${tag}h$i" netns "$hub"
			ip -n "$ns" link set "pmd${tag}v$i" name eth0
			ip -n "$ns" addr add "10.231.0.$i/24" dev eth0
			ip -n "$ns" link set eth0 up
			ip -n "$ns" link set lo up
			ip -n "$hub" link set "pmd${tag}h$i" master br0 up
			printf '[node %d]\naddress = 10.231.0.%d:7100\n' "$i" "$i" \
				>>"$dir/cluster.ini"
		done
	else
		local ports host=$addr
		ports=$(free_ports "$n" "$addr") || {
			rm -rf "$dir"
			die "no free ports on $addr"
		}
		read -r -a ports <<<"$ports"
		[[ "$addr" == *:* ]] && host="[$addr]"
		for i in $(seq 1 "$n"); do
			printf '[node %d]\naddress = %s:%d\n' "$i" "$host" \
				"${ports[$((i - 1))]}" >>"$dir/cluster.ini"
		done
	fi

	echo "${PMD_ARGS:-}" >"$dir/args"
	echo "${cpus[*]}" >"$dir/cpus"
	echo "$start_s" >"$dir/start_s"
	for i in $(seq 1 "$n"); do
		start_node "$dir" "$i" || {
			down "$dir"
			exit 1
		}
	done
	echo "cluster: $n nodes ($mode) in $dir"
	for i in $(seq 1 "$n"); do
		echo "  node $i: socket $dir/n$i.sock, log $dir/n$i.log"
	done
	up_dir=$dir
}

# start_node DIR I: starts node I of the cluster in DIR (as up made it) and
# waits until it is ready; 1 (its log printed) if it does not start.
start_node() {
	local dir=$1 i=$2 mode tag start_s run=() cpus=() args bin_var bin
	local args_var=PMD_ARGS_$i
	bin_var=PMD_BIN_$i
	bin=${!bin_var:-$pmd_bin}
	mode=$(cat "$dir/mode")
	tag=$(cat "$dir/tag")
	start_s=$(cat "$dir/start_s")
	args="$(cat "$dir/args") ${!args_var:-}"
	read -r -a cpus <"$dir/cpus" || true
	[ "$mode" = netns ] && run=(ip netns exec "pmd${tag}n$i")
	[ "${#cpus[@]}" -gt 0 ] &&
		run+=(taskset -c "${cpus[$(( (i - 1) % ${#cpus[@]} ))]}")
	rm -f "$dir/ready$i"
	mkfifo "$dir/ready$i"
	# shellcheck disable=SC2086
	"${run[@]}" "$bin" --socket "$dir/n$i.sock" --node-id "$i" \
		--cluster "$dir/cluster.ini" --ready-fd 3 $args \
		3>"$dir/ready$i" 2>>"$dir/n$i.log" >/dev/null &
	echo "$!" >"$dir/n$i.pid"
	disown "$!" 2>/dev/null || true # its death is no job's news
	if ! read -r -n1 -t "$start_s" _ <"$dir/ready$i"; then
		echo "cluster.sh: node $i did not start:" >&2
		cat "$dir/n$i.log" >&2
		return 1
	fi
	rm -f "$dir/ready$i"
}

# restart DIR I: node I crashes (SIGKILL, if it runs) and starts again,
# under a new incarnation; its log goes on.
restart() {
	local dir=$1 i=$2 pid
	[ -f "$dir/cluster.ini" ] || die "$dir is not a cluster directory"
	grep -q "^\[node $i\]" "$dir/cluster.ini" || die "no node $i in $dir"
	if [ -f "$dir/n$i.pid" ]; then
		pid=$(cat "$dir/n$i.pid")
		kill -KILL "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
	fi
	rm -f "$dir/n$i.sock"
	start_node "$dir" "$i" || exit 1
}

# down DIR: stops the nodes this script started (by their recorded PIDs),
# removes the namespaces and the directory.
down() {
	local dir=$1 f pid
	[ -f "$dir/cluster.ini" ] || die "$dir is not a cluster directory"
	for f in "$dir"/n*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		kill -TERM "$pid" 2>/dev/null || true
	done
	for f in "$dir"/n*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	if [ -f "$dir/netns" ]; then
		while read -r ns; do
			ip netns del "$ns" 2>/dev/null || true
		done <"$dir/netns"
	fi
	rm -rf "$dir"
}

link() { # DIR I up|down
	local dir=$1 i=$2 tag
	[ "$(cat "$dir/mode" 2>/dev/null)" = netns ] ||
		die "cutting links needs the network-namespace mode"
	tag=$(cat "$dir/tag")
	ip -n "pmd${tag}hub" link set "pmd${tag}h$i" "$3"
}

case ${1:-} in
up)	[ $# -eq 2 ] || die "usage: cluster.sh up N"
	up "$2" ;;
down)	[ $# -eq 2 ] || die "usage: cluster.sh down DIR"
	down "$2" ;;
restart) [ $# -eq 3 ] || die "usage: cluster.sh restart DIR I"
	restart "$2" "$3" ;;
cut)	[ $# -eq 3 ] || die "usage: cluster.sh cut DIR I"
	link "$2" "$3" down ;;
heal)	[ $# -eq 3 ] || die "usage: cluster.sh heal DIR I"
	link "$2" "$3" up ;;
run)	[ $# -ge 2 ] || die "usage: cluster.sh run N [-- COMMAND...]"
	n=$2
	shift 2
	[ "${1:-}" = -- ] && shift
	up_dir=""
	trap '[ -n "$up_dir" ] && down "$up_dir"' EXIT
	trap 'exit 130' INT TERM
	up "$n"
	status=0
	if [ $# -gt 0 ]; then
		PMD_CLUSTER_DIR=$up_dir "$@" || status=$?
	else
		PMD_CLUSTER_DIR=$up_dir "${SHELL:-/bin/sh}" || status=$?
	fi
	exit "$status" ;;
*)	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2 ;;
esac
