#!/usr/bin/env bash
# The Debian package (cpack -G DEB): it holds the daemon, pmctl, the
# library, its headers and pkg-config file, the unit (naming /usr/sbin/pmd),
# the samples and the manual pages; it depends on the libraries the
# binaries link; its pmd runs.
# usage: test_package.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
fail() { echo "FAIL: $*"; exit 1; }
command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null ||
	{ echo "skipped: no dpkg-deb/dpkg-shlibdeps (apt-get install dpkg-dev)"; exit 77; }
work=$(mktemp -d /tmp/pmd-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT

(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" \
	>"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack failed"; }
deb=$(ls "$work"/*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || fail "no .deb made"
dpkg-deb -c "$deb" | awk '{ print $6 }' >"$work/files"
for f in ./usr/sbin/pmd ./usr/bin/pmctl ./usr/include/pm/pm.h \
	 ./usr/lib/systemd/system/pmd.service ./usr/share/pmd/pmd.conf.sample \
	 ./usr/share/man/man8/pmd.8 ./usr/share/man/man5/pmd.conf.5 \
	 ./usr/share/man/man3/libpmclient.3; do
	grep -qx -- "$f" "$work/files" || fail "the package lacks $f"
done
grep -q '/libpmclient\.so' "$work/files" || fail "the package lacks libpmclient.so"
grep -q '/pmclient\.pc$' "$work/files" || fail "the package lacks pmclient.pc"
! grep -q -e '/pm-demo$' -e '/pm-span$' -e '/quickstart$' "$work/files" ||
	fail "the package installs an example as a command"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libfabric libsodium; do
	grep -q "$lib" <<<"$depends" || fail "Depends does not name $lib: $depends"
done
dpkg-deb -x "$deb" "$work/root"
grep -q '^ExecStart=/usr/sbin/pmd ' "$work/root/usr/lib/systemd/system/pmd.service" ||
	fail "the unit does not run /usr/sbin/pmd"
"$work/root/usr/sbin/pmd" --version >/dev/null || fail "the packaged pmd does not run"
echo "package: $(basename "$deb"), $(wc -l <"$work/files") entries; Depends: $depends"
