#!/usr/bin/env bash
# Multi-rank benchmark (not a test): for 1, 2 and 4 ranks on this machine,
# the time per training iteration, the share of it spent in collectives
# (which includes waiting for the slowest rank), and the bytes each rank
# receives per iteration. Every run resumes from a copy of the same run file
# (its pool should have grown, so compute is representative) and trains
# ITERATIONS more. Threads per rank = cores / ranks (at least 1), so every
# run uses the same cores.
# Usage: bash jobs/bench_ranks.sh RUN.h5 [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
source jobs/bench_lib.sh
run=${1:?usage: bench_ranks.sh RUN.h5 [ITERATIONS]}
iters=${2:-10}
cores=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
done_iter=$(checkpoint_iteration "$run")
printf '%-6s %-8s %14s %16s %20s %14s\n' ranks threads "s/iteration" "communication" "KiB received/iter" "final loss"
for n in 1 2 4; do
    threads=$(( cores / n )); (( threads >= 1 )) || threads=1
    cp "$run" "$tmp/run.h5"
    line=$(mpirun --oversubscribe --bind-to none -np "$n" ./build/morphogen train --resume "$tmp/run.h5" \
           --set train.iterations=$((done_iter + iters)) --set run.threads=$threads \
           --set run.checkpoint_every=1000000000 2>&1 | grep "morphogen: done")
    parse_done "$line"
    printf '%-6s %-8s %14s %16s %20s %14s\n' "$n" "$threads" "$done_s_per_iter" "$done_comm_share" \
        "$done_kib_per_iter" "$done_loss"
done
