#!/usr/bin/env bash
# softroce.sh - soft-RoCE (rdma_rxe) nodes for pmd: test nodes in a virtual
# machine, or soft-RoCE on a real host.
#
#   deploy/softroce.sh run N [-- COMMAND...]  N pmds talking verbs on one
#                                             soft-RoCE device; COMMAND
#                                             (default: pmctl nodes) runs
#                                             beside them with PMD_CLUSTER_DIR
#                                             set, as with cluster.sh; the
#                                             nodes are always stopped
#   deploy/softroce.sh node [-- COMMAND...]   COMMAND (default: a shell) on a
#                                             soft-RoCE node, with
#                                             PM_TEST_ADDR set to its address
#   deploy/softroce.sh setup                  install what the nodes need
#   deploy/softroce.sh check                  say whether nodes can run here
#   deploy/softroce.sh host [NETDEV]          add a soft-RoCE device on NETDEV
#                                             of this host (the operator's case)
#
# Where the nodes run: on this host when it already has an RDMA device (a
# real NIC, or rxe added by `host`), else in one qemu virtual machine that
# boots Debian's kernel (which has rdma_rxe) with a busybox initramfs, runs
# this host's root read-only over 9p and the project read-write, adds rxe0
# on its NIC (10.77.0.1) and runs COMMAND there. One VM with one device
# serves every node: a second VM would double the emulation cost (where
# KVM cannot run guests, qemu emulates: TCG) and the device carries one
# node's traffic to another through the same verbs path. The VM's NIC sits on an empty hub: no
# traffic leaves it. Output streams back; the exit status is COMMAND's
# (77: nodes cannot run here, with the reason printed).
#
# Environment: SOFTROCE_MODE=host|vm (default: host when an RDMA device
# exists), SOFTROCE_ACCEL (qemu's -accel, default tcg,thread=multi; kvm
# where it can run guests), SOFTROCE_TIMEOUT (seconds for a VM, default 1800),
# SOFTROCE_MEM (MiB, default 4096), SOFTROCE_CPUS (default 2),
# SOFTROCE_CACHE (kernel and initramfs, default /var/cache/pmd-softroce
# as root, else ~/.cache/pmd-softroce). PM_*, PMD_*, FI_*, SOFTROCE_*
# and sanitizer variables pass into the VM.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
self="$top/deploy/softroce.sh"
vm_addr=10.77.0.1

die() { echo "softroce.sh: $*" >&2; exit 1; }
skip() { echo "SKIP: softroce.sh: $*"; exit 77; }

if [ "$(id -u)" -eq 0 ]; then
	cache=${SOFTROCE_CACHE:-/var/cache/pmd-softroce}
	sudo=""
else
	cache=${SOFTROCE_CACHE:-${HOME:-/tmp}/.cache/pmd-softroce}
	sudo="sudo"
fi

# rdma_dev_addr: the IPv4 address of the netdev under the first RDMA link.
rdma_dev_addr() {
	local nd
	command -v rdma >/dev/null || return 1
	nd=$(rdma link show 2>/dev/null | sed -n 's/.* netdev \([^ ]*\).*/\1/p' |
		head -n1)
	[ -n "$nd" ] || return 1
	ip -4 -o addr show dev "$nd" 2>/dev/null |
		sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -n1 | grep .
}

# apt_install PKG...: installs the packages that are missing.
apt_install() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "softroce.sh: installing ${missing[*]}" >&2
	$sudo apt-get update -qq || return 1
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
		"${missing[@]}" >/dev/null
}

# The Debian kernel package that carries rdma_rxe (the one
# linux-image-amd64 points at).
kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1
}

# mod_order KDIR MOD...: module files to load, dependencies first, once.
mod_order() {
	local kdir=$1 m path deps d seen=" "
	shift
	for m in "$@"; do
		path=$(grep -E "(^|/)$m\.ko(\.xz|\.zst)?:" "$kdir/modules.dep" |
			head -n1 | cut -d: -f1)
		[ -n "$path" ] || { echo "module $m not in this kernel" >&2; return 1; }
		deps=$(grep -E "^$path:" "$kdir/modules.dep" | cut -d: -f2)
		for d in $(echo "$deps" | tr ' ' '\n' | tac) "$path"; do
			case "$seen" in *" $d "*) continue ;; esac
			seen="$seen$d "
			echo "$d"
		done
	done
}

