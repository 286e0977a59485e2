#!/usr/bin/env bash
# The device check: ONE command for a machine with an NVIDIA GPU. It
#   1. configures and builds morphogen with the CUDA backend (sm_90), or uses
#      a prebuilt bundle (jobs/device_bundle.sh) when the build cannot run here;
#   2. runs the GPU tests (test_cuda_parity: CPU/GPU parity of rollouts and
#      gradients, determinism, fire masks; test_cuda_train: the training
#      operations on the device against the CPU's; test_cuda_nccl: a real
#      NCCL communicator of one rank and its in-place all-gather, through
#      morphogen's loader) and the cuda command-line
#      test, then compute-sanitizer's memcheck, racecheck, synccheck and
#      initcheck over small cases of them (at most 60 s); then the same
#      short cuda training on 1 rank and on 2 ranks sharing the GPU (through
#      mpirun, the bundle's own when there is one), whose run files must be
#      bitwise equal;
#   3. benchmarks one training iteration at the Distill config (batch 8,
#      72x72, C=16, H=128, 64..96 steps): morphogen's cuda backend (fp32, and
#      run.matmul = tf32 on tensor cores) against the same recipe in PyTorch
#      (analysis/bench_torch.py --device cuda) eager, with CUDA graphs and
#      with torch.compile, interleaved, from the same grown run file, and
#      checks once that the CUDA-graph iterations equal the eager ones
#      (bench_torch.py --check-graphs);
#   4. measures forward+backward cell-steps/s at a large config (256x256,
#      C=32, H=128, batch 8, every cell alive), fp32 and, time allowing, tf32;
#   5. profiles one Distill iteration's kernels with Nsight Compute (ncu),
#      when it is there, summed per kernel (analysis/kernel_times.py);
# and prints a short table (also written to $OUT/device_check.md when $OUT is
# set). Each stage has a time limit; the whole check stays under 5 minutes.
# Whatever cannot run (no torch, no h5py, no torch.compile, no CUDA graphs, a
# failed build) is skipped and named in the table.
#
# Usage: bash jobs/device_check.sh
# Env: MG_DEVICE_BUNDLE=DIR  use DIR/morphogen, DIR/test_cuda_*, DIR/lib and
#                            DIR/mpirun (from jobs/device_bundle.sh) instead
#                            of building
#      MG_PYTHON             Python with torch (default python3)
#      MORPHOGEN_NCCL        the NCCL library for test_cuda_nccl (default:
#                            PyTorch's, from the nvidia-nccl wheel, else
#                            libnccl.so.2 in the loader's cache, else none:
#                            the test skips)
#      MG_GROW_ITERS         training iterations that grow the pool (default 300)
#      MG_BENCH_ITERS        timed iterations per round (default 6)
#      MG_BENCH_WARMUP       untimed iterations before them (default 100)
#      MG_DEVICE_SANITIZER=0 leave out the compute-sanitizer stage
set -uo pipefail
# A relative bundle path is relative to where the user stands: resolve it
# before moving to the repository root.
bundle=""
if [ -n "${MG_DEVICE_BUNDLE:-}" ]; then
    bundle=$(cd "$MG_DEVICE_BUNDLE" 2>/dev/null && pwd) ||
        { echo "device_check: MG_DEVICE_BUNDLE=$MG_DEVICE_BUNDLE: no such directory" >&2; exit 1; }
