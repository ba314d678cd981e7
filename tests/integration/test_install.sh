#!/usr/bin/env bash
# The install, as an operator and a developer use it: `cmake --install`
# into a fresh prefix gives the daemon, pmctl (which finds the library in
# that prefix, with no LD_LIBRARY_PATH), the library (shared and static),
# its headers, a pmclient.pc that names that prefix and a CMake package;
# the examples are not installed as commands. A client is built against it
# with pkg-config, statically, and with CMake, and runs.
# usage: test_install.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
work=$(mktemp -d /tmp/pmd-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
# A library built with a sanitizer wants its clients built with it too.
san=""
case $(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt") in
AddressSanitizer) san="-fsanitize=address,undefined" ;;
ThreadSanitizer) san="-fsanitize=thread" ;;
esac
[ -x "$prefix/sbin/pmd" ] || fail "no sbin/pmd"
[ -x "$prefix/bin/pmctl" ] || fail "no bin/pmctl"
for x in pm-demo pm-span; do
	[ ! -e "$prefix/bin/$x" ] || fail "the example $x is installed as a command"
done
[ -f "$prefix/include/pm/pm.h" ] || fail "no include/pm/pm.h"
pc=$(find "$prefix" -name pmclient.pc)
[ -n "$pc" ] || fail "no pmclient.pc"
libdir=$(find "$prefix" -name 'libpmclient.so*' -printf '%h\n' | head -n1)

# The soname: the major, and before 1.0 the minor too (a 0.x minor may
# change the ABI).
ver=$(sed -n 's/^Version: *//p' "$pc")
soname=$(readelf -d "$libdir/libpmclient.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
want=libpmclient.so.${ver%%.*}
[ "${ver%%.*}" != 0 ] || want=libpmclient.so.${ver%.*}
[ "$soname" = "$want" ] || fail "soname $soname, not $want (version $ver)"

# pmctl finds its library in the prefix.
found=$(env -u LD_LIBRARY_PATH ldd "$prefix/bin/pmctl" |
	awk '/libpmclient/ { print $3 }')
[ -n "$found" ] && [ "$(dirname "$(readlink -f "$found")")" = "$(readlink -f "$libdir")" ] ||
	fail "the installed pmctl does not find libpmclient in $libdir (${found:-none})"
set +e
env -u LD_LIBRARY_PATH "$prefix/bin/pmctl" --socket "$work/none.sock" stat \
	>/dev/null 2>&1
[ $? -eq 1 ] || fail "the installed pmctl does not run (or does not say the pmd is not there)"
set -e

cat >"$work/client.c" <<'C'
#include <errno.h>
#include <pm/pm.h>
int main(int argc, char **argv)
{
	pm_t *pm;
	error_t err = pm_connect(argv[1], &pm);
	return argc == 2 && (err == ENOENT || err == ECONNREFUSED) ? 0 : 1;
}
C
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs pmclient)
case $flags in
*"$prefix"*) ;;
*) fail "pmclient.pc does not name the prefix: $flags" ;;
esac
cc $san -o "$work/client" "$work/client.c" $flags -Wl,-rpath,"$libdir"
"$work/client" "$work/none.sock" || fail "the pkg-config client did not run"
cc $san -o "$work/client-static" "$work/client.c" \
	$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags pmclient) \
	"$libdir/libpmclient.a" -lpthread
"$work/client-static" "$work/none.sock" || fail "the static client did not run"

mkdir "$work/cm"
cp "$work/client.c" "$work/cm/"
cat >"$work/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(client C)
find_package(pmclient REQUIRED)
add_executable(client client.c)
target_link_libraries(client PRIVATE pmclient::pmclient)
CM
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build "$work/cm/build" >/dev/null
"$work/cm/build/client" "$work/none.sock" || fail "the CMake client did not run"
echo "installed into a fresh prefix; clients built with pkg-config, statically and with CMake run"