# The guest's init: modules, network, rxe0, the host's root and the
# project, then the job; the job's status goes to the results share.
guest_init() {
	cat <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do
	insmod "/modules/$(basename "$m")" || echo "guest: insmod $m failed"
done
ip link set lo up
ip link set eth0 up
ip addr add VM_ADDR/24 dev eth0
mkdir -p /host /results /proj
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$o,ro,cache=loose" hostroot /host ||
	{ echo "guest: no host root"; poweroff -f; }
mount -t 9p -o "$o" results /results || { echo "guest: no results"; poweroff -f; }
for d in proc sys dev; do mount --bind "/$d" "/host/$d"; done
mount -t devpts devpts /host/dev/pts 2>/dev/null
for d in tmp run var/tmp root; do mount -t tmpfs tmpfs "/host/$d"; done
proj=$(cat /results/project)
mkdir -p "/host$proj" 2>/dev/null
mount -t 9p -o "$o" project "/host$proj" || { echo "guest: no project"; poweroff -f; }
chroot /host rdma link add rxe0 type rxe netdev eth0 ||
	echo "guest: rdma link add failed"
mkdir -p /host/run/softroce
mount --bind /results /host/run/softroce
chroot /host /bin/bash /run/softroce/job.sh
echo "$?" >/results/status
sync
poweroff -f
EOF
}

