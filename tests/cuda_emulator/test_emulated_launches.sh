#!/usr/bin/env bash
# Kernel launches per training iteration, counted by the CUDA emulator (an
# EMULATION on the CPU; the count is the same on a GPU, where at the Distill
# config a launch costs about as much as its work): every iteration of S
# steps with checkpoint_steps = k launches exactly
#   forward       3 S + 1   compaction, MLP and k_finish per step (which
#                           selects the next step), one selection first
#   loss + grads  2         the loss, the partial slices' reduction
#   backward      3 S       compaction of the tape, MLP, k_grad_input
#   recompute     per segment of k steps, 3 (k - 1) + 1 (its forward
#                 steps but the last, and its own selection)
#   training ops  9         gather (pool states, targets) and their losses,
#                           reseed + damage, tree sum, 2 for the norms,
#                           Adam, scatter back to the pool
# with CUDA graphs (whose replays the emulator counts per kernel) and
# without. A change that adds a launch per step fails here: update the
# count, and kernels/README.md, knowingly.
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"

S=20
RUN=(--set target.size=8 --set target.padding=2 --set train.pool_size=16 --set train.batch=8
     --set train.steps_min=$S --set train.steps_max=$S --set model.hidden=8 --set model.channels=4
     --set run.checkpoint_every=1 --set run.backend=cuda --set train.damage=1 --set train.replace_worst=1)

# launches K ITERATIONS [ENV...]: the emulator's launch count of a training run.
launches() {
    local k=$1 it=$2
    shift 2
    rm -f run.h5
    env "$@" "$MORPHOGEN" train "${RUN[@]}" --set train.checkpoint_steps="$k" --set train.iterations="$it" \
        --out run.h5 >run.out 2>run.err || fail "checkpoint_steps=$k, $it iterations: $(cat run.err)"
    grep -ohE '[0-9]+ kernel launches' run.out run.err | head -n 1 | cut -d' ' -f1
}

for k in 0 5 7; do
    recompute=0
    if [ "$k" -gt 0 ]; then
        for ((first = 0; first < S; first += k)); do
            end=$((first + k < S ? first + k : S))
            recompute=$((recompute + 3 * (end - first - 1) + 1))
        done
    fi
    want=$((3 * S + 1 + 2 + 3 * S + recompute + 9))
    for graphs in 1 0; do
        one=$(launches "$k" 1 MORPHOGEN_CUDA_GRAPHS=$graphs)
        two=$(launches "$k" 2 MORPHOGEN_CUDA_GRAPHS=$graphs)
        [ -n "$one" ] && [ -n "$two" ] || fail "no launch count in the emulator's output: $(cat run.out run.err)"
        [ $((two - one)) -eq "$want" ] && [ "$one" -eq "$want" ] ||
            fail "checkpoint_steps=$k, graphs $graphs: $one launches for 1 iteration, $two for 2; want $want each"
    done
done
echo "kernel launches per iteration of $S steps: as counted"
