#!/usr/bin/env bash
# The plotting tools on synthetic files written with h5py in exactly the
# run-file and `grow` layouts: PNG sizes follow from the data, and missing or
# foreign files give exit 1 with a one-line message naming the file.
set -euo pipefail
mkdir -p "$MG_WORK"
cd "$MG_WORK"
rm -f ./*.h5 ./*.png ./*.txt
A="$MG_SOURCE_DIR/analysis"
PY="$MG_PYTHON"

fail() { echo "FAIL: $*" >&2; exit 1; }

# png_size FILE -> "WIDTH HEIGHT"
png_size() { "$PY" -c 'import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.verify(); print(*Image.open(sys.argv[1]).size)' "$1"; }

# expect_error EXPECTED_TEXT COMMAND...: exit status 1, one stderr line containing the text.
expect_error() {
    local want="$1"; shift
    local rc=0
    "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" -eq 1 ] || fail "$* exited $rc, expected 1"
    grep -qF -- "$want" err.txt || fail "$*: stderr lacks '$want': $(cat err.txt)"
    [ "$(wc -l <err.txt)" -eq 1 ] || fail "$*: error is not one line: $(cat err.txt)"
}

"$PY" "$A/testdata.py" run run.h5 --height 12 --width 10 --channels 8 --iterations 60
"$PY" "$A/testdata.py" grow grow.h5 --run run.h5 --steps 0,4,8,12,16,20,24,28,32,36,40

# loss_curve: a PNG of the default figure size (8x6 in at 100 dpi).
"$PY" "$A/loss_curve.py" run.h5 --out loss.png --smooth 10
[ -s loss.png ] || fail "loss.png not written"
[ "$(png_size loss.png)" = "800 600" ] || fail "loss.png is $(png_size loss.png), expected 800 600"

# growth_strip, default: 8 of the 11 frames, scale 4: 8*40 + 7*4 gap = 348 wide, 12*4 + 16 label = 64 high.
"$PY" "$A/growth_strip.py" grow.h5 --out strip.png
[ "$(png_size strip.png)" = "348 64" ] || fail "strip.png is $(png_size strip.png), expected 348 64"

# Chosen steps and scale: 3 frames * 10*3 + 2*4 = 98 wide, 12*3 + 16 = 52 high.
"$PY" "$A/growth_strip.py" grow.h5 --out strip3.png --steps 0,20,40 --scale 3
[ "$(png_size strip3.png)" = "98 52" ] || fail "strip3.png is $(png_size strip3.png), expected 98 52"

# Pixel content: frame 0 is the seed (one black opaque cell at the centre,
# white elsewhere); the last frame is the target composited on white.
"$PY" - <<'PY'
import h5py, numpy as np
from PIL import Image
im = np.asarray(Image.open("strip3.png").convert("RGB")).astype(int)
k, h, w = 3, 12, 10
seed = im[6 * k + 1, 5 * k + 1]
corner = im[0, 0]
assert tuple(seed) == (0, 0, 0), "seed cell should be black, got %s" % (seed,)
assert tuple(corner) == (255, 255, 255), "empty cell should be white, got %s" % (corner,)
t = h5py.File("run.h5", "r")["targets"][0]
want = np.clip(1 - t[..., 3:4] + t[..., :3], 0, 1)
x0 = 2 * (w * k + 4)
got = im[0:h * k:k, x0:x0 + w * k:k] / 255.0
assert np.abs(got - want).max() <= 1 / 255 + 1e-6, "last frame differs from target on white"
band = im[h * k:, :]
assert (band < 128).any(), "no step labels drawn"
PY

# Errors: one line naming the file, exit 1.
expect_error "missing.h5: no such file" "$PY" "$A/loss_curve.py" missing.h5 --out x.png
expect_error "grow.h5: not a morphogen run file" "$PY" "$A/loss_curve.py" grow.h5 --out x.png
echo "not hdf5" > text.h5
expect_error "text.h5: not an HDF5 file" "$PY" "$A/loss_curve.py" text.h5 --out x.png
expect_error "missing.h5: no such file" "$PY" "$A/growth_strip.py" missing.h5 --out x.png
expect_error "available steps: 0,4,8,12,16,20,24,28,32,36,40" \
    "$PY" "$A/growth_strip.py" grow.h5 --out x.png --steps 0,7
expect_error "no dataset frames" "$PY" "$A/growth_strip.py" run.h5 --out x.png
expect_error "missing.h5: no such file" "$PY" "$A/run_info.py" missing.h5
[ ! -e x.png ] || fail "x.png written despite errors"

# run_info: summary lines with the numbers from the file.
"$PY" "$A/run_info.py" run.h5 >info.txt
grep -q "12 x 10" info.txt || fail "run_info lacks the grid: $(cat info.txt)"
grep -q "60 of 60 iterations" info.txt || fail "run_info lacks the progress: $(cat info.txt)"
grep -q "pool         4 samples" info.txt || fail "run_info lacks the pool: $(cat info.txt)"
echo "analysis tools on synthetic files: ok"
