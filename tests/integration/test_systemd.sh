#!/usr/bin/env bash
# The pmd under systemd: the unit verifies (systemd-analyze verify), the
# sample configuration file with every key is one the pmd takes, and the
# pmd speaks the notify protocol the unit's Type=notify needs (READY=1 to
# $NOTIFY_SOCKET once it serves, STOPPING=1 on SIGTERM). Starting it as a
# unit for real needs systemd as PID 1: skipped here, saying so, when not.
# usage: test_systemd.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
work=$(mktemp -d /tmp/pmd-systemd-XXXXXX)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The sample configuration: every key commented; with them all given
# their documented defaults (but those that need something more: a
# cluster, a group, a backing store), the pmd starts.
sed -n 's/^;\([a-z_]* = .*\)$/\1/p' "$top/deploy/pmd.conf.sample" |
	grep -v '^\(cluster\|transport\|backing_store\|backing_size\|socket_group\|socket\|guarantee\|extra\|sessions\|handles\) ' \
	>"$work/keys"
{ echo "[pmd]"; cat "$work/keys"; } >"$work/pmd.conf"
[ "$(wc -l <"$work/keys")" -ge 8 ] || fail "the sample lost its keys"

# The notify protocol, as systemd would see it.
python3 - "$work" "$build/pmd/pmd" <<'PY' || fail "the pmd did not notify"
import os, socket, subprocess, sys, signal
work, pmd = sys.argv[1], sys.argv[2]
path = os.path.join(work, "notify")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(10)
env = dict(os.environ, NOTIFY_SOCKET=path)
p = subprocess.Popen([pmd, "--config", os.path.join(work, "pmd.conf"),
                      "--socket", os.path.join(work, "pmd.sock"),
                      "--memory", "16M"], env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:
    try:
        msg = s.recv(4096).decode()
    except TimeoutError:
        p.kill()
        print(p.communicate()[1].decode(), file=sys.stderr)
        raise
    assert "READY=1" in msg.split("\n"), msg
    assert os.path.exists(os.path.join(work, "pmd.sock"))
    mode = os.stat(os.path.join(work, "pmd.sock")).st_mode & 0o777
    assert mode == 0o660, oct(mode)
    p.send_signal(signal.SIGTERM)
    msg = s.recv(4096).decode()
    assert msg == "STOPPING=1", msg
    assert p.wait(10) == 0
    print("notify: READY=1 when serving, STOPPING=1 on SIGTERM; socket mode 0660")
finally:
    if p.poll() is None:
        p.kill()
        p.wait()
PY

# The unit, pointing at this build's pmd.
if command -v systemd-analyze >/dev/null; then
	sed "s|^ExecStart=[^ ]*|ExecStart=$build/pmd/pmd|" \
		"$build/deploy/pmd.service" >"$work/pmd.service"
	SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$work/pmd.service" \
		>"$work/verify" 2>&1 || { cat "$work/verify"; fail "systemd-analyze verify"; }
	# (verify speaks of what the host lacks, not of the unit: only
	# lines naming our unit count)
	if grep -q "pmd.service" "$work/verify"; then
		cat "$work/verify"
		fail "systemd-analyze has something to say of the unit"
	fi
	echo "unit: systemd-analyze verify has nothing to say"
else
	echo "skipped: systemd-analyze is not installed (the unit was not verified)"
fi
if [ -d /run/systemd/system ]; then
	echo "note: systemd runs here, but this test does not start units on the host"
else
	echo "skipped: systemd is not PID 1 here; the pmd was not started as a unit"
fi
