#!/usr/bin/env bash
# Memory benchmark (not a test): peak resident memory of training at the
# Distill config (batch 8, 72x72, 16 channels, 64..96 steps, pool 1024),
# storing every state (default) and with BPTT checkpointing every 8 steps,
# side by side. The organisms must have grown for the tape to be realistic,
# so this resumes from a run file that has trained a while (argument 1, e.g.
# the lizard run from configs/lizard.ini) and trains ITERS more iterations.
# Usage: bash jobs/bench_memory.sh RUN.h5 [ITERS]
set -euo pipefail
cd "$(dirname "$0")/.."
source jobs/bench_lib.sh
run=${1:?usage: bench_memory.sh RUN.h5 [ITERS]}
iters=${2:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
done_iter=$(checkpoint_iteration "$run")
printf '%-22s %12s %12s %10s %12s %14s\n' "mode" "peak RSS MiB" "pool MiB" "tape MiB" "s/iteration" "final loss"
for k in 0 8; do
  cp "$run" "$tmp/run.h5"
  line=$(./build/morphogen train --resume "$tmp/run.h5" --set train.iterations=$((done_iter + iters)) \
         --set run.checkpoint_every=1000000 --set train.checkpoint_steps=$k 2>&1 | grep "morphogen: done")
  parse_done "$line"
  printf '%-22s %12s %12s %10s %12s %14s\n' "checkpoint_steps=$k" "$done_rss_mib" "$done_pool_mib" "$done_tape_mib" \
    "$done_s_per_iter" "$done_loss"
done
