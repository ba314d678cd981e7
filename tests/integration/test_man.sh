#!/usr/bin/env bash
# The manual pages say what the programs do: each renders without a
# warning; every option of `pmd --help` is in pmd(8), and (as a key, with
# underscores) in pmd.conf(5) and the sample configuration; every command
# of `pmctl --help` is in pmctl(8); every function of <pm/pm.h> is in
# libpmclient(3); the install puts them under share/man.
# usage: test_man.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
man=$top/docs/man
fail() { echo "FAIL: $*"; exit 1; }
command -v groff >/dev/null ||
	{ echo "skipped: no groff (apt-get install groff-base)"; exit 77; }
work=$(mktemp -d /tmp/pmd-man-XXXXXX)
trap 'rm -rf "$work"' EXIT

# Rendered as plain text, warnings (-ww) to their own file.
for page in pmd.8 pmctl.8 pmd.conf.5 libpmclient.3; do
	[ -f "$man/$page" ] || fail "no docs/man/$page"
	groff -man -Tutf8 -ww -rHY=0 -rLL=200n -P-cbou "$man/$page" >"$work/$page.txt" \
		2>"$work/$page.warn"
	[ ! -s "$work/$page.warn" ] || fail "$page: $(cat "$work/$page.warn")"
done

# Options: those of --help (but --help and --version, in the page too).
opts=$("$build/pmd/pmd" --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u)
[ -n "$opts" ] || fail "pmd --help lists no options"
for o in $opts; do
	grep -q -- "$o" "$work/pmd.8.txt" || fail "pmd(8) does not describe $o"
	case $o in --config|--ready-fd|--help|--version) continue ;; esac
	key=${o#--}
	key=${key//-/_}
	grep -q "^ *$key = " "$work/pmd.conf.5.txt" ||
		fail "pmd.conf(5) does not describe the key $key"
	grep -q "^;$key =" "$top/deploy/pmd.conf.sample" ||
		fail "deploy/pmd.conf.sample does not show the key $key"
done

# pmctl's commands: the first word of each command line of its --help.
cmds=$("$build/deploy/pmctl" --help 2>&1 | awk '/^  [a-z]/ { print $1 }')
[ -n "$cmds" ] || fail "pmctl --help lists no commands"
for c in $cmds; do
	grep -q "^ *$c\\b" "$work/pmctl.8.txt" ||
		fail "pmctl(8) does not describe the command $c"
done

# The library: every function of the public header.
fns=$(grep -o 'PM_API [a-z_ *]*\bpm_[a-z_]*(' "$top/include/pm/pm.h" |
	grep -o 'pm_[a-z_]*' | sort -u)
[ -n "$fns" ] || fail "no functions found in pm.h"
for f in $fns; do
	grep -q "$f" "$work/libpmclient.3.txt" ||
		fail "libpmclient(3) does not name $f"
done

# Installed.
cmake --install "$build" --prefix "$work/prefix" >/dev/null
for p in man8/pmd.8 man8/pmctl.8 man5/pmd.conf.5 man3/libpmclient.3; do
	[ -f "$work/prefix/share/man/$p" ] || fail "share/man/$p not installed"
done
echo "man pages: $(echo "$opts" | wc -l) options, $(echo "$cmds" | wc -l) commands, $(echo "$fns" | wc -l) functions described; installed"