# setup: packages, the kernel and an initramfs, in the cache.
setup() {
	local pkg kdir kver tmp initrd
	apt_install qemu-system-x86 busybox-static kmod rdma-core ibverbs-utils \
		rdmacm-utils perftest iproute2 ||
		return 1
	pkg=$(kernel_pkg)
	if [ -z "$pkg" ]; then
		$sudo apt-get update -qq || true
		pkg=$(kernel_pkg)
	fi
	[ -n "$pkg" ] || { echo "no linux-image-amd64 package known" >&2; return 1; }
	kdir="$cache/$pkg"
	if [ ! -f "$kdir/initrd.img" ]; then
		mkdir -p "$kdir"
		tmp=$(mktemp -d "$cache/tmp.XXXXXX")
		# shellcheck disable=SC2064
		trap "rm -rf '$tmp'" EXIT
		(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root \
			"$pkg" >/dev/null) ||
			{ echo "cannot download $pkg" >&2; return 1; }
		dpkg-deb -x "$tmp"/*.deb "$tmp/root"
		kver=$(ls "$tmp/root/lib/modules")
		PATH=$PATH:/usr/sbin:/sbin depmod -b "$tmp/root" "$kver"
		cp "$tmp/root/boot/vmlinuz-$kver" "$kdir/vmlinuz"
		mkdir -p "$tmp/initrd/bin" "$tmp/initrd/modules"
		for d in proc sys dev host results proj; do
			mkdir -p "$tmp/initrd/$d"
		done
		cp "$(command -v busybox)" "$tmp/initrd/bin/busybox"
		# rdma_rxe needs crc32_generic, which its dependencies omit.
		mod_order "$tmp/root/lib/modules/$kver" virtio_pci virtio_net \
			9p 9pnet_virtio ib_core ib_uverbs rdma_cm rdma_ucm \
			crc32_generic rdma_rxe >"$tmp/initrd/modules.list" || return 1
		while read -r m; do
			cp "$tmp/root/lib/modules/$kver/$m" "$tmp/initrd/modules/"
		done <"$tmp/initrd/modules.list"
		guest_init | sed "s/VM_ADDR/$vm_addr/" >"$tmp/initrd/init"
		chmod 755 "$tmp/initrd/init"
		initrd="$kdir/initrd.img.new"
		(cd "$tmp/initrd" && find . | busybox cpio -o -H newc 2>/dev/null |
			gzip -1 >"$initrd")
		mv "$initrd" "$kdir/initrd.img"
		rm -rf "$tmp"
		trap - EXIT
	fi
	echo "$kdir"
}

# check: prints why nodes cannot run here, or where they will run.
check() {
	local a
	if [ "${SOFTROCE_MODE:-}" != vm ] && a=$(rdma_dev_addr); then
		echo "host: an RDMA device at $a"
		return 0
	fi
	[ "${SOFTROCE_MODE:-}" = host ] && { echo "no RDMA device on this host"; return 1; }
	[ "$(uname -m)" = x86_64 ] || { echo "virtual nodes need an x86_64 host"; return 1; }
	if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
		command -v qemu-system-x86_64 >/dev/null ||
			{ echo "qemu is not installed and installing needs root"; return 1; }
	fi
	a=$(awk '/MemAvailable/ { print int($2 / 1024) }' /proc/meminfo)
	[ "$a" -ge $(( ${SOFTROCE_MEM:-4096} + 512 )) ] ||
		{ echo "a node needs ${SOFTROCE_MEM:-4096} MiB, $a available"; return 1; }
	echo "vm"
}

# in_vm COMMAND...: runs COMMAND in a soft-RoCE VM, returns its status.
in_vm() {
	local kdir res status=0 v
	kdir=$(setup | tail -n1) && [ -f "$kdir/initrd.img" ] ||
		skip "the soft-RoCE node could not be set up (see above)"
	res=$(mktemp -d /tmp/pmd-softroce-XXXXXX)
	# shellcheck disable=SC2064
	trap "rm -rf '$res'" EXIT
	echo "$top" >"$res/project"
	{
		echo "#!/bin/bash"
		for v in $(compgen -e); do
			[[ "$v" =~ ^(PM|PMD|FI|SOFTROCE|CTEST|ASAN|UBSAN|TSAN|LSAN)_ ]] &&
				printf 'export %s=%q\n' "$v" "${!v}"
		done
		printf 'export PATH=%q HOME=/root SOFTROCE_MODE=host\n' "$PATH"
		printf 'export PM_TEST_ADDR=%s\n' "$vm_addr"
		printf 'cd %q || exit 1\n' "$PWD"
		printf 'exec'
		printf ' %q' "$@"
		echo
	} >"$res/job.sh"
	timeout --foreground -k 10 "${SOFTROCE_TIMEOUT:-1800}" \
		qemu-system-x86_64 -accel "${SOFTROCE_ACCEL:-tcg,thread=multi}" \
		-m "${SOFTROCE_MEM:-4096}" -smp "${SOFTROCE_CPUS:-2}" \
		-kernel "$kdir/vmlinuz" -initrd "$kdir/initrd.img" \
		-append "console=ttyS0 quiet loglevel=3 panic=-1" \
		-display none -monitor none -serial stdio -no-reboot \
		-netdev hubport,id=n0,hubid=0 \
		-device virtio-net-pci,netdev=n0 \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs "local,path=$top,mount_tag=project,security_model=none,multidevs=remap" \
		-virtfs "local,path=$res,mount_tag=results,security_model=none" \
		</dev/null 2> >(grep -v 'not connected to host network' >&2) |
		tr -d '\r' |
		{ grep --line-buffered -v '^\[ *[0-9.]*\] reboot: ' || true; } ||
		status=$?
	if [ -f "$res/status" ]; then
		status=$(cat "$res/status")
	elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
		echo "softroce.sh: the node ran out of time (${SOFTROCE_TIMEOUT:-1800} s)" >&2
	else
		echo "softroce.sh: the node stopped without a status" >&2
		status=1
	fi
	return "$status"
}

# host NETDEV: soft-RoCE on this machine.
host_setup() {
	local nd=${1:-}
	[ "$(id -u)" -eq 0 ] || die "adding an RDMA link needs root"
	apt_install rdma-core ibverbs-utils rdmacm-utils iproute2 ||
		die "cannot install rdma-core"
	[ -n "$nd" ] || nd=$(ip -4 route show default | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n1)
	[ -n "$nd" ] || die "no netdev given and no default route"
	modprobe rdma_rxe 2>/dev/null ||
		die "this kernel has no rdma_rxe module (use the VM: SOFTROCE_MODE=vm)"
	modprobe crc32_generic 2>/dev/null || true
	if ! rdma link show | grep -q " netdev $nd\b"; then
		rdma link add "rxe_$nd" type rxe netdev "$nd" ||
			die "rdma link add on $nd failed"
	fi
	rdma link show
	echo "soft-RoCE on $nd: nodes bind $(rdma_dev_addr || echo '(no IPv4 address)')"
}

where() {
	local w
	w=$(check) || skip "$w"
	case $w in host:*) echo host ;; *) echo vm ;; esac
}

case ${1:-} in
setup)	setup ;;
check)	check ;;
host)	host_setup "${2:-}" ;;
node)	shift
	[ "${1:-}" = -- ] && shift
	[ $# -gt 0 ] || set -- "${SHELL:-/bin/sh}"
	if [ "$(where)" = host ]; then
		PM_TEST_ADDR=${PM_TEST_ADDR:-$(rdma_dev_addr)} "$@"
	else
		in_vm "$@"
	fi ;;
run)	[ $# -ge 2 ] || die "usage: softroce.sh run N [-- COMMAND...]"
	n=$2
	shift 2
	[ "${1:-}" = -- ] && shift
	[ $# -gt 0 ] || set -- sh -c '"$1" --socket "$PMD_CLUSTER_DIR/n1.sock" nodes' \
		sh "$top/build/deploy/pmctl"
	if [ "$(where)" = host ]; then
		addr=${PM_TEST_ADDR:-$(rdma_dev_addr)}
		PMD_CLUSTER_MODE=address PMD_CLUSTER_ADDR=$addr PMD_TRANSPORT=verbs \
			PMD_START_S=${PMD_START_S:-60} \
			exec "$top/deploy/cluster.sh" run "$n" -- "$@"
	fi
	in_vm "$self" run "$n" -- "$@" ;;
*)	sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2 ;;
esac
