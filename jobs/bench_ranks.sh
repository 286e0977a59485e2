#!/usr/bin/env bash
# Multi-rank benchmark (not a test): for 1, 2 and 4 ranks on this machine,
# the time per training iteration, the share of it spent in collectives
# (which includes waiting for the slowest rank), and the bytes each rank
# receives per iteration. Threads per rank = cores / ranks (at least 1), so
# every run uses the same cores. The config is Distill's model and recipe on
# a reduced grid so the sweep takes a few minutes on 2 cores.
# Usage: bash jobs/bench_ranks.sh [ITERATIONS] [extra --set flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-20}
shift || true
cores=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cfg=(--set target.size=24 --set target.padding=6 --set train.pool_size=256 --set train.iterations="$iters"
     --set train.steps_min=48 --set train.steps_max=64 --set run.checkpoint_every=1000000 "$@")
printf '%-6s %-8s %14s %16s %22s\n' ranks threads "s/iteration" "communication" "KiB received/iter"
for n in 1 2 4; do
    threads=$(( cores / n )); (( threads >= 1 )) || threads=1
    line=$(mpirun --oversubscribe --bind-to none -np "$n" ./build/morphogen train configs/quickstart.ini \
           "${cfg[@]}" --set run.threads=$threads --out "$tmp/bench$n.h5" 2>&1 | grep "morphogen: done")
    per_iter=$(sed -E 's/.* ([0-9.]+) s per iteration.*/\1/' <<<"$line")
    comm=$(sed -E 's/.*communication ([0-9.]+%).*/\1/' <<<"$line")
    kib=$(sed -E 's/.*\(([0-9.]+) KiB received per iteration\).*/\1/' <<<"$line")
    printf '%-6s %-8s %14s %16s %22s\n' "$n" "$threads" "$per_iter" "$comm" "$kib"
done
