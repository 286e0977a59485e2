#!/usr/bin/env bash
# Data-parallel training with real mpirun (Open MPI): results do not depend
# on the number of ranks, runs resume on a different rank count, signals
# stop every rank at the same iteration, and one rank's failure ends the
# whole job quickly with a message naming that rank.
# mg-test: slow
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"

MPIRUN=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
CFG=("${TINY[@]}" --set train.iterations=20 --set run.checkpoint_every=10 --set run.verify_every=1)
STATE=(/checkpoint/params /checkpoint/adam_m /checkpoint/adam_v /checkpoint/pool /metrics/loss
       /metrics/grad_norm /metrics/iteration /metrics/lr)

# 1, 2 and 4 ranks: bitwise the same weights, Adam moments, pool and metrics.
"$MORPHOGEN" train "${CFG[@]}" --out np1.h5 2>/dev/null
for n in 1 2 4; do
    "${MPIRUN[@]}" -np $n "$MORPHOGEN" train "${CFG[@]}" --out mpi$n.h5 2>mpi$n.err ||
        fail "mpirun -np $n failed: $(cat mpi$n.err)"
    h5_same np1.h5 mpi$n.h5 "${STATE[@]}"
done
# Only rank 0 reports progress; other ranks' lines carry their rank.
grep -q "^iter 20/20" mpi4.err || true
if grep -vE '^(morphogen: |morphogen \(rank [0-9]+ of 4\): |iter )' mpi4.err | grep -q .; then
    fail "unexpected output from a 4-rank run: $(cat mpi4.err)"
fi
grep -q "morphogen (rank 3 of 4): node-local rank 3 of 4" mpi4.err || fail "rank binding not logged: $(cat mpi4.err)"

# Checkpointed on 2 ranks at iteration 10, resumed on 4 (re-sharded) and on
# 1: both continue exactly as the uninterrupted run.
"${MPIRUN[@]}" -np 2 "$MORPHOGEN" train "${CFG[@]}" --set train.iterations=10 --out split.h5 2>/dev/null
cp split.h5 split1.h5
"${MPIRUN[@]}" -np 4 "$MORPHOGEN" train --resume split.h5 --set train.iterations=20 2>/dev/null
h5_same np1.h5 split.h5 "${STATE[@]}"
"$MORPHOGEN" train --resume split1.h5 --set train.iterations=20 2>/dev/null
h5_same np1.h5 split1.h5 "${STATE[@]}"

# A rank count that does not divide the batch is refused, once, clearly.
run_status 2 odd.err "${MPIRUN[@]}" -np 3 "$MORPHOGEN" train "${CFG[@]}" --out odd.h5
grep -q "train.batch (4) must be a multiple of the number of ranks (3)" odd.err || fail "$(cat odd.err)"
[ "$(grep -c "must be a multiple" odd.err)" -eq 1 ] || fail "message repeated: $(cat odd.err)"
[ ! -e odd.h5 ] || fail "odd.h5 created"
# ... also when resuming (the batch comes from the run file), and the run
# file is left as it was.
sum_before=$(md5sum split1.h5)
run_status 2 odd_resume.err "${MPIRUN[@]}" -np 3 "$MORPHOGEN" train --resume split1.h5
grep -q "split1.h5: train.batch (4) must be a multiple of the number of ranks (3)" odd_resume.err ||
    fail "$(cat odd_resume.err)"
[ "$(grep -c "must be a multiple" odd_resume.err)" -eq 1 ] || fail "message repeated: $(cat odd_resume.err)"
[ "$(md5sum split1.h5)" = "$sum_before" ] || fail "split1.h5 changed by a refused resume"

# SIGUSR1 (what Slurm's --signal sends; mpirun forwards it) and SIGTERM
# delivered to every rank (what Slurm does at a time limit) stop a 2-rank
# run after the same iteration with a checkpoint; resuming completes it
# bitwise as if never interrupted.
LONG=("${TINY[@]}" --set train.iterations=300 --set run.checkpoint_every=1000 --set run.log_every=1)
"$MORPHOGEN" train "${LONG[@]}" --out long_ref.h5 2>/dev/null
for sig in USR1 TERM; do
    rm -f sig.h5
    "${MPIRUN[@]}" -np 2 "$MORPHOGEN" train "${LONG[@]}" --out sig.h5 2>sig.err &
    pid=$!
    # The signal must find the ranks training (handlers installed): wait for
    # their first progress line (a fixed 10 s wait was once too short on a
    # loaded machine).
    wait_for_progress sig.err "$pid" 1
    if [ $sig = USR1 ]; then
        kill -USR1 $pid
    else
        pkill -TERM -P $pid -f "morphogen train" || pkill -TERM -f "morphogen train.*--out sig.h5"
    fi
    rc=0
    wait $pid || rc=$?
    [ $rc -eq 75 ] || fail "SIG$sig: mpirun exited $rc, expected 75: $(cat sig.err)"
    grep -q "continue with --resume sig.h5" sig.err || fail "SIG$sig: no resume hint: $(cat sig.err)"
    "${MPIRUN[@]}" -np 2 "$MORPHOGEN" train --resume sig.h5 2>/dev/null
    h5_same long_ref.h5 sig.h5 "${STATE[@]}"
done

# One rank fails mid-run (MORPHOGEN_TEST_FAIL=RANK:ITERATION): the whole job
# ends within seconds, naming the rank and the cause; the run file keeps its
# last complete checkpoint.
start=$(date +%s)
rc=0
MORPHOGEN_TEST_FAIL=1:13 timeout 60 "${MPIRUN[@]}" -np 2 -x MORPHOGEN_TEST_FAIL "$MORPHOGEN" train "${CFG[@]}" \
    --out failed.h5 2>failed.err || rc=$?
elapsed=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "failing rank: exit $rc (124 = hung): $(cat failed.err)"
[ $elapsed -lt 30 ] || fail "the job took ${elapsed}s to end after one rank failed"
grep -q "morphogen (rank 1 of 2): simulated failure at iteration 13" failed.err || fail "$(cat failed.err)"
"$MG_PYTHON" -c "
import h5py, sys
with h5py.File('failed.h5', 'r') as f:
    it = int(f['checkpoint'].attrs['iteration'])
    sys.exit(0 if it == 10 else 'checkpoint iteration %d, expected 10' % it)"

# A failure only one rank sees at start-up (here: its node lacks the emoji
# font) ends every rank with that rank's message and no run file.
rc=0
timeout 60 "${MPIRUN[@]}" -np 1 "$MORPHOGEN" train "${CFG[@]}" --out font.h5 : \
    -np 1 -x MORPHOGEN_EMOJI_FONT=/nonexistent/font.ttf "$MORPHOGEN" train "${CFG[@]}" --out font.h5 \
    2>font.err || rc=$?
[ $rc -eq 1 ] || fail "one rank without a font: exit $rc, expected 1: $(cat font.err)"
grep -q "morphogen (rank 1 of 2): /nonexistent/font.ttf: emoji font not found" font.err || fail "$(cat font.err)"
[ ! -e font.h5 ] || fail "font.h5 was created"
echo "mpi training: ok"
