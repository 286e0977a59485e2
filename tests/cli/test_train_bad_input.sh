#!/usr/bin/env bash
# Bad input stops morphogen with the documented exit status and ONE line on
# stderr naming the file (or key, spec, flag) and the problem, without
# creating or damaging any run file:
#   config errors (2), unreadable targets (1), broken run files given to
#   train --resume, grow and grad (1), a loss that turns NaN (3, last good
#   checkpoint kept), and bad flags (2).
set -euo pipefail
mkdir -p "$MG_WORK"
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
rm -rf ./*.h5 ./*.tmp ./*.png ./*.ini ./*.err ./*.error

# no_output PATH...: none of the files, nor their .tmp, exists.
no_output() {
    local p
    for p in "$@"; do
        [ ! -e "$p" ] || fail "$p was created although the command failed"
        [ ! -e "$p.tmp" ] || fail "$p.tmp was left behind"
    done
}

# ---- (a) config errors: exit 2, file:line and key, no run file ----
printf '[model]\nchannels = 8\nwidth = 3\n' > unknown.ini
run_status 2 a1.err "$MORPHOGEN" train unknown.ini "${TINY[@]}" --out "$MG_WORK/x.h5"
expect_one_line a1.err "unknown.ini:3" "width"
no_output x.h5

printf '[train]\n; a comment\nlr = 0.0o2\n' > malformed.ini
run_status 2 a2.err "$MORPHOGEN" train malformed.ini "${TINY[@]}" --out "$MG_WORK/x.h5"
expect_one_line a2.err "malformed.ini:3" "lr"
no_output x.h5

printf '[model]\nfire_rate = 1.5\n' > range.ini
run_status 2 a3.err "$MORPHOGEN" train range.ini --out "$MG_WORK/x.h5"
expect_one_line a3.err "range.ini:2" "fire_rate"
no_output x.h5

run_status 2 a4.err "$MORPHOGEN" train "${TINY[@]}" --set train.batch=notanumber --out "$MG_WORK/x.h5"
expect_one_line a4.err "train.batch"
no_output x.h5

# Without --out the run file would be named after the config: none appears.
run_status 2 a5.err "$MORPHOGEN" train unknown.ini
expect_one_line a5.err "unknown.ini:3"
no_output unknown.h5

# ---- (b) target errors: exit 1, the file or spec named, no run file ----
target_error() { # NAME SPEC NEEDLE...
    local name=$1 spec=$2
    shift 2
    run_status 1 "$name.err" "$MORPHOGEN" train "${TINY[@]}" --set "target.spec=$spec" --out "$MG_WORK/x.h5"
    expect_one_line "$name.err" "$@"
    no_output x.h5
}
target_error b1 "$MG_WORK/no-such.png" "$MG_WORK/no-such.png" "no such file"
echo "this is text" > text.png
target_error b2 "$MG_WORK/text.png" "$MG_WORK/text.png" "not a PNG"
"$MORPHOGEN" target 'emoji:U+1F98E' --out "$MG_WORK/whole.png" >/dev/null 2>target.err \
    || fail "morphogen target: $(cat target.err)"
head -c 300 whole.png > truncated.png
target_error b3 "$MG_WORK/truncated.png" "$MG_WORK/truncated.png" "truncated"
target_error b4 "emoji:U+0378" "U+0378" "glyph"
# A bad second target is reported as well.
target_error b5 "emoji:U+1F98E,$MG_WORK/text.png" "$MG_WORK/text.png"

# ---- (c) broken run files for train --resume, grow and grad ----
"$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/good.h5" 2>good.err || fail "train good: $(cat good.err)"
echo "not hdf5" > text.h5
"$MG_PYTHON" - <<'PY'
import shutil
import h5py
import numpy as np
with h5py.File("foreign.h5", "w") as f:
    f["data"] = np.arange(4)
shutil.copy("good.h5", "v99.h5")
with h5py.File("v99.h5", "a") as f:
    f.attrs["layout_version"] = np.int32(99)
shutil.copy("good.h5", "nopool.h5")
with h5py.File("nopool.h5", "a") as f:
    del f["checkpoint/pool/states"]
with h5py.File("states.h5", "w") as f:
    f["states"] = np.zeros((2, 20, 20, 8), np.float32)
PY

bad_run_file() { # FILE NEEDLE
    local file=$1 needle=$2 sum="" name
    name=$(basename "$file" .h5)
    [ -e "$file" ] && sum=$(md5sum < "$file")
    run_status 1 "c_resume_$name.err" "$MORPHOGEN" train --resume "$file"
    expect_one_line "c_resume_$name.err" "$file" "$needle"
    if [ -n "$sum" ]; then
        [ "$(md5sum < "$file")" = "$sum" ] || fail "train --resume changed the bad file $file"
    else
        [ ! -e "$file" ] || fail "train --resume created $file"
    fi
    [ ! -e "$file.tmp" ] || fail "$file.tmp left behind"
    run_status 1 "c_grow_$name.err" "$MORPHOGEN" grow "$file" --steps 3 --out "$MG_WORK/grown.h5"
    expect_one_line "c_grow_$name.err" "$file" "$needle"
    no_output grown.h5 grown_strip.png
    run_status 1 "c_grad_$name.err" "$MORPHOGEN" grad "$file" --states "$MG_WORK/states.h5" --steps 2 \
        --out "$MG_WORK/grad.h5"
    expect_one_line "c_grad_$name.err" "$file" "$needle"
    no_output grad.h5
}
bad_run_file "$MG_WORK/missing.h5" "no such file"
bad_run_file "$MG_WORK/text.h5" "not an HDF5 file"
bad_run_file "$MG_WORK/foreign.h5" "not a morphogen run file"
bad_run_file "$MG_WORK/v99.h5" "layout version 99"
bad_run_file "$MG_WORK/nopool.h5" "/checkpoint/pool/states"

# grad's own input: a missing states file, a wrong shape, no /states.
"$MG_PYTHON" - <<'PY'
import h5py
import numpy as np
with h5py.File("smallstates.h5", "w") as f:
    f["states"] = np.zeros((2, 10, 10, 8), np.float32)
with h5py.File("nostates.h5", "w") as f:
    f["other"] = np.zeros(3, np.float32)
PY
for s in missing-states smallstates nostates; do
    run_status 1 "c_states_$s.err" "$MORPHOGEN" grad "$MG_WORK/good.h5" --states "$MG_WORK/$s.h5" --steps 2 \
        --out "$MG_WORK/grad.h5"
    expect_one_line "c_states_$s.err" "$MG_WORK/$s.h5"
    no_output grad.h5
done

# ---- (d) the loss turns NaN at iteration 7: exit 3, checkpoint 5 kept ----
run_status 3 nan.err env MORPHOGEN_TEST_NAN_AT=7 "$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/nan.h5"
expect_error_line nan.err "nan.h5" "NaN" "iteration 7" "iteration 5"
[ ! -e nan.h5.tmp ] || fail "nan.h5.tmp left behind"
"$MG_PYTHON" - <<'PY' || fail "nan.h5 does not hold the finite checkpoint of iteration 5"
import sys
import h5py
import numpy as np
with h5py.File("nan.h5", "r") as f:
    ok = int(f["checkpoint"].attrs["iteration"]) == 5
    ok = ok and all(np.all(np.isfinite(f["checkpoint/params"][t][()])) for t in f["checkpoint/params"])
    ok = ok and np.all(np.isfinite(f["checkpoint/pool/states"][()]))
    ok = ok and f["metrics/loss"].shape[0] == 5 and np.all(np.isfinite(f["metrics/loss"][()]))
sys.exit(0 if ok else 1)
PY
# The injected NaN is not part of the model: resuming reproduces good.h5.
"$MORPHOGEN" train --resume "$MG_WORK/nan.h5" 2>nan_resume.err || fail "resume after NaN: $(cat nan_resume.err)"
h5_same good.h5 nan.h5 checkpoint metrics/iteration metrics/loss

# ---- (g) bad flags: exit 2 and one line, for every subcommand ----
bad_flags() { # NAME NEEDLE -- ARGS...
    local name=$1 needle=$2
    shift 3
    run_status 2 "g_$name.err" "$MORPHOGEN" "$@"
    expect_one_line "g_$name.err" "$needle"
}
bad_flags train_unknown "--bogus" -- train --bogus
bad_flags train_missing "--out" -- train "${TINY[@]}" --out
bad_flags train_extra "two.ini" -- train one.ini two.ini
bad_flags train_set_missing "--set" -- train --set
bad_flags grow_unknown "--bogus" -- grow "$MG_WORK/good.h5" --bogus
bad_flags grow_missing "--steps" -- grow "$MG_WORK/good.h5" --steps
bad_flags grow_extra "extra" -- grow "$MG_WORK/good.h5" extra
bad_flags grow_badsteps "--steps" -- grow "$MG_WORK/good.h5" --steps ten
bad_flags grow_norun "RUN.h5" -- grow
bad_flags grad_unknown "--bogus" -- grad "$MG_WORK/good.h5" --bogus
bad_flags grad_missing "--states" -- grad "$MG_WORK/good.h5" --states
bad_flags grad_extra "extra" -- grad "$MG_WORK/good.h5" extra --states "$MG_WORK/states.h5" --steps 2 --out "$MG_WORK/grad.h5"
bad_flags grad_nosteps "--steps" -- grad "$MG_WORK/good.h5" --states "$MG_WORK/states.h5" --out "$MG_WORK/grad.h5"
bad_flags grad_shape_key "model.hidden" -- grad "$MG_WORK/good.h5" --states "$MG_WORK/states.h5" --steps 2 \
    --out "$MG_WORK/grad.h5" --set model.hidden=16
# run.* may change, but tensor cores need the cuda backend (good.h5 is a cpu run).
bad_flags grad_tf32_cpu "run.matmul: 'tf32' needs run.backend = cuda" -- grad "$MG_WORK/good.h5" \
    --states "$MG_WORK/states.h5" --steps 2 --out "$MG_WORK/grad.h5" --set run.matmul=tf32
bad_flags target_unknown "--bogus" -- target 'emoji:U+1F98E' --out "$MG_WORK/t.png" --bogus
bad_flags target_missing "--out" -- target 'emoji:U+1F98E' --out
bad_flags target_extra "second" -- target first second --out "$MG_WORK/t.png"
bad_flags command "frobnicate" -- frobnicate
no_output grad.h5 t.png
run_status 2 g_nothing.err "$MORPHOGEN"

echo "ok"
