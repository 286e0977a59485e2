#!/usr/bin/env bash
# `train --resume` continues bit for bit: 5 iterations plus a resume to 10
# equal 10 iterations in one go. A resume may change train.iterations and
# run.* only, and keeps the stored config otherwise.
set -euo pipefail
mkdir -p "$MG_WORK"
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
rm -f ./*.h5 ./*.tmp

COMPUTED=(checkpoint targets metrics/iteration metrics/loss metrics/lr metrics/grad_norm)

"$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/whole.h5" 2>whole.err || fail "train whole: $(cat whole.err)"
"$MORPHOGEN" train "${TINY[@]}" --set train.iterations=5 --out "$MG_WORK/split.h5" 2>split.err \
    || fail "train split: $(cat split.err)"
[ "$(h5_eval split.h5 "int(f['checkpoint'].attrs['iteration'])")" = 5 ] || fail "split.h5 is not at iteration 5"
cp split.h5 half.h5
[ "$(h5_eval split.h5 "f['config'][()].decode()")" != "" ] || fail "split.h5 has an empty /config"

# A resume that would change the model's shape is refused before anything
# is written, as is a bad value for such a key (its own message).
sum_before=$(md5sum < split.h5)
run_status 2 hidden.err "$MORPHOGEN" train --resume "$MG_WORK/split.h5" --set model.hidden=16
expect_one_line hidden.err "--set model.hidden=16: cannot change this key when resuming"
run_status 2 hidden_bad.err "$MORPHOGEN" train --resume "$MG_WORK/split.h5" --set model.hidden=lots
expect_one_line hidden_bad.err "model.hidden"
! grep -q "cannot change" hidden_bad.err || fail "a bad value reported as a change: $(cat hidden_bad.err)"
[ "$(md5sum < split.h5)" = "$sum_before" ] || fail "the refused resume changed split.h5"
[ ! -e split.h5.tmp ] || fail "the refused resume left split.h5.tmp"

# run.matmul, like run.backend, may change on resume, but the cross-key rules
# still hold: tf32 on this run's cpu backend is refused, in one line, before
# anything is written; tf32 together with run.backend = cuda is no refused
# change (it then trains on a GPU, or fails for want of one, with exit 1).
run_status 2 matmul.err "$MORPHOGEN" train --resume "$MG_WORK/split.h5" --set run.matmul=tf32
expect_one_line matmul.err "run.matmul: 'tf32' needs run.backend = cuda"
[ "$(md5sum < split.h5)" = "$sum_before" ] || fail "the refused tf32 resume changed split.h5"
rc=0
"$MORPHOGEN" train --resume "$MG_WORK/split.h5" --set run.backend=cuda --set run.matmul=tf32 \
    --out "$MG_WORK/tf32.h5" >/dev/null 2>tf32.err || rc=$?
[ "$rc" -ne 2 ] && ! grep -q "cannot change" tf32.err ||
    fail "resuming with run.backend=cuda run.matmul=tf32 was refused (exit $rc): $(cat tf32.err)"
[ "$(md5sum < split.h5)" = "$sum_before" ] || fail "the tf32 resume into tf32.h5 changed split.h5"

# CONFIG and --resume together are a usage error.
printf '[model]\nchannels = 8\n' > some.ini
run_status 2 both.err "$MORPHOGEN" train some.ini --resume "$MG_WORK/split.h5"
expect_one_line both.err "--resume"

# Keys a resume cannot change may be given the values the run has (a
# requeued job repeats its command line): accepted, nothing changes.
"$MORPHOGEN" train --resume "$MG_WORK/split.h5" --set train.iterations=10 --set model.hidden=32 \
    --set train.batch=4 2>resume.err || fail "resume: $(cat resume.err)"
[ "$(h5_eval split.h5 "f['metrics/loss'].shape[0]")" = 10 ] || fail "resumed split.h5 lacks 10 loss rows"
[ "$(h5_eval split.h5 "list(f['metrics/iteration'][()])")" = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" ] \
    || fail "resumed split.h5 /metrics/iteration is not 1..10"
h5_same whole.h5 split.h5 "${COMPUTED[@]}"

# The stored config is unchanged except train.iterations: the INI text and
# the typed attributes alike.
"$MG_PYTHON" - half.h5 split.h5 <<'PY' || fail "resuming changed /config beyond train.iterations"
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    ta = a["config"][()].decode().splitlines()
    tb = b["config"][()].decode().splitlines()
    changed = [(x, y) for x, y in zip(ta, tb) if x != y]
    ok = len(ta) == len(tb) and changed == [("iterations = 5", "iterations = 10")]
    aa, ab = dict(a["config"].attrs), dict(b["config"].attrs)
    keys_changed = sorted(k for k in aa if k not in ab or not np.array_equal(aa[k], ab[k]))
    ok = ok and sorted(aa) == sorted(ab) and keys_changed == ["train.iterations"]
    ok = ok and int(ab["train.iterations"]) == 10
    if not ok:
        print("text changes:", changed, "attribute changes:", keys_changed, file=sys.stderr)
    sys.exit(0 if ok else 1)
PY

# A run file written before run.matmul existed (no such line in /config, no
# such attribute) resumes as fp32, bit for bit, and gains the key.
cp half.h5 old.h5
"$MG_PYTHON" - <<'PY' || fail "could not make old.h5"
import h5py
with h5py.File("old.h5", "a") as f:
    text = f["config"][()].decode()
    lines = text.splitlines(keepends=True)
    kept = "".join(l for l in lines if not l.startswith("matmul ="))
    assert len(kept) < len(text)
    f["config"][()] = kept
    del f["config"].attrs["run.matmul"]
PY
[ "$(h5_eval old.h5 "'matmul' in f['config'][()].decode() or 'run.matmul' in f['config'].attrs")" = False ] \
    || fail "old.h5 still names run.matmul"
"$MORPHOGEN" train --resume "$MG_WORK/old.h5" --set train.iterations=10 2>old.err || fail "resume old.h5: $(cat old.err)"
h5_same whole.h5 old.h5 "${COMPUTED[@]}"
[ "$(h5_eval old.h5 "f['config'].attrs['run.matmul']")" = fp32 ] || fail "resumed old.h5 lacks run.matmul = fp32"

# Resuming into another file (--out) leaves the source untouched.
cp half.h5 src.h5
sum_src=$(md5sum < src.h5)
"$MORPHOGEN" train --resume "$MG_WORK/src.h5" --set train.iterations=10 --out "$MG_WORK/copy.h5" 2>copy.err \
    || fail "resume --out: $(cat copy.err)"
[ "$(md5sum < src.h5)" = "$sum_src" ] || fail "resume --out changed the resumed file"
h5_same whole.h5 copy.h5 "${COMPUTED[@]}"

echo "ok"
