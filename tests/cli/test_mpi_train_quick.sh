#!/usr/bin/env bash
# A short 2-rank training run equals the 1-rank run bit for bit, including a
# resume on 2 ranks. Small enough for the sanitizer pass, which so covers
# the communicator and the parallel checkpoint paths (test_mpi_train.sh is
# the thorough version).
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"

MPIRUN=(mpirun --oversubscribe --allow-run-as-root --bind-to none -x ASAN_OPTIONS -x LSAN_OPTIONS -x UBSAN_OPTIONS)
CFG=("${TINY[@]}" --set train.iterations=6 --set run.checkpoint_every=3 --set run.verify_every=2)
STATE=(/checkpoint/params /checkpoint/adam_m /checkpoint/adam_v /checkpoint/pool /metrics/loss /metrics/grad_norm)

"$MORPHOGEN" train "${CFG[@]}" --out one.h5 2>/dev/null
"${MPIRUN[@]}" -np 2 "$MORPHOGEN" train "${CFG[@]}" --set train.iterations=3 --out two.h5 2>two.err ||
    fail "2 ranks: $(cat two.err)"
"${MPIRUN[@]}" -np 2 "$MORPHOGEN" train --resume two.h5 --set train.iterations=6 2>>two.err ||
    fail "2 ranks, resumed: $(cat two.err)"
h5_same one.h5 two.h5 "${STATE[@]}"
echo "2-rank quick run: ok"
