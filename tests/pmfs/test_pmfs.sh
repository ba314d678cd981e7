#!/usr/bin/env bash
# pmfs on a 3-node local cluster: the server (pmfsd) on node 1, mounts on
# nodes 2 and 3 (and, where a scenario needs one, node 1). Data written
# through one mount is checked through the other: fio with crc32c
# verification, a source tree unpacked with tar and compared with diff -r,
# a file written through mmap, truncation, reflink copies (copy_file_range)
# independent after writes, rename/unlink races between mounts. Then the
# failures: a mount killed (the server's accounting returns), bad protocol
# input (the server serves on), a node down (its files EIO, the others
# intact), the server killed (mounts serve what they hold, EIO for the
# rest), and a restart from the backing directory.
# Needs root and /dev/fuse (skipped otherwise); fio, fuse3 and python3 are
# installed (deploy/install-deps.sh) when missing.
# usage: test_pmfs.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ]; then
	echo "skipped: FUSE mounts need root and /dev/fuse"
	exit 77
fi
# What it uses comes with the project's dependencies: installed if missing.
for t in fusermount3 fio python3 getfattr; do
	command -v "$t" >/dev/null || { "$top/deploy/install-deps.sh" >/dev/null || true; break; }
done
for t in fusermount3 fio python3; do
	command -v "$t" >/dev/null || { echo "skipped: no $t (deploy/install-deps.sh could not install it)"; exit 77; }
done
pmfsd=$build/examples/pmfs/pmfsd pmfs=$build/examples/pmfs/pmfs
pmctl=$build/deploy/pmctl
[ -x "$pmfs" ] || { echo "skipped: pmfs was not built (no libfuse3-dev)"; exit 77; }
export PMD_BIN=$build/pmd/pmd
export HEARTBEAT_MS=100 SUSPECT_MS=400 DOWN_MS=1200
# Room for the server's files (256 MiB guaranteed a task).
export PMD_ARGS="--memory 1G --guarantee 65536"
# Node 2's tasks hold few handles together: its mounts run out of them
# (a container a file they touch) and must give up what they wrote back.
export PMD_ARGS_2="--user-handles 600"

work=$(mktemp -d /tmp/pmfs-test-XXXXXX)
cd "$work"                    # (fio leaves its verify state where it runs)
dir="" server_pid="" mounts=()
fail() { echo "FAIL: $*"; exit 1; }
cleanup() {
	local m
	for m in "${mounts[@]}"; do
		mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true; }
	done
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
	[ -n "$dir" ] && "$top/deploy/cluster.sh" down "$dir" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

dir=$("$top/deploy/cluster.sh" up 3 2>"$work/cluster.err" |
	sed -n 's/^cluster: .* in //p') ||
	{ cat "$work/cluster.err"; fail "the cluster did not start"; }
