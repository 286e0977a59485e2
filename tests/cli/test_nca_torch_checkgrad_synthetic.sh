#!/usr/bin/env bash
# mg-test: slow
# check-grad's plumbing and tolerance on a synthetic `grad` output made by the
# torch model in float32 (what morphogen computes in): it must accept that
# file and reject one where a single gradient entry is off by 1% of the
# tensor's scale. The comparison with the real `morphogen grad` is an
# end-to-end test of its own.
set -euo pipefail
mkdir -p "$MG_WORK"
cd "$MG_WORK"
A="$MG_SOURCE_DIR/analysis"
PY="$MG_PYTHON"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$PY" "$A/testdata.py" run run.h5 --targets 2
"$PY" "$A/testdata.py" states states.h5 --run run.h5 --batch 3
"$PY" "$A/testdata.py" grad run.h5 states.h5 grad.h5 --steps 12
"$PY" "$A/nca_torch.py" check-grad run.h5 states.h5 grad.h5 --steps 12

# Same with every cell firing, passed as an override on both sides.
"$PY" "$A/testdata.py" grad run.h5 states.h5 grad1.h5 --steps 12 --set model.fire_rate=1
"$PY" "$A/nca_torch.py" check-grad run.h5 states.h5 grad1.h5 --steps 12 --set model.fire_rate=1
# ...and without the override the fire masks differ, which must be caught.
rc=0; "$PY" "$A/nca_torch.py" check-grad run.h5 states.h5 grad1.h5 --steps 12 >out.txt || rc=$?
[ "$rc" -eq 1 ] || fail "check-grad accepted fire_rate 1 results as fire_rate 0.5 (exit $rc)"

for t in loss grad/w1 grad/b1 grad/w2 grad/states final_states loss_per_sample; do
    "$PY" "$A/testdata.py" perturb grad.h5 bad.h5 "$t"
    rc=0; "$PY" "$A/nca_torch.py" check-grad run.h5 states.h5 bad.h5 --steps 12 >out.txt || rc=$?
    [ "$rc" -eq 1 ] || fail "check-grad accepted a perturbed $t (exit $rc)"
    grep -q "^  $t .*EXCEEDS" out.txt || fail "check-grad did not blame $t: $(cat out.txt)"
done

# Wrong step count: final states differ.
rc=0; "$PY" "$A/nca_torch.py" check-grad run.h5 states.h5 grad.h5 --steps 11 >out.txt || rc=$?
[ "$rc" -eq 1 ] || fail "check-grad accepted a rollout of the wrong length (exit $rc)"

rc=0; "$PY" "$A/nca_torch.py" check-grad run.h5 missing.h5 grad.h5 --steps 12 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && grep -q "missing.h5: no such file" err.txt || fail "missing STATES file: exit $rc, $(cat err.txt)"
echo "check-grad on synthetic files: ok"
