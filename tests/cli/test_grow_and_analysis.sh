#!/usr/bin/env bash
# `morphogen grow` rolls a trained model out from its seed into an HDF5 file
# of frames and a PNG strip, reproducibly; the analysis scripts turn run and
# grow files into plots.
set -euo pipefail
mkdir -p "$MG_WORK"
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
rm -f ./*.h5 ./*.png ./*.err

# is_png FILE: exists and starts with the PNG signature.
is_png() {
    [ -s "$1" ] || fail "$1 was not written"
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$1 is not a PNG"
}

"$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/run.h5" 2>train.err || fail "train: $(cat train.err)"

"$MORPHOGEN" grow "$MG_WORK/run.h5" --steps 20 --out "$MG_WORK/G.h5" >grow.out 2>grow.err \
    || fail "grow: $(cat grow.err)"
is_png G_strip.png
"$MG_PYTHON" - <<'PY' || fail "G.h5 does not hold the expected frames"
import sys
import h5py
import numpy as np
problems = []
with h5py.File("G.h5", "r") as f:
    frames, steps = f["frames"][()], f["steps"][()]
if frames.dtype != np.float32 or frames.shape != (21, 20, 20, 8):
    problems.append(f"/frames is {frames.dtype} {frames.shape}, expected float32 (21, 20, 20, 8)")
elif list(steps) != list(range(21)):
    problems.append(f"/steps is {list(steps)}, expected 0..20")
else:
    # Frame 0 is the seed: one cell in the middle of the grid, alpha and
    # hidden channels 1, RGB 0; everything else empty.
    seed = np.zeros((20, 20, 8), np.float32)
    seed[10, 10, 3:] = 1
    if not np.array_equal(frames[0], seed):
        problems.append("frame 0 is not the seed cell at (10, 10)")
    if not np.all(np.isfinite(frames)):
        problems.append("frames hold non-finite values")
    if np.array_equal(frames[20], frames[0]):
        problems.append("frame 20 equals frame 0: nothing grew")
    alive = (frames[:, :, :, 3] > 0.1).sum(axis=(1, 2))
    if alive[20] <= 1:
        problems.append(f"only {alive[20]} cell(s) alive after 20 steps")
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# The same call again gives the same frames; another --seed other fire masks.
"$MORPHOGEN" grow "$MG_WORK/run.h5" --steps 20 --out "$MG_WORK/G2.h5" 2>grow2.err || fail "grow 2: $(cat grow2.err)"
h5_same G.h5 G2.h5 frames steps
"$MORPHOGEN" grow "$MG_WORK/run.h5" --steps 20 --seed 99 --out "$MG_WORK/G99.h5" 2>grow99.err \
    || fail "grow --seed: $(cat grow99.err)"
h5_differ G.h5 G99.h5 frames

# Defaults: train.steps_max (12) steps; an explicit strip and its steps.
"$MORPHOGEN" grow "$MG_WORK/run.h5" --out "$MG_WORK/D.h5" --strip "$MG_WORK/custom.png" --strip-steps 0,6,12 \
    2>growd.err || fail "grow with defaults: $(cat growd.err)"
[ "$(h5_eval D.h5 "f['frames'].shape[0]")" = 13 ] || fail "grow without --steps did not run train.steps_max steps"
is_png custom.png
[ ! -e D_strip.png ] || fail "grow wrote D_strip.png although --strip named custom.png"

# The analysis scripts, when present.
analysis="$MG_SOURCE_DIR/analysis"
if [ -f "$analysis/loss_curve.py" ]; then
    "$MG_PYTHON" "$analysis/loss_curve.py" "$MG_WORK/run.h5" --out "$MG_WORK/loss.png" >/dev/null 2>loss.err \
        || fail "loss_curve.py: $(cat loss.err)"
    is_png loss.png
else
    echo "SKIP: $analysis/loss_curve.py does not exist"
fi
if [ -f "$analysis/growth_strip.py" ]; then
    "$MG_PYTHON" "$analysis/growth_strip.py" "$MG_WORK/G.h5" --out "$MG_WORK/strip.png" >/dev/null 2>strip.err \
        || fail "growth_strip.py: $(cat strip.err)"
    is_png strip.png
else
    echo "SKIP: $analysis/growth_strip.py does not exist"
fi
if [ -f "$analysis/run_info.py" ]; then
    "$MG_PYTHON" "$analysis/run_info.py" "$MG_WORK/run.h5" >info.out 2>info.err || fail "run_info.py: $(cat info.err)"
    grep -q "10 of 10 iterations" info.out || fail "run_info.py does not report 10 of 10 iterations: $(cat info.out)"
fi

echo "ok"
