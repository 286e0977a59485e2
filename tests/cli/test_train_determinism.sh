#!/usr/bin/env bash
# Training is a pure function of config and seed: two runs of the same
# config give bitwise identical weights, Adam moments, pool and losses (only
# the timing metrics differ), whatever the thread count; another train.seed
# gives another model.
set -euo pipefail
mkdir -p "$MG_WORK"
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
rm -f ./*.h5

# Everything a run computes; /metrics/wall_time and cell_steps_per_s are
# left out on purpose.
COMPUTED=(checkpoint targets metrics/iteration metrics/loss metrics/lr metrics/grad_norm)

"$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/a.h5" 2>a.err || fail "train a: $(cat a.err)"
"$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/b.h5" 2>b.err || fail "train b: $(cat b.err)"
[ "$(h5_eval a.h5 "f['metrics/loss'].shape[0]")" = 10 ] || fail "a.h5 does not hold 10 loss rows"
[ "$(h5_eval a.h5 "int(f['checkpoint'].attrs['iteration'])")" = 10 ] || fail "a.h5 checkpoint is not at iteration 10"
h5_same a.h5 b.h5 "${COMPUTED[@]}" config

# The loss must actually have been computed (not a constant placeholder).
[ "$(h5_eval a.h5 "int(np.all(np.isfinite(f['metrics/loss'][()])) and len(set(f['metrics/loss'][()])) > 1)")" = 1 ] \
    || fail "a.h5 /metrics/loss is not a varying finite series"

# A different seed: different parameters and losses.
"$MORPHOGEN" train "${TINY[@]}" --set train.seed=2 --out "$MG_WORK/seed2.h5" 2>seed2.err \
    || fail "train seed2: $(cat seed2.err)"
h5_differ a.h5 seed2.h5 checkpoint/params/w1
h5_differ a.h5 seed2.h5 checkpoint/params/w2
h5_differ a.h5 seed2.h5 metrics/loss

# One thread versus two: the same bits (the config differs in run.threads only).
"$MORPHOGEN" train "${TINY[@]}" --set run.threads=1 --out "$MG_WORK/t1.h5" 2>t1.err || fail "train t1: $(cat t1.err)"
"$MORPHOGEN" train "${TINY[@]}" --set run.threads=2 --out "$MG_WORK/t2.h5" 2>t2.err || fail "train t2: $(cat t2.err)"
h5_same t1.h5 t2.h5 "${COMPUTED[@]}"
h5_same a.h5 t1.h5 "${COMPUTED[@]}"

echo "ok"
