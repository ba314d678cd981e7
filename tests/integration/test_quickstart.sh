#!/usr/bin/env bash
# The quick start of docs/api.md is examples/quickstart.c, word for word,
# and it runs: against a pmd, the other task reads what the owner wrote,
# through the share rendezvous (its id in, a token out).
# usage: test_quickstart.sh TOP BUILD
set -euo pipefail
top=$1 build=$2
work=$(mktemp -d /tmp/pmd-quick-XXXXXX)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The program in the document: the C block after "## Quick start".
awk '/^## Quick start/ { q = 1 } q && /^```c$/ { c = 1; next }
     c && /^```$/ { exit } c { print }' "$top/docs/api.md" >"$work/doc.c"
[ -s "$work/doc.c" ] || fail "docs/api.md has no quick start program"
diff -u "$top/examples/quickstart.c" "$work/doc.c" ||
	fail "the quick start in docs/api.md is not examples/quickstart.c"

"$build/pmd/pmd" --socket "$work/pmd.sock" --memory 64M --guarantee 256 >/dev/null \
	2>"$work/pmd.log" &
pid=$!
for _ in $(seq 1 100); do [ -S "$work/pmd.sock" ] && break; sleep 0.05; done
out=$(PM_ENDPOINT=$work/pmd.sock timeout 20 "$build/examples/quickstart") ||
	fail "quickstart failed: $out"
[ "$out" = "the other task reads: hello from the owner" ] ||
	fail "quickstart printed: $out"
echo "quick start: $out"