[ -S "$dir/n1.sock" ] || { cat "$work/cluster.err"; fail "no cluster directory"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
server=127.0.0.1:$port

# start_server [ARGS]: pmfsd on node 1, ready when it says so.
start_server() {
	"$pmfsd" --socket "$dir/n1.sock" --listen "$server" "$@" >"$work/pmfsd.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		grep -q "serving on" "$work/pmfsd.log" && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.05
	done
	cat "$work/pmfsd.log"; fail "pmfsd did not start"
}
# mount_on NODE DIR
mount_on() {
	mkdir -p "$2"
	"$pmfs" --socket "$dir/n$1.sock" --server "$server" "$2" ||
		fail "pmfs on node $1 did not mount $2"
	mounts+=("$2")
}
# server_frames: frames the server's task holds (node 1's listing).
server_frames() {
	"$pmctl" --socket "$dir/n1.sock" tasks |
		awk -v p="$server_pid" '$6 == p { print $10 }'
}
py() { timeout 60 python3 - "$@"; }

start_server
m1=$work/m1 m2=$work/m2 m3=$work/m3
mount_on 2 "$m2"
mount_on 3 "$m3"
base_frames=$(server_frames)
[ "$base_frames" = 0 ] || fail "the server holds $base_frames frames before any file"

echo "== fio: written through node 2, verified through node 3"
for job in "write --bs=1M" "randwrite --bs=4k"; do
	set -- $job
	timeout 120 fio --name=v --directory="$m2" --rw="$1" "$2" --size=16M \
		--verify=crc32c --do_verify=0 --output="$work/fio.log" ||
		{ cat "$work/fio.log"; fail "fio $1 through node 2"; }
	timeout 120 fio --name=v --directory="$m3" --rw="$1" "$2" --size=16M \
		--verify=crc32c --verify_only --output="$work/fio.log" ||
		{ cat "$work/fio.log"; fail "fio $1 verified through node 3"; }
	grep -q "err= 0" "$work/fio.log" || { cat "$work/fio.log"; fail "fio verify"; }
	rm -f "$m2"/v.*
done

echo "== tar through node 2, diff -r through node 3"
mkdir "$work/ref" "$m2/src"
git -C "$top" archive HEAD >"$work/src.tar" 2>/dev/null ||
	tar cf "$work/src.tar" -C "$top" --exclude=./build --exclude=./.git .
tar xf "$work/src.tar" -C "$work/ref"
timeout 120 tar xf "$work/src.tar" -C "$m2/src"
timeout 120 diff -r "$work/ref" "$m3/src" || fail "the tree differs through node 3"
nfiles=$(find "$m3/src" -type f | wc -l)
echo "   $nfiles files the same"

echo "== mmap: written through a shared mapping on node 3, read on node 2"
py "$m3/mapped" "$m2/mapped" <<'PY'
import mmap, os, sys
a, b = sys.argv[1], sys.argv[2]
data = bytes((i * 7 + 3) % 251 for i in range(3 * 4096 + 100))
fd = os.open(a, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, len(data))
m = mmap.mmap(fd, len(data))
m[:] = data
m.flush(); m.close(); os.close(fd)
with open(b, "rb") as f:
    got = f.read()
assert got == data, "mmap'd bytes differ on the other mount"
m = mmap.mmap(os.open(b, os.O_RDONLY), 0, prot=mmap.PROT_READ)
assert m[:] == data, "a read-only mapping on the other mount differs"
PY

echo "== truncation seen by the other mount, zeros past the old end"
py "$m2/t" "$m3/t" <<'PY'
import os, sys
a, b = sys.argv[1], sys.argv[2]
with open(a, "wb") as f: f.write(b"x" * 10000)
with open(b, "r+b") as f: f.truncate(5000)
with open(a, "rb") as f: assert f.read() == b"x" * 5000, "truncation not seen"
with open(a, "r+b") as f: f.seek(9000); f.write(b"y")
with open(b, "rb") as f:
    d = f.read()
    assert d == b"x" * 5000 + b"\0" * 4000 + b"y", "bytes past a truncation are not zeros"
PY
echo short >"$m3/t"            # (O_TRUNC)
[ "$(cat "$m2/t")" = short ] || fail "an O_TRUNC open did not truncate"

echo "== reflink: copy_file_range is a logical copy, independent after writes"
py "$m2/orig" "$m2/copy" "$m3/orig" "$m3/copy" <<'PY'
import os, sys
a, b, a3, b3 = sys.argv[1:5]
size = 8 << 20
data = os.urandom(size)
with open(a, "wb") as f: f.write(data)
fi, fo = os.open(a, os.O_RDONLY), os.open(b, os.O_WRONLY | os.O_CREAT, 0o644)
done = 0
while done < size:
    done += os.copy_file_range(fi, fo, size - done)
os.close(fi); os.close(fo)
info = os.getxattr(b, "user.pmfs.info").decode()
cow = int(dict(x.split("=") for x in info.split())["cow"])
assert cow >= size // 4096, "the copy shares no frames: " + info
with open(b3, "rb") as f: assert f.read() == data, "the copy differs on node 3"
# Writes to either side never show in the other.
with open(b3, "r+b") as f: f.seek(4096 * 10 + 5); f.write(b"COPY")
with open(a, "r+b") as f: f.seek(4096 * 20); f.write(b"ORIG")
with open(a3, "rb") as f: o = f.read()
with open(b, "rb") as f: c = f.read()
want_o = bytearray(data); want_o[4096 * 20:4096 * 20 + 4] = b"ORIG"
want_c = bytearray(data); want_c[4096 * 10 + 5:4096 * 10 + 9] = b"COPY"
assert o == bytes(want_o), "the original changed with the copy"
assert c == bytes(want_c), "the copy changed with the original"
# An unaligned range: bytes, through the same call.
fi, fo = os.open(a, os.O_RDONLY), os.open(b, os.O_WRONLY)
n = os.copy_file_range(fi, fo, 10000, 123, 7)
os.close(fi); os.close(fo)
with open(b3, "rb") as f: c = f.read()
assert n == 10000 and c[7:10007] == bytes(want_o[123:10123]), "unaligned copy"
PY

echo "== rename and unlink races between the two mounts"
mkdir "$m2/race"
py "$m2/race" "$m3/race" <<'PY'
import errno, os, sys, threading
d2, d3 = sys.argv[1], sys.argv[2]
errors = []
def churn(d, me, other):
    for i in range(300):
        try:
            p = os.path.join(d, "%s%d" % (me, i % 20))
            with open(p, "wb") as f: f.write(b"%s %d\n" % (me.encode(), i))
            os.rename(p, os.path.join(d, "r%d" % (i % 10)))
            os.unlink(os.path.join(d, "r%d" % ((i + 5) % 10)))
        except OSError as e:
            if e.errno != errno.ENOENT:
                errors.append(e)
t = [threading.Thread(target=churn, args=(d2, "a", "b")),
     threading.Thread(target=churn, args=(d3, "b", "a"))]
for x in t: x.start()
for x in t: x.join()
assert not errors, errors[:3]
l2, l3 = sorted(os.listdir(d2)), sorted(os.listdir(d3))
assert l2 == l3, (l2, l3)
for n in l2:
    with open(os.path.join(d2, n), "rb") as f: a = f.read()
    with open(os.path.join(d3, n), "rb") as f: b = f.read()
    assert a == b and (a.startswith(b"a ") or a.startswith(b"b ")), (n, a, b)
PY
echo "== more files than node 2's tasks may hold handles: written, read back"
mkdir "$m2/many"
py "$m2/many" "$m3/many" <<'PY'
import os, sys
d2, d3 = sys.argv[1], sys.argv[2]
n = 1500
for i in range(n):
    with open(os.path.join(d2, "f%d" % i), "wb") as f:
        f.write(b"%d\n" % i * 100)
for d in (d2, d3):
    for i in range(n):
        with open(os.path.join(d, "f%d" % i), "rb") as f:
            assert f.read() == b"%d\n" % i * 100, (d, i)
PY
rm -rf "$m3/race" "$m3/src" "$m3/many" "$m2/orig" "$m2/copy" "$m2/mapped" "$m2/t"
[ -z "$(ls "$m2")" ] || fail "files left: $(ls "$m2")"
after=$(server_frames)
[ "$after" = "$base_frames" ] || fail "the server holds $after frames with no file (was $base_frames)"
echo "   the server's frames back to $after"

echo "== a mount killed: its opens go, an unlinked file it held goes with them"
m2b=$work/m2b
mount_on 2 "$m2b"
mpid=$(pgrep -n -f "pmfs --socket $dir/n2.sock --server $server $m2b")
head -c 1048576 /dev/urandom >"$m2/held"
[ "$(server_frames)" -ge 256 ] || fail "a 1 MiB file holds $(server_frames) frames"
exec 7<"$m2b/held"            # opened through the mount to be killed
head -c 10 <&7 >/dev/null
exec 8>"$m2b/dirty"
echo "flushed" >&8            # (each close of a descriptor flushes)
held_frames=$(server_frames)
rm "$m2/held"
[ "$(server_frames)" = "$held_frames" ] || fail "an open file's frames went at unlink"
kill -9 "$mpid"
exec 7<&- 8>&-
want=$((held_frames - 256))
for _ in $(seq 100); do
	[ "$(server_frames)" = "$want" ] && break
	sleep 0.05
done
[ "$(server_frames)" = "$want" ] ||
	fail "after the mount's death the server holds $(server_frames) frames, not $want"
fusermount3 -uz "$m2b" || true
rm -f "$m2/dirty"
[ "$(server_frames)" = "$base_frames" ] || fail "the server's frames: $(server_frames), not $base_frames"
echo "   the server's frames back to $base_frames"

echo "== bad input on the control protocol: refused, the server serves on"
py "$port" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s
def msg(op, payload, seq=1, magic=0x73666d70, version=1, length=None):
    n = len(payload) if length is None else length
    return struct.pack("<IHHIIiI", magic, version, op, n, seq, 0, 0) + payload
def reply(s):
    h = b""
    while len(h) < 24:
        try:
            c = s.recv(24 - len(h))
        except ConnectionResetError:
            return None       # cut off with the request unread
        if not c: return None
        h += c
    magic, ver, op, n, seq, status, pad = struct.unpack("<IHHIIiI", h)
    body = b""
    while len(body) < n: body += s.recv(n - len(body))
    return op, status, body
# Not the protocol, a length beyond the maximum: cut off.
for bad in (b"GET / HTTP/1.0\r\n\r\n" + b"x" * 64,
            msg(2, b"", length=1 << 30)):
    s = conn(); s.sendall(bad)
    assert reply(s) is None, "a bad message was answered"
    s.close()
# Framed but wrong: answered with an error, nothing else.
s = conn()
op, st, _ = reply(s) if s.sendall(msg(2, struct.pack("<Q", 1))) is None else None
assert st != 0, "a request before HELLO was served"
s.sendall(msg(1, struct.pack("<Q", 0x2000000000077)))
assert reply(s)[1] == 0
cases = [
    (2, b"\x01"),                                          # short
    (2, struct.pack("<QH", 1, 300) + b"a" * 300),          # name too long
    (2, struct.pack("<QH", 1, 2) + b".."),                 # not a name
    (5, struct.pack("<QIIII", 1, 0o20644, 0, 0, 0) + struct.pack("<H", 1) + b"d" + struct.pack("<H", 0)),  # a device
    (13, struct.pack("<QQI", 1, 0, 1) + b"\0" * 32),       # fetch a directory
    (14, struct.pack("<QQ", 999, 0) + b"\0" * 32 + struct.pack("<I", 0)),  # no such file
    (99, b""),                                             # no such op
]
for op, p in cases:
    s.sendall(msg(op, p))
    r = reply(s)
    assert r is not None and r[1] != 0, ("bad request served", op, r)
s.close()
PY
[ "$(ls "$m2")" = "dirty" ] || [ -z "$(ls "$m2")" ] || fail "bad input changed the tree: $(ls "$m2")"
echo ok >"$m2/alive" && [ "$(cat "$m3/alive")" = ok ] || fail "the server stopped serving"
rm -f "$m2/alive"

echo "== a node down: files whose frames lived there EIO, the others intact"
# (written through node 3's mount: the server's pmd copies the bytes into
# frames placed by the file's policy; node 2's mount never held them)
python3 -c 'import os, sys; open(sys.argv[1], "wb").close(); os.setxattr(sys.argv[1], "user.pmfs.node", b"3")' "$m3/on3"
head -c 1048576 /dev/urandom >"$work/on1"
cp "$work/on1" "$m3/on1"
head -c 1048576 /dev/urandom >"$m3/on3"
getfattr_info() { python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.pmfs.info").decode())' "$1"; }
getfattr_info "$m3/on3" | grep -q "remote=256" || fail "on3 is not on node 3: $(getfattr_info "$m3/on3")"
getfattr_info "$m3/on1" | grep -q "resident=256" || fail "on1 is not on node 1: $(getfattr_info "$m3/on1")"
kill -9 "$(cat "$dir/n3.pid")"
for _ in $(seq 100); do
	"$pmctl" --socket "$dir/n1.sock" nodes | grep -q "^node 3 down" && break
	sleep 0.1
done
"$pmctl" --socket "$dir/n1.sock" nodes | grep -q "^node 3 down" || fail "node 3 not seen down"
if cat "$m2/on3" >/dev/null 2>"$work/err"; then fail "a file on a dead node read"; fi
grep -q "Input/output error" "$work/err" || fail "not EIO: $(cat "$work/err")"
cmp "$work/on1" "$m2/on1" >/dev/null || fail "on1 was harmed by node 3's death"
fusermount3 -u "$m3" || fusermount3 -uz "$m3"
rm -f "$m2/on3" "$m2/on1" "$m2/dirty"

echo "== the server killed: mounts serve what they hold, EIO for the rest"
mount_on 1 "$m1"
head -c 300000 /dev/urandom >"$work/kept"
cp "$work/kept" "$m1/kept"
cp "$work/kept" "$m1/other"
cmp "$work/kept" "$m2/kept" || fail "kept differs"
exec 9<"$m2/kept"
kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
cmp "$work/kept" - <&9 || fail "an open file no longer reads after the server's death"
exec 9<&-
cmp "$work/kept" "$m2/kept" || fail "a held file no longer opens after the server's death"
if cat "$m2/other" >/dev/null 2>&1; then fail "a file the mount never held read without a server"; fi
if (echo x >"$m2/new") 2>/dev/null; then fail "a create succeeded without a server"; fi
for m in "$m1" "$m2"; do fusermount3 -u "$m"; done

echo "== the backing directory: loaded at start, written through, loaded again"
back=$work/back
mkdir -p "$back/sub"
printf 'from the backing directory\n' >"$back/sub/f"
ln -s sub/f "$back/link"
start_server --backing "$back"
mount_on 2 "$m2"
[ "$(cat "$m2/link")" = "from the backing directory" ] || fail "the backing tree was not loaded"
head -c 200000 /dev/urandom >"$work/w"
cp "$work/w" "$m2/sub/w"
mv "$m2/sub/f" "$m2/g"
cmp "$work/w" "$back/sub/w" || fail "a write was not written through"
[ -f "$back/g" ] && [ ! -e "$back/sub/f" ] || fail "a rename was not written through"
fusermount3 -u "$m2"
kill "$server_pid"; wait "$server_pid" || fail "pmfsd did not stop cleanly on SIGTERM"
server_pid=""
start_server --backing "$back"
mount_on 2 "$m2"
cmp "$work/w" "$m2/sub/w" || fail "the tree did not come back from the backing directory"
fusermount3 -u "$m2"
for i in 1 2; do
	"$pmctl" --socket "$dir/n$i.sock" stat | grep -q "invariant ok" ||
		fail "node $i's accounting: $("$pmctl" --socket "$dir/n$i.sock" stat)"
done
echo "pmfs: every scenario passed"
