#!/usr/bin/env bash
# `morphogen grad` (loss, final states and every gradient of a rollout from
# given states) agrees with the independent PyTorch reference in
# analysis/nca_torch.py, both with deterministic updates (fire_rate 1) and
# with the trained fire rate 0.5, whose random masks the reference ports. A
# deliberately damaged gradient file must be rejected, so the comparison
# cannot pass vacuously.
# mg-test: slow
set -euo pipefail
mkdir -p "$MG_WORK"
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
rm -f ./*.h5 ./*.err ./*.out

reference="$MG_SOURCE_DIR/analysis/nca_torch.py"
if [ ! -f "$reference" ]; then
    echo "SKIP: $reference does not exist yet"
    exit 0
fi
if ! "$MG_PYTHON" -c "import torch" 2>/dev/null; then
    echo "SKIP: $MG_PYTHON cannot import torch"
    exit 0
fi

"$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/run.h5" 2>train.err || fail "train: $(cat train.err)"

# Three random states on the 20x20x8 grid; alpha (channel 3) either 0 (dead)
# or in [0.3, 1] (clearly alive), so no cell sits at the alive threshold
# where the loss is not differentiable.
"$MG_PYTHON" - <<'PY'
import h5py
import numpy as np
rng = np.random.default_rng(12345)
states = (0.5 * rng.standard_normal((3, 20, 20, 8))).astype(np.float32)
alpha = rng.uniform(0.3, 1.0, (3, 20, 20))
alpha[rng.uniform(size=alpha.shape) < 0.5] = 0.0
states[..., 3] = alpha.astype(np.float32)
with h5py.File("states.h5", "w") as f:
    f["states"] = states
PY

check() { # NAME GRAD-FLAGS...
    local name=$1
    shift
    "$MORPHOGEN" grad "$MG_WORK/run.h5" --states "$MG_WORK/states.h5" --steps 6 --out "$MG_WORK/$name.h5" "$@" \
        >/dev/null 2>"$name.err" || fail "grad $name: $(cat "$name.err")"
    "$MG_PYTHON" "$reference" check-grad "$MG_WORK/run.h5" "$MG_WORK/states.h5" "$MG_WORK/$name.h5" --steps 6 "$@" \
        >"$name.out" 2>&1 || fail "check-grad $name: $(cat "$name.out")"
}
check deterministic --set model.fire_rate=1
check stochastic

# Both rollouts changed the states and produced non-zero gradients.
for name in deterministic stochastic; do
    [ "$(h5_eval "$name.h5" "int(np.any(f['grad/w2'][()] != 0) and np.isfinite(f['loss'][()]))")" = 1 ] \
        || fail "$name.h5 has a zero /grad/w2 or a non-finite /loss"
done
h5_differ deterministic.h5 stochastic.h5 final_states

# Negative control: a 1% error in one gradient tensor must be caught.
cp deterministic.h5 damaged.h5
"$MG_PYTHON" - <<'PY'
import h5py
with h5py.File("damaged.h5", "a") as f:
    f["grad/w1"][...] = f["grad/w1"][()] * 1.01
PY
rc=0
"$MG_PYTHON" "$reference" check-grad "$MG_WORK/run.h5" "$MG_WORK/states.h5" "$MG_WORK/damaged.h5" --steps 6 \
    --set model.fire_rate=1 >damaged.out 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "check-grad accepted a gradient file with /grad/w1 off by 1%: $(cat damaged.out)"

echo "ok"