fi
cd "$(dirname "$0")/.." || exit 1
root=$PWD
t0=$SECONDS
python=${MG_PYTHON:-python3}
grow_iters=${MG_GROW_ITERS:-300}
iters=${MG_BENCH_ITERS:-6}
# Untimed iterations before the timed ones, the same for morphogen and
# PyTorch (the same iterations, so the same rollout lengths, are timed on
# both sides): a training run lasts thousands of iterations, and morphogen
# captures a CUDA graph at the first use of each rollout length (33 at the
# Distill config), which 100 iterations mostly get behind them.
warm=${MG_BENCH_WARMUP:-100}
# A typo must not surface minutes later as an arithmetic error on the GPU
# machine: every count is checked first, in one line.
for v in "MG_GROW_ITERS $grow_iters 1" "MG_BENCH_ITERS $iters 1" "MG_BENCH_WARMUP $warm 0"; do
    read -r name value min <<<"$v"
    [[ $value =~ ^[0-9]{1,9}$ ]] && [ "$value" -ge "$min" ] ||
        { echo "device_check: $name=$value: must be an integer >= $min" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=()
row() { rows+=("| $1 | $2 | $3 |"); echo "device_check: $1: $2 ${3:+($3)}"; }
elapsed() { echo $((SECONDS - t0)); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1fx", a / b}'; }
# lim N: N seconds, or what is left of the 270-second budget if that is less.
lim() { local left=$((270 - SECONDS + t0)); [ "$1" -lt "$left" ] && echo "$1" || echo $((left > 1 ? left : 1)); }
# tmo N CMD...: CMD under lim N. Every command that could block (nvidia-smi,
# python importing torch, anything touching the GPU) runs through it. -k: a
# process that ignores SIGTERM (a CUDA program stuck in the driver) gets
# SIGKILL 5 s later; the 270 s budget leaves room for that within 5 minutes.
tmo() { local n=$1; shift; timeout -k 5 "$(lim "$n")" "$@"; }
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

gpu=$(tmo 15 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
[ -n "$gpu" ] || gpu="unknown (nvidia-smi gave nothing)"
echo "device_check: $(date -u +%Y-%m-%dT%H:%MZ), GPU: $gpu"

# ---- 1. build (or bundle) ----
morphogen="" gpu_tests=(test_cuda_parity test_cuda_train test_cuda_nccl) tests_dir=""
if [ -n "$bundle" ]; then
    # The bundle's libraries are given to its two programs only, through
    # wrappers: exported for the whole script, its libstdc++, libz or libpng
    # would also be loaded by python and torch, which may need newer ones.
    for prog in morphogen "${gpu_tests[@]}"; do
        printf '#!/bin/sh\nLD_LIBRARY_PATH="%s/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s/%s" "$@"\n' \
            "$bundle" "$bundle" "$prog" >"$work/$prog"
        chmod +x "$work/$prog"
    done
    if [ -x "$bundle/morphogen" ] && [ -x "$bundle/test_cuda_parity" ] && [ -x "$bundle/test_cuda_train" ] &&
        [ -x "$bundle/test_cuda_nccl" ]; then
        morphogen="$work/morphogen" tests_dir="$work"
        row build "bundle" "$bundle, built elsewhere"
    else
        row build "FAILED" "$bundle lacks morphogen or a GPU test (jobs/device_bundle.sh)"
    fi
else
    gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    if tmo 120 cmake -S . -B build-device "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DMORPHOGEN_CUDA=ON \
            -DMORPHOGEN_CUDA_ARCHITECTURES=90 >"$work/configure.log" 2>&1 &&
        tmo 150 cmake --build build-device -j"$(nproc)" >"$work/build.log" 2>&1; then
        morphogen="$root/build-device/morphogen" tests_dir="$root/build-device/tests"
        row build "ok" "CUDA, sm_90, $(elapsed) s"
    else
        tail -n 5 "$work/configure.log" "$work/build.log" 2>/dev/null
        row build "FAILED" "see the lines above; missing packages? try MG_DEVICE_BUNDLE (jobs/device_bundle.sh)"
    fi
fi

# ---- 2. GPU tests ----
# The NCCL that test_cuda_nccl loads: the GPU machine has one in PyTorch's
# nvidia-nccl wheel, which is not on the loader's path.
nccl=${MORPHOGEN_NCCL:-} nccl_from="MORPHOGEN_NCCL"
if [ -z "$nccl" ]; then
    IFS=$'\t' read -r nccl nccl_from < <(tmo 20 "$python" - 2>/dev/null <<'PY'
import os, importlib.metadata as md
import nvidia.nccl
for folder in nvidia.nccl.__path__:
    lib = os.path.join(folder, "lib", "libnccl.so.2")
    if os.path.exists(lib):
        for name in ("nvidia-nccl-cu13", "nvidia-nccl-cu12"):
            try:
                print(lib, "PyTorch's %s %s" % (name, md.version(name)), sep="\t")
                break
            except md.PackageNotFoundError:
                pass
        else:
            print(lib, "PyTorch's nvidia.nccl", sep="\t")
        break
PY
)
    if [ -z "$nccl" ]; then
        nccl=$(ldconfig -p 2>/dev/null | awk '/libnccl\.so\.2 / {print $NF; exit}') nccl_from="the loader's cache"
        # None: the test skips and says so, rather than fail on a library
        # that is not there.
        [ -n "$nccl" ] || nccl_from="none found (not in $python's nvidia.nccl, not in ldconfig -p)"
    fi
fi
if [ -n "$morphogen" ]; then
    for t in "${gpu_tests[@]}"; do
        limit=90 # the parity test's largest case is the Distill grid; the others are small
        [ "$t" != test_cuda_parity ] && limit=30
        # MG_PARITY_REPORT: every comparison's measured difference, for the
        # tf32 row below.
        rc=0
        MG_PARITY_REPORT=1 MORPHOGEN_NCCL="$nccl" tmo "$limit" "$tests_dir/$t" >"$work/$t.log" 2>&1 || rc=$?
        if [ "$rc" -eq 0 ]; then
            if grep -q SKIPPED "$work/$t.log"; then
                row "$t" "SKIPPED" "$(grep -m1 'skipped' "$work/$t.log")"
            else
                row "$t" "passed" "$(grep -m1 -oE 'PASSED.*' "$work/$t.log")"
                device_ok=1
            fi
        else
            tail -n 30 "$work/$t.log"
            note="output above"
            # The first real NCCL communicator: NCCL's own account of a
            # failure, kept, saves a device call to ask for it.
            if [ "$t" = test_cuda_nccl ] && [ -n "${OUT:-}" ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
                NCCL_DEBUG=INFO MORPHOGEN_NCCL="$nccl" tmo 30 "$tests_dir/$t" >"$work/nccl_debug.log" 2>&1
                mkdir -p "$OUT" && cp "$work/nccl_debug.log" "$OUT/" &&
                    note="output above; NCCL_DEBUG=INFO rerun in \$OUT/nccl_debug.log"
            fi
            row "$t" "FAILED" "$note"
            grep -q SKIPPED "$work/$t.log" || device_ok=1
        fi
    done
    [ -f "$work/test_cuda_nccl.log" ] && row "NCCL in test_cuda_nccl" "${nccl:-none}" "$nccl_from"
    # How far TF32 (run.matmul = tf32) lands from the fp32 CPU reference on
    # this GPU: the largest measured ratios of the parity test's tf32 cases,
    # against the tolerances the emulator's measurements set (states 5e-3,
    # losses 1e-3, gradients 1e-1; kernels/README.md).
    if grep -q '^ratio tf32 ' "$work/test_cuda_parity.log" 2>/dev/null; then
        tf32_dev=$(awk '/^ratio tf32 / {
                kind = ($0 ~ / loss /) ? "loss" : ($0 ~ / (final state|rollout final frame|rollout final state) /) ? "state" : "grad"
                if ($NF + 0 > worst[kind]) worst[kind] = $NF + 0
            } END { printf "states %.2g (tolerance 5e-3), losses %.2g (1e-3), gradients %.2g (1e-1)", worst["state"], worst["loss"], worst["grad"] }' \
            "$work/test_cuda_parity.log")
        row "tf32 vs fp32 CPU, largest measured" "$tf32_dev" "relative to each tensor's largest magnitude; emulator: 3.2e-4, 1.8e-5, 2.5e-2"
    fi
    if [ -z "$bundle" ]; then
        if tmo 60 ctest --test-dir build-device -R cli_test_cuda_backend_cli --output-on-failure \
                >"$work/cli.log" 2>&1; then
            row "cuda CLI test" "passed" ""
        else
            tail -n 20 "$work/cli.log"
            row "cuda CLI test" "FAILED" "output above"
        fi
    fi
else
    row "GPU tests" "not run" "no build"
fi

# ---- 2b. compute-sanitizer on small GPU test cases ----
# What the CPU emulator cannot see: out-of-bounds and misaligned accesses on
# the device (memcheck), shared-memory races between real warps (racecheck),
# barriers in divergent code (synccheck) and reads of device memory nothing
# wrote (initcheck). Its checkers slow kernels by orders of magnitude, so the
# parity test runs only small cases (MG_PARITY_CASES: 5x7 with pin and
# freeze, 33x31 over many tiles with checkpointing, H = 1, the 5x7 case on
# tensor cores, whose weight gradients stay in registers, and 7x9 C = 36 on
# tensor cores, whose weight gradients go through shared memory per tile),
# within 60 s in all. MG_DEVICE_SANITIZER=0 leaves this stage out.
if [ -n "$morphogen" ] && [ "${MG_DEVICE_SANITIZER:-1}" != 0 ] && [ -n "${device_ok:-}" ]; then
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/compute-sanitizer/compute-sanitizer 2>/dev/null | tail -n 1)
    if [ -z "$sanitizer" ]; then
        row "compute-sanitizer" "not run" "not on PATH"
    else
        san_end=$((SECONDS + 60))
        # san TOOL LIMIT TEST [CASES]: one checker over one GPU test.
        san() {
            local tool=$1 limit=$2 test=$3 cases=${4:-} log="$work/san-$1-$3.log" left=$((san_end - SECONDS)) summary
            [ "$left" -lt "$limit" ] && limit=$left
            if [ "$limit" -lt 5 ]; then
                row "compute-sanitizer $tool, $test" "not run" "time budget"
                return
            fi
            env ${cases:+MG_PARITY_CASES=$cases} timeout -k 5 "$(lim "$limit")" "$sanitizer" --tool "$tool" \
                --target-processes all --error-exitcode 9 "$tests_dir/$test" >"$log" 2>&1
            local rc=$?
            summary=$(grep -m1 -oE 'ERROR SUMMARY: [0-9]+ errors?' "$log")
            if [ "$rc" -eq 0 ] && [ "$summary" = "ERROR SUMMARY: 0 errors" ] && ! grep -q SKIPPED "$log"; then
                row "compute-sanitizer $tool, $test" "clean" "${cases:+cases $cases, }$summary"
            elif [ -n "$summary" ] && [ "$summary" != "ERROR SUMMARY: 0 errors" ]; then
                # The first reports, without the banner and host stack frames.
                grep '^=========' "$log" | grep -v -E 'COMPUTE-SANITIZER|Host Frame|Saved host backtrace' | head -n 12
                [ -n "${OUT:-}" ] && mkdir -p "$OUT" && cp "$log" "$OUT/"
                row "compute-sanitizer $tool, $test" "FAILED" "$summary; first reports above${OUT:+, all in \$OUT/$(basename "$log")}"
            else
                tail -n 4 "$log"
                row "compute-sanitizer $tool, $test" "could not run" "exit $rc${summary:+, $summary}; see the lines above"
            fi
        }
        san memcheck 25 test_cuda_parity 0,2,5,7,15
        san memcheck 15 test_cuda_train
        san racecheck 20 test_cuda_parity 0,2,7,15
        san synccheck 10 test_cuda_parity 0
        san initcheck 15 test_cuda_parity 0
    fi
fi

# ---- 2c. 2 ranks sharing the one GPU = 1 rank, bit for bit ----
# The multi-rank cuda path on a real GPU: both ranks take the one device,
# find that they share it (host name and PCI bus id, gathered over MPI) and
# exchange the gradients through MPI on the host, since NCCL refuses two
# ranks on one GPU; rank 0 says so, and the row records its line. A result
# must not depend on the rank count, so weights, Adam moments, pool and
# metrics must equal a 1-rank run's bit for bit (as on the emulator:
# tests/cuda_emulator/test_emulated_train.sh). A bundle brings its own
# mpirun (Open MPI and PMIx, relocated: jobs/device_bundle.sh), since the
# GPU machine has none; a build here uses the mpirun it was built against.
have_h5py=0
tmo 20 "$python" -c "import h5py, numpy" 2>/dev/null && have_h5py=1
if [ -n "$morphogen" ] && [ -n "${device_ok:-}" ]; then
    two="2 ranks on one GPU = 1 rank"
    mpirun=()
    if [ -n "$bundle" ]; then
        [ -x "$bundle/mpirun" ] && mpirun=("$bundle/mpirun") # root, oversubscription, no binding: set there
    elif command -v mpirun >/dev/null; then
        mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
    fi
    # The quickstart config for 4 iterations, a checkpoint after the second
    # (so the run file is written collectively twice): seconds on a GPU.
    ranks_run=(configs/quickstart.ini --set target.spec="$root/jobs/data/lizard_40.png" --set run.backend=cuda
               --set train.iterations=4 --set run.checkpoint_every=2 --set run.log_every=1)
    if [ "${#mpirun[@]}" -eq 0 ]; then
        row "$two" "not run" "no mpirun${bundle:+ in $bundle (made before jobs/device_bundle.sh packed one?)}"
    elif [ "$have_h5py" -eq 0 ]; then
        row "$two" "not run" "$python cannot import h5py and numpy"
    elif [ "$(elapsed)" -ge 200 ]; then
        row "$two" "not run" "time budget"
    elif ! tmo 30 "$morphogen" train "${ranks_run[@]}" --out "$work/rank1.h5" >"$work/rank1.log" 2>&1; then
        tail -n 5 "$work/rank1.log"
        row "$two" "FAILED" "the 1-rank run (above)"
    elif ! tmo 40 "${mpirun[@]}" -np 2 "$morphogen" train "${ranks_run[@]}" --out "$work/rank2.h5" \
            >"$work/rank2.log" 2>&1; then
        tail -n 12 "$work/rank2.log"
        [ -n "${OUT:-}" ] && mkdir -p "$OUT" && cp "$work/rank2.log" "$OUT/two_ranks.log"
        row "$two" "FAILED" "the 2-rank run through ${mpirun[0]} (above${OUT:+; \$OUT/two_ranks.log})"
    else
        exchange=$(grep -m1 -oE 'exchanged through MPI on the host, not NCCL: .*' "$work/rank2.log")
        if [ -n "$exchange" ]; then
            exchange="gradients $exchange"
        else
            exchange="rank 0 did not report the exchange through MPI (NCCL?)"
        fi
        # Exit 3: a difference (named on stdout); anything else: no verdict.
        verdict=$(tmo 20 "$python" - "$work/rank1.h5" "$work/rank2.h5" 2>&1 <<'PY'
import sys, h5py, numpy as np
names = ["checkpoint/params", "checkpoint/adam_m", "checkpoint/adam_v", "checkpoint/pool",
         "metrics/loss", "metrics/grad_norm"]
def datasets(f):
    out = {}
    for name in names:
        obj = f[name]
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]
        else:
            obj.visititems(lambda n, o: out.update({name + "/" + n: o[()]}) if isinstance(o, h5py.Dataset) else None)
    return out
with h5py.File(sys.argv[1], "r") as f1, h5py.File(sys.argv[2], "r") as f2:
    a, b = datasets(f1), datasets(f2)
diff = ["%s only in one" % k for k in sorted(set(a) ^ set(b))]
for k in sorted(set(a) & set(b)):
    x, y = a[k], b[k]
    if x.dtype != y.dtype or x.shape != y.shape:
        diff.append("%s %s%s vs %s%s" % (k, x.dtype, x.shape, y.dtype, y.shape))
    elif x.tobytes() != y.tobytes():
        same = x == y
        if x.dtype.kind == "f":  # NaN (a never-evaluated pool loss) in both places is no difference
            same |= np.isnan(x) & np.isnan(y)
        d = np.abs(x.astype(np.float64) - y.astype(np.float64))[~same]
        diff.append("%s (%d of %d values, max |difference| %.3g)" % (k, d.size, x.size, np.max(d)))
if diff:
    print("differ: " + "; ".join(diff))
    sys.exit(3)
print("%d datasets (params, Adam moments, pool, loss, grad norm) equal after %d iterations"
      % (len(a), len(a["metrics/loss"])))
PY
)
        rc=$?
        if [ "$rc" -eq 0 ]; then
            row "$two" "bitwise" "$verdict; $exchange"
        elif [ "$rc" -eq 3 ]; then
            [ -n "${OUT:-}" ] && mkdir -p "$OUT" && cp "$work/rank1.log" "$OUT/one_rank.log" &&
                cp "$work/rank2.log" "$OUT/two_ranks.log"
            row "$two" "DIFFERENT" "$verdict; $exchange${OUT:+; logs in \$OUT/one_rank.log, two_ranks.log}"
        else
            echo "$verdict" | tail -n 3
            row "$two" "not compared" "$python failed (above); $exchange"
        fi
    fi
fi

# ---- 3. Distill benchmark: morphogen cuda vs PyTorch, interleaved ----
have_torch=0 have_compile=0 have_graphs=0
# One torch probe: its import and CUDA start-up take seconds each time.
probe=$(tmo 40 "$python" -c "import torch; print(int(torch.cuda.is_available()), int(hasattr(torch, 'compile')), \
int(hasattr(torch.cuda, 'CUDAGraph')))" 2>/dev/null)
read -r p_cuda p_compile p_graphs <<<"$probe"
[ "${p_cuda:-0}" = 1 ] && have_torch=1
[ "$have_torch" -eq 1 ] && [ "${p_compile:-0}" = 1 ] && have_compile=1
[ "$have_torch" -eq 1 ] && [ "${p_graphs:-0}" = 1 ] && have_graphs=1
# The lizard target as a PNG (no emoji font needed), the Distill recipe.
distill=(configs/lizard.ini --set target.spec="$root/jobs/data/lizard_40.png" --set run.backend=cuda
         --set run.checkpoint_every=1000000000 --set run.log_every=100)
if [ -z "$morphogen" ]; then
    row "Distill benchmark" "not run" "no build"
elif [ "$have_h5py" -eq 0 ]; then
    row "Distill benchmark" "not run" "$python cannot import h5py and numpy"
else
    start="$work/start.h5"
    # Grow the pool first: morphogen skips dead cells, so timing a pool of
    # seeds would flatter it; torch computes every cell either way.
    if tmo 100 "$morphogen" train "${distill[@]}" --set train.iterations="$grow_iters" --out "$start" \
            >"$work/grow.log" 2>&1; then
        done_iter=$grow_iters
        occupancy=$(tmo 20 "$python" - "$start" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    a = f["checkpoint/pool/states"][:, :, :, 3]
print("%.1f%%" % (100.0 * np.mean(a > 0.1)))
PY
)
        row "grown pool" "$grow_iters iterations" "$(grep -m1 -oE 'final loss [^,]+' "$work/grow.log"), cells with alpha > 0.1: $occupancy"
        # speed FILE: seconds per iteration of morphogen's new rows (run-file
        # I/O excluded), "TIMED FIRST": TIMED over the $iters iterations after
        # the $warm warm-up ones, FIRST over the first $iters of the process
        # (their graph captures included). Each row's wall time is taken at
        # the end of its iteration, so differences of rows are iterations.
        speed() {
            tmo 20 "$python" - "$1" "$done_iter" "$warm" "$iters" <<'PY'
import sys, h5py, numpy as np
done, warm, iters = (int(a) for a in sys.argv[2:5])
with h5py.File(sys.argv[1], "r") as f:
    it = f["metrics/iteration"][:]
    wall = f["metrics/wall_time"][:]
def per_iteration(first, last):  # iterations first+1 .. last
    a, b = np.nonzero(it == first)[0][0], np.nonzero(it == last)[0][0]
    return (wall[b] - wall[a]) / (last - first)
print("%.6f %.6f" % (per_iteration(done + warm + 1, done + warm + iters + 1),
                     per_iteration(done + 1, done + iters + 1)))
PY
        }
        # m_iters NAME [ARG...]: morphogen's iterations from the grown pool in
        # a copy NAME.h5, with ARGs (--set run.matmul=tf32) added to the
        # resume; prints speed's "TIMED FIRST", or the log's tail on stderr
        # and fails.
        m_iters() {
            cp "$start" "$work/$1.h5"
            if tmo 60 "$morphogen" train --resume "$work/$1.h5" --set train.iterations=$((done_iter + warm + iters + 1)) \
                    --set run.checkpoint_every=1000000000 --set run.log_every=1000000000 "${@:2}" >"$work/$1.log" 2>&1; then
                speed "$work/$1.h5"
            else
                tail -n 3 "$work/$1.log" >&2
                return 1
            fi
        }
        m_s=() m_first=() n_s=() tf_s=() e_s=() g_s=() c_s=() g_capture=""
        for round in 1 2; do
            [ "$(elapsed)" -lt 200 ] || { echo "device_check: time budget: stopping after $((round - 1)) round(s)"; break; }
            # With CUDA graphs (captured at the first use of each rollout
            # length, mostly during the warm-up) and without.
            t_m=$(m_iters m) && m_s+=("${t_m% *}") && m_first+=("${t_m#* }")
            t_n=$(MORPHOGEN_CUDA_GRAPHS=0 m_iters n) && n_s+=("${t_n% *}")
            # The MLP's products on tensor cores (TF32 inputs, fp32
            # accumulation), with CUDA graphs, from the same grown pool.
            t_tf=$(m_iters tf --set run.matmul=tf32) && tf_s+=("${t_tf% *}")
            if [ "$have_torch" -eq 1 ]; then
                line=$(tmo 60 "$python" analysis/bench_torch.py "$start" --device cuda --dense native \
                       --iterations "$iters" --warmup $((warm + 1)) 2>"$work/t.log" | grep '^torch: ') &&
                    e_s+=("$(sed -E 's/.*s_per_iter=([^ ]+).*/\1/' <<<"$line")") || tail -n 3 "$work/t.log"
                # CUDA graphs before torch.compile: a short run (capture takes
                # seconds), not to be crowded out by compile's long first call.
                # The graphs of every rollout length the run draws are captured
                # before its first iteration, untimed; the line says how long.
                if [ "$have_graphs" -eq 1 ] && [ "$(elapsed)" -lt 180 ]; then
                    line=$(tmo 60 "$python" analysis/bench_torch.py "$start" --device cuda --dense native --cuda-graphs \
                           --iterations "$iters" --warmup $((warm + 1)) 2>"$work/cg.log" | grep '^torch: ') &&
                        g_s+=("$(sed -E 's/.*s_per_iter=([^ ]+).*/\1/' <<<"$line")") &&
                        g_capture=$(sed -E 's/.*cuda_graphs=([^ ]+) capture_s=([^ ]+).*/\1 graphs captured in \2 s, untimed/' \
                                    <<<"$line") || tail -n 3 "$work/cg.log"
                fi
                if [ "$have_compile" -eq 1 ] && [ "$(elapsed)" -lt 150 ]; then
                    line=$(tmo 100 "$python" analysis/bench_torch.py "$start" --device cuda --dense native --compile \
                           --iterations "$iters" --warmup $((warm + 1)) 2>"$work/c.log" | grep '^torch: ') &&
                        c_s+=("$(sed -E 's/.*s_per_iter=([^ ]+).*/\1/' <<<"$line")") || tail -n 3 "$work/c.log"
                fi
            fi
        done
        # Once: the CUDA-graph iterations against eager ones from the same run
        # file, with morphogen's Philox fire masks in both (2 iterations).
        g_check="" g_check_note="time budget"
        if [ "$have_graphs" -eq 1 ] && [ "$(elapsed)" -lt 190 ]; then
            if tmo 40 "$python" analysis/bench_torch.py "$start" --device cuda --dense native --check-graphs \
                    --iterations 2 >"$work/gc.log" 2>&1; then
                g_check=passed
            else
                tail -n 3 "$work/gc.log"
                g_check=FAILED
            fi
            g_check_note=$(grep -m1 -oE '[0-9]+ iterations \(steps.*' "$work/gc.log")
            [ -n "$g_check_note" ] || g_check_note="no verdict (timed out?), see the lines above"
        fi
        best() { [ $# -gt 0 ] && printf '%s\n' "$@" | sort -g | head -n 1; }
        m=$(best "${m_s[@]}") n=$(best "${n_s[@]}") tf=$(best "${tf_s[@]}")
        e=$(best "${e_s[@]}") g=$(best "${g_s[@]}") c=$(best "${c_s[@]}")
        [ -n "$m" ] && row "morphogen cuda, s/iteration" "$m" "best of ${#m_s[@]} round(s) of $iters iterations after $warm warm-up ones; the first $iters of a process, capturing CUDA graphs, $(best "${m_first[@]}") s each" ||
            row "morphogen cuda" "FAILED" "see the lines above"
        [ -n "$n" ] && row "morphogen cuda without CUDA graphs, s/iteration" "$n" "MORPHOGEN_CUDA_GRAPHS=0" ||
            row "morphogen cuda without CUDA graphs" "FAILED" "see the lines above"
        [ -n "$tf" ] && row "morphogen cuda, tf32 tensor cores, s/iteration" "$tf" \
                "--set run.matmul=tf32, with CUDA graphs${m:+; $(ratio "$m" "$tf") the fp32 speed}" ||
            row "morphogen cuda, tf32 tensor cores" "FAILED" "see the lines above"
        if [ "$have_torch" -eq 0 ]; then
            row "PyTorch" "not run" "$python: no torch with CUDA"
        else
            [ -n "$e" ] && row "PyTorch eager, s/iteration" "$e" "${m:+morphogen $(ratio "$e" "$m") faster}" ||
                row "PyTorch eager" "FAILED" "see the lines above"
            if [ "$have_graphs" -eq 0 ]; then
                row "PyTorch CUDA graphs" "not run" "torch.cuda.CUDAGraph missing"
            else
                [ -n "$g" ] && row "PyTorch CUDA graphs, s/iteration" "$g" \
                        "${m:+morphogen $(ratio "$g" "$m") faster; }$g_capture" ||
                    row "PyTorch CUDA graphs" "not run or FAILED" "time budget, or see above"
                row "PyTorch CUDA graphs = eager" "${g_check:-not run}" "$g_check_note"
            fi
            if [ "$have_compile" -eq 0 ]; then
                row "PyTorch torch.compile" "not run" "torch.compile missing"
            else
                [ -n "$c" ] && row "PyTorch torch.compile, s/iteration" "$c" "${m:+morphogen $(ratio "$c" "$m") faster}" ||
                    row "PyTorch torch.compile" "not run or FAILED" "time budget, or see above"
            fi
        fi
    else
        tail -n 3 "$work/grow.log"
        row "Distill benchmark" "FAILED" "growing the pool failed (above)"
    fi
fi

# ---- 4. large config: scale, and cell-steps/s with every cell alive ----
# One training iteration of 8 256x256 organisms, C=32, 200 steps with
# checkpointed BPTT (every 10 steps): that it trains, and the GPU memory it
# holds (morphogen's own allocations, from its "done" line). Then
# `morphogen grad` on 8 random live 256x256 states of its run file, timed
# at two rollout lengths: the difference removes start-up, transfers and
# file I/O. The same pair again with run.matmul = tf32 (tensor cores) when
# the budget leaves the profile below its time.
if [ -n "$morphogen" ] && [ "$have_h5py" -eq 1 ] && [ "$(elapsed)" -lt 240 ]; then
    big=(--set target.spec="$root/jobs/data/lizard_40.png" --set target.size=200 --set target.padding=28
         --set model.channels=32 --set model.hidden=128 --set train.batch=8 --set train.pool_size=8
         --set run.backend=cuda --set train.checkpoint_steps=10 --set train.iterations=1
         --set train.steps_min=200 --set train.steps_max=200)
    tmo 60 "$morphogen" train "${big[@]}" --out "$work/big.h5" >"$work/big.log" 2>&1
    big_rc=$?
    if [ "$big_rc" -eq 0 ] && tmo 30 "$python" - "$work/states.h5" <<'PY'
import sys, h5py, numpy as np
rng = np.random.default_rng(1)
s = rng.uniform(-1, 1, (8, 256, 256, 32)).astype(np.float32)
s[..., 3] = rng.uniform(0.3, 1.0, (8, 256, 256))
with h5py.File(sys.argv[1], "w") as f:
    f["states"] = s
PY
    then
        mem=$(grep -m1 -oE 'GPU memory [0-9]+ MiB' "$work/big.log")
        row "256x256 C=32 H=128 B=8, 200 steps, checkpoint 10" "trains" \
            "${mem:-no GPU memory reported}, 1 iteration from seeds"
        # t_of STEPS [ARG...]: seconds of `morphogen grad` over STEPS steps,
        # with ARGs (--set run.matmul=tf32) added.
        t_of() {
            local s
            s=$(date +%s.%N)
            tmo 60 "$morphogen" grad "$work/big.h5" --states "$work/states.h5" --steps "$1" --out "$work/g$1.h5" \
                "${@:2}" >/dev/null 2>"$work/g.log" || { tail -n 2 "$work/g.log" >&2; return 1; }
            awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN {printf "%.4f", e - s}'
        }
        # cell_rate T8 T40: forward+backward cell-steps/s from the two times.
        cell_rate() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3g", 8 * 65536 * 32 / (b - a)}'; }
        if ta=$(t_of 8) && tb=$(t_of 40); then
            cs=$(cell_rate "$ta" "$tb")
            row "256x256 C=32 H=128 B=8, fwd+bwd" "$cs cell-steps/s" "grad, 40 vs 8 steps: $tb s vs $ta s, fire 0.5, all alive"
            # Useful FLOP/s: half the cells fire, each computed cell-step is
            # 122,880 FLOPs forward and backward (kernels/README.md, the
            # floor), against the GPU's matmul rates measured by cuBLAS.
            flops=$(awk -v c="$cs" 'BEGIN {printf "%.3g", c * 0.5 * 122880}')
            rates=""
            if [ "$have_torch" -eq 1 ]; then
                rates=$(tmo 30 "$python" - <<'PY' 2>/dev/null
import time, torch
def rate(dtype, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    for _ in range(2):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192 ** 3 / (time.perf_counter() - t) / 1e12
print("fp32 %.0f, TF32 %.0f, BF16 %.0f TFLOP/s (cuBLAS 8192^3 matmul)"
      % (rate(torch.float32, False), rate(torch.float32, True), rate(torch.bfloat16, False)))
PY
)
            fi
            row "achieved, large config" "$flops FLOP/s" "${rates:-GPU rates not measured (no torch)}"
            tf32_row="256x256 C=32 H=128 B=8, fwd+bwd, tf32 tensor cores"
            if [ "$(elapsed)" -ge 215 ]; then
                row "$tf32_row" "not run" "time budget"
            elif ta=$(t_of 8 --set run.matmul=tf32) && tb=$(t_of 40 --set run.matmul=tf32); then
                ct=$(cell_rate "$ta" "$tb")
                row "$tf32_row" "$ct cell-steps/s" \
                    "grad --set run.matmul=tf32, 40 vs 8 steps: $tb s vs $ta s; $(ratio "$ct" "$cs") the fp32 rate"
            else
                row "$tf32_row" "FAILED" "morphogen grad --set run.matmul=tf32 (above)"
            fi
        else
            row "large config" "FAILED" "morphogen grad (above)"
        fi
    elif [ "$big_rc" -eq 124 ] || [ "$big_rc" -eq 137 ]; then
        # Killed by its limit: too slow (or stuck), not a wrong result.
        tail -n 3 "$work/big.log"
        row "large config" "timed out" "the 1-iteration training ran past its limit (60 s, or the budget left)"
    else
        tail -n 3 "$work/big.log"
        row "large config" "FAILED" "setup (above)"
    fi
else
    row "large config" "not run" "no build, no h5py, or out of time"
fi

# ---- 5. where an iteration's GPU time goes ----
if [ -n "$morphogen" ]; then
    # Where a training iteration's GPU time goes: Nsight Compute's
    # duration of every kernel of one iteration (graph nodes profiled one
    # by one, clocks and caches left alone), summed per kernel. Their total
    # against the s/iteration above says how much of an iteration is
    # launch and host overhead rather than kernel time.
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -n 1)
    if [ -z "${done_iter:-}" ]; then
        row "kernel time per iteration (ncu)" "not run" "no grown pool (Distill benchmark above)"
    elif [ -z "$ncu" ]; then
        row "kernel time per iteration (ncu)" "not run" "ncu not found"
    elif [ "$(elapsed)" -ge 235 ]; then
        row "kernel time per iteration (ncu)" "not run" "time budget"
    else
        cp "$start" "$work/p.h5"
        tmo 30 "$ncu" --clock-control none --cache-control none --target-processes all --launch-count 3000 \
            --metrics gpu__time_duration.sum --print-units base --csv --page raw \
            "$morphogen" train --resume "$work/p.h5" --set train.iterations=$((done_iter + 1)) \
            --set run.checkpoint_every=1000000000 --set run.log_every=1000000000 >"$work/ncu.csv" 2>"$work/ncu.log"
        rc=$?
        [ -n "${OUT:-}" ] && mkdir -p "$OUT" && cp "$work/ncu.csv" "$OUT/ncu_iteration.csv"
        summary=$(tmo 20 "$python" analysis/kernel_times.py "$work/ncu.csv" ${OUT:+--table "$OUT/ncu_kernels.md"} 2>&1)
        if [ "$rc" -eq 0 ] && [ -n "$summary" ] && [[ "$summary" != kernel_times:* ]]; then
            row "kernel time per iteration (ncu)" "${summary%%;*}" "${summary#*; }"
        else
            tail -n 3 "$work/ncu.log"
            row "kernel time per iteration (ncu)" "FAILED" "exit $rc; ${summary:-no kernels in the CSV}"
        fi
    fi
fi

table=$(printf '%s\n' "device check $(date -u +%Y-%m-%d), GPU: $gpu, $(elapsed) s" "" "| what | result | notes |" \
        "|---|---|---|" "${rows[@]}")
echo
echo "$table"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT" && echo "$table" >"$OUT/device_check.md"
fi
