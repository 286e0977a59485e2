#!/usr/bin/env bash
# The replica check (every run.verify_every iterations, and before every
# checkpoint, the ranks' weights must be bit-identical) with real mpirun and
# 2 ranks. A divergence is
# injected with MORPHOGEN_TEST_DIVERGE=RANK:ITERATION, which flips one bit
# of one weight on that rank at the first check at or after ITERATION (on
# the host copy the check hashes; see src/train.c). Small enough for the
# sanitizer pass.
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"

MPIRUN=(timeout 60 mpirun --oversubscribe --allow-run-as-root --bind-to none -x ASAN_OPTIONS -x LSAN_OPTIONS
        -x UBSAN_OPTIONS)
# Checkpoints at 0, 4 and 8; checks after iterations 3 and 6 (verify_every)
# and 4 and 8 (before the checkpoints).
CFG=("${TINY[@]}" --set train.iterations=8 --set run.checkpoint_every=4 --set run.verify_every=3)
STATE=(/checkpoint/params /checkpoint/adam_m /checkpoint/adam_v /checkpoint/pool /metrics/loss /metrics/grad_norm)
unset MORPHOGEN_TEST_DIVERGE

checkpoint_iteration() {
    h5_eval "$1" "int(f['checkpoint'].attrs['iteration'])"
}

# diverged ERRFILE RUNFILE ITERATION CHECKPOINT: the run stopped with exit 1
# (checked by the caller) and exactly one line, rank 0's, saying the replicas
# diverged, naming the run file, the iteration checked and the checkpoint kept.
diverged() {
    local errfile=$1 run=$2 it=$3 kept=$4
    [ "$(grep -c "replicas diverged" "$errfile")" -eq 1 ] ||
        fail "expected exactly one 'replicas diverged' line: $(cat "$errfile")"
    grep -qF "morphogen: $run: the ranks' weights differ after iteration $it (replicas diverged" "$errfile" ||
        fail "no divergence message for $run at iteration $it: $(cat "$errfile")"
    grep -qF "the run file keeps the last checkpoint (iteration $kept)" "$errfile" ||
        fail "the message does not name checkpoint $kept: $(cat "$errfile")"
    [ "$(checkpoint_iteration "$run")" -eq "$kept" ] ||
        fail "$run holds iteration $(checkpoint_iteration "$run"), expected $kept"
}

# The reference: one plain process (2 ranks give the same bits, tested in
# test_mpi_train*.sh; a second mpirun here would double the test's time).
run_status 0 clean.err "$MORPHOGEN" train "${CFG[@]}" --out clean.h5

# Rank 1 diverges at iteration 6, a multiple of verify_every: the check after
# iteration 6 stops every rank (exit 1, one line), after the checks after
# iterations 3 and 4 passed; the run file keeps
# iteration 4, intact: resuming from it without the fault passes the check
# after 6 and ends bitwise where the reference ended.
run_status 1 rank1.err "${MPIRUN[@]}" -np 2 -x MORPHOGEN_TEST_DIVERGE=1:6 "$MORPHOGEN" train "${CFG[@]}" \
    --out rank1.h5
diverged rank1.err rank1.h5 6 4
run_status 0 resume.err "${MPIRUN[@]}" -np 2 "$MORPHOGEN" train --resume rank1.h5
h5_same clean.h5 rank1.h5 "${STATE[@]}"

# Rank 0 diverges at iteration 5, not a multiple of verify_every: caught at
# the next check, after iteration 6.
run_status 1 rank0.err "${MPIRUN[@]}" -np 2 -x MORPHOGEN_TEST_DIVERGE=0:5 "$MORPHOGEN" train "${CFG[@]}" \
    --out rank0.h5
diverged rank0.err rank0.h5 6 4

# A divergence after the last multiple of verify_every (7 of 8) is caught by
# the check before the final checkpoint, which is then not written: no run
# file ever holds weights the ranks disagreed on.
run_status 1 late.err "${MPIRUN[@]}" -np 2 -x MORPHOGEN_TEST_DIVERGE=1:7 "$MORPHOGEN" train "${CFG[@]}" \
    --out late.h5
diverged late.err late.h5 8 4

# The hook's value is parsed strictly, in one line, before any file is
# written (a plain process is a job of one rank: RANK must be 0).
for bad in 1:6 0:0 0:6x 0: :6 +0:6 " 0:6" 0:-6 x 0:99999999999999999999; do
    rm -f bad.h5
    run_status 2 bad.err env MORPHOGEN_TEST_DIVERGE="$bad" "$MORPHOGEN" train "${CFG[@]}" --out bad.h5
    expect_one_line bad.err "MORPHOGEN_TEST_DIVERGE=$bad: must be RANK:ITERATION with RANK 0..0"
    [ ! -e bad.h5 ] || fail "MORPHOGEN_TEST_DIVERGE='$bad': bad.h5 was written"
done
# ... as are the other hooks' (src/cli/test_hooks.c reads all three).
for bad in 1:6 0:0 x 0:6x; do
    run_status 2 bad.err env MORPHOGEN_TEST_FAIL="$bad" "$MORPHOGEN" train "${CFG[@]}" --out bad.h5
    expect_one_line bad.err "MORPHOGEN_TEST_FAIL=$bad: must be RANK:ITERATION with RANK 0..0"
done
for bad in 0 7x -7 " 7"; do
    run_status 2 bad.err env MORPHOGEN_TEST_NAN_AT="$bad" "$MORPHOGEN" train "${CFG[@]}" --out bad.h5
    expect_one_line bad.err "MORPHOGEN_TEST_NAN_AT=$bad: must be an ITERATION >= 1"
    [ ! -e bad.h5 ] || fail "MORPHOGEN_TEST_NAN_AT='$bad': bad.h5 was written"
done
echo "replica check: ok"
