#!/usr/bin/env bash
# CPU speed benchmark (not a test): morphogen against the same training
# recipe in eager PyTorch (analysis/bench_torch.py, float32), side by side.
# Both start from the same run file (same weights, Adam state and grown pool)
# and train the same iterations: the same pool samples for the same number of
# steps (both use morphogen's batch and rollout-length draws), so their
# seconds per iteration compare directly. morphogen skips cells that neither
# fire nor live, so its speed depends on how grown the pool's organisms are:
# benchmark from a run that has trained a while (e.g. configs/lizard.ini).
#
# Usage: bash jobs/bench_cpu.sh RUN.h5 [ITERS] [REPEATS] [THREADS...]
#   ITERS    iterations per run, >= 2 (default 5); the first is not timed
#   REPEATS  rounds per thread count (default 3); morphogen and torch
#            alternate, so a change in machine load hits both
#   THREADS  thread counts (default: 1 2)
# Env: MORPHOGEN (default ./build/morphogen, built if missing), MG_PYTHON
# (default /usr/bin/python3, needs h5py, numpy and torch), MG_BENCH_POOL:
# "as-is" (default) or "all-alive", which sets alpha = 1 in every cell of
# every pool sample before the runs: the worst case for morphogen, whose
# work scales with the living cells while PyTorch's does not.
# The description line reports the pool's alive fraction (cells whose 3x3
# neighbourhood has alpha > model.alive_threshold, averaged over the pool) next to the
# target's, so a reader can tell how grown the organisms were.
#
# Timing excludes I/O on both sides: for morphogen, the difference of
# /metrics/wall_time between the last and the first new row (so iterations
# 2..ITERS; the run-file writes at start and end fall outside); for torch,
# bench_torch.py times iterations 2..ITERS after one warm-up iteration.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash jobs/bench_cpu.sh RUN.h5 [ITERS] [REPEATS] [THREADS...]"
run=${1:?$usage}
iters=${2:-5}
repeats=${3:-3}
shift $(($# < 3 ? $# : 3))
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(1 2)
morphogen=${MORPHOGEN:-./build/morphogen}
python=${MG_PYTHON:-/usr/bin/python3}

[ -f "$run" ] || { echo "$run: no such file" >&2; exit 1; }
[[ $iters =~ ^[0-9]+$ ]] && [ "$iters" -ge 2 ] || { echo "ITERS $iters: must be an integer >= 2" >&2; exit 2; }
[[ $repeats =~ ^[0-9]+$ ]] && [ "$repeats" -ge 1 ] || { echo "REPEATS $repeats: must be an integer >= 1" >&2; exit 2; }
for t in "${threads[@]}"; do
  [[ $t =~ ^[0-9]+$ ]] && [ "$t" -ge 1 ] || { echo "THREADS $t: must be an integer >= 1" >&2; exit 2; }
done
pool_mode=${MG_BENCH_POOL:-as-is}
case $pool_mode in
  as-is | all-alive) ;;
  *) echo "MG_BENCH_POOL=$pool_mode: must be as-is or all-alive" >&2; exit 2 ;;
esac
if [ ! -x "$morphogen" ]; then
  cmake -S . -B build >/dev/null && cmake --build build -j2 >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Snapshot once: the source may be rewritten by a training still running.
cp "$run" "$tmp/start.h5"

