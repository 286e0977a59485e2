#!/bin/bash
# `morphogen target`: renders an emoji to a PNG of the training grid size,
# prints help, and reports bad flags (exit 2) and bad inputs (exit 1).
set -euo pipefail
mkdir -p "$MG_WORK"
cd "$MG_WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }

# Width and height from the PNG's IHDR chunk (bytes 16..23, big-endian).
png_size() {
    od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d\n", $1*16777216 + $2*65536 + $3*256 + $4, $5*16777216 + $6*65536 + $7*256 + $8 }'
}

rm -f lizard.png
"$MORPHOGEN" target 'emoji:🦎' --out "$MG_WORK/lizard.png" > out.txt
[ -s lizard.png ] || fail "lizard.png was not written"
[ "$(head -c 8 lizard.png | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "lizard.png is not a PNG"
size=$(png_size lizard.png)
[ "$size" = "72x72" ] || fail "lizard.png is $size, expected 72x72 (40 + 2*16)"

"$MORPHOGEN" target 'emoji:U+1F339' --out rose.png --size 20 --padding 3 --on-white > /dev/null
size=$(png_size rose.png)
[ "$size" = "26x26" ] || fail "rose.png is $size, expected 26x26"

"$MORPHOGEN" target --help > help.txt || fail "--help exited non-zero"
grep -q "usage: morphogen target" help.txt || fail "--help does not print usage"

set +e
"$MORPHOGEN" target 'emoji:🦎' --out x.png --no-such-flag 2> bad_flag.txt
rc=$?
set -e
[ "$rc" = 2 ] || fail "bad flag exited $rc, expected 2"
grep -q "^morphogen target: .*--no-such-flag" bad_flag.txt || fail "bad flag message: $(cat bad_flag.txt)"

missing="$MG_WORK/no-such-target.png"
set +e
"$MORPHOGEN" target "$missing" --out x.png 2> missing.txt
rc=$?
set -e
[ "$rc" = 1 ] || fail "missing PNG exited $rc, expected 1"
grep -qF "morphogen: $missing: no such file" missing.txt || fail "missing PNG message: $(cat missing.txt)"
[ ! -e x.png ] || fail "x.png written despite the error"

echo "ok"