# One-line description of the run, and the iteration it is at.
read -r done_iter desc alive_desc < <("$python" - "$tmp/start.h5" "$pool_mode" <<'EOF'
import sys
import h5py
import numpy as np

def alive_fraction(alpha, threshold):
    """Mean fraction of cells whose 3x3 neighbourhood has alpha > threshold."""
    p = np.pad(alpha, [(0, 0)] * (alpha.ndim - 2) + [(1, 1), (1, 1)], constant_values=-np.inf)
    h, w = alpha.shape[-2:]
    m = np.max([p[..., dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
    return float((m > threshold).mean())

f = h5py.File(sys.argv[1], "r+")
c = f["config"].attrs
thr = float(c["model.alive_threshold"])
states = f["checkpoint/pool/states"]
if sys.argv[2] == "all-alive":
    for i in range(states.shape[0]):
        one = states[i]
        one[..., 3] = 1.0
        states[i] = one
s = states.shape
pool_alive = np.mean([alive_fraction(states[i, :, :, 3], thr) for i in range(0, s[0], max(1, s[0] // 64))])
target_alive = alive_fraction(f["targets"][:, :, :, 3], thr)
print(int(f["checkpoint"].attrs["iteration"]),
      "%dx%d,C=%d,H=%d,B=%d,steps=%d..%d,fire=%g" % (s[1], s[2], c["model.channels"], c["model.hidden"],
                                                    c["train.batch"], c["train.steps_min"],
                                                    c["train.steps_max"], c["model.fire_rate"]),
      "pool %s, alive fraction %.2f (target %.2f)" % (sys.argv[2], pool_alive, target_alive))
EOF
)

# Seconds per iteration and cell-steps per second of morphogen's new rows,
# from the run file (wall_time differences: no run-file I/O inside).
morphogen_speed() {
  "$python" - "$1" "$done_iter" <<'EOF'
import sys
import h5py
import numpy as np
sys.path.insert(0, "analysis")
from bench_torch import Recipe  # the same rollout-length draw as morphogen
from mgfiles import run_config
path, first = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r") as f:
    it = f["metrics/iteration"][:]
    wall = f["metrics/wall_time"][:]
    rec = Recipe(run_config(f), path)
    _, h, w, _ = f["checkpoint/pool/states"].shape
new = np.nonzero(it > first)[0]
elapsed = wall[new[-1]] - wall[new[0]]
steps = sum(rec.rollout_steps(int(i)) for i in it[new[1:]])
print("%.6f %.6g" % (elapsed / (len(new) - 1), rec.batch * h * w * steps / elapsed))
EOF
}

median() { tr ' ' '\n' | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
minmax() { tr ' ' '\n' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.2f..%.2f", lo, hi}'; }

echo "run $run at iteration $done_iter: $desc; $alive_desc; $iters iterations per run (first untimed), $repeats round(s)"
rows=()
for t in "${threads[@]}"; do
  ms=() ts=() ratios=() mc=() tc=() mr=() tr=()
  for ((r = 1; r <= repeats; r++)); do
    cp "$tmp/start.h5" "$tmp/m.h5"
    # Write the copy out now: otherwise the kernel flushes its dirty pages
    # (up to a GB for the flower pool) while morphogen runs, taking CPU from
    # it, most visibly when it uses every core.
    sync "$tmp/m.h5"
    if ! OMP_NUM_THREADS=$t "$morphogen" train --resume "$tmp/m.h5" --set train.iterations=$((done_iter + iters)) \
        --set run.threads="$t" --set run.checkpoint_every=1000000000 --set run.log_every=1000000000 \
        2>"$tmp/m.log"; then
      echo "morphogen failed (threads $t, round $r):" >&2
      tail -3 "$tmp/m.log" >&2
      exit 1
    fi
    read -r m_s m_c < <(morphogen_speed "$tmp/m.h5")
    m_rss=$(grep "morphogen: done" "$tmp/m.log" | sed -E 's/.*peak memory ([0-9.]+) MiB.*/\1/')
    line=$(OMP_NUM_THREADS=$t "$python" analysis/bench_torch.py "$tmp/start.h5" --iterations $((iters - 1)) \
           --warmup 1 --threads "$t" | grep '^torch: ')
    t_s=$(sed -E 's/.*s_per_iter=([^ ]+).*/\1/' <<<"$line")
    t_c=$(sed -E 's/.*cell_steps_per_s=([^ ]+).*/\1/' <<<"$line")
    t_rss=$(sed -E 's/.*peak_rss_mib=([^ ]+).*/\1/' <<<"$line")
    ratio=$(awk -v a="$t_s" -v b="$m_s" 'BEGIN {printf "%.4f", a / b}')
    printf '  threads %d round %d: morphogen %.3f s/iter (%.3g cell-steps/s, %s MiB)  torch %.3f s/iter (%.3g cell-steps/s, %s MiB)  torch/morphogen %.2f\n' \
      "$t" "$r" "$m_s" "$m_c" "$m_rss" "$t_s" "$t_c" "$t_rss" "$ratio"
    ms+=("$m_s") ts+=("$t_s") ratios+=("$ratio") mc+=("$m_c") tc+=("$t_c") mr+=("$m_rss") tr+=("$t_rss")
  done
  rows+=("$(printf '%-44s %7d %12.3f %12.3f %8.2f %12s %11.3g %11.3g %8.0f %8.0f' "$desc" "$t" \
    "$(median <<<"${ms[*]}")" "$(median <<<"${ts[*]}")" "$(median <<<"${ratios[*]}")" "($(minmax <<<"${ratios[*]}"))" \
    "$(median <<<"${mc[*]}")" "$(median <<<"${tc[*]}")" "$(median <<<"${mr[*]}")" "$(median <<<"${tr[*]}")")")
done
echo
printf '%-44s %7s %12s %12s %8s %12s %11s %11s %8s %8s\n' "config" "threads" "morph s/it" "torch s/it" \
  "ratio" "(min..max)" "morph c-s/s" "torch c-s/s" "morph MB" "torch MB"
printf '%s\n' "${rows[@]}"
echo "(medians over rounds; ratio = torch s/iter / morphogen s/iter per round; c-s/s = cell-steps per second;"
echo " MB = peak resident MiB, including the pool)"
