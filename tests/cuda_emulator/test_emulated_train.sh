#!/usr/bin/env bash
# Training with run.backend = cuda on the CUDA emulator: an EMULATION on the
# CPU, not a GPU run. It exercises what the parity test does not: the real
# trainer, run files, resume and MPI around the emulated kernels.
#  - 2 ranks, and a resume on 2 ranks, equal 1 rank bit for bit (the
#    backend's per-sample results must not depend on which samples share a
#    batch, or the rank count would change the result), whichever way the
#    gradients travel: MPI on the host (ranks sharing a GPU, no NCCL
#    library, or MORPHOGEN_NCCL=none) or NCCL (emulated over MPI on two
#    emulated GPUs);
#  - an NCCL all-gather that fails on one rank ends the job in one line and
#    keeps the last checkpoint;
#  - diverged replicas stop a 2-rank run (the check downloads the weights);
#  - the losses of a short run equal the CPU backend's to float rounding
#    (same weights, states and fire masks; the kernels sum in other orders);
#  - with run.matmul = tf32 (tensor cores, rounded as the hardware rounds by
#    the emulator's mma.h): 2 ranks over NCCL equal 1 rank bit for bit, the
#    losses differ from the fp32 run's (the tensor-core kernels ran) but stay
#    within TF32's tolerance of the CPU's, and a GPU older than compute
#    capability 8.0 (MG_CUEMU_CC_MAJOR=7) is refused with one line;
#  - a GPU the build has no code for (MG_CUEMU_NO_KERNEL_IMAGE=1) is
#    refused with one line naming it, the build's architectures and the way
#    out (another list, or another toolkit); the driver decides, so a GPU
#    outside the list whose code the driver finds trains.
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
: "${MORPHOGEN_CPU:?MORPHOGEN_CPU must name the plain morphogen executable}"

MPIRUN=(mpirun --oversubscribe --allow-run-as-root --bind-to none -x ASAN_OPTIONS -x LSAN_OPTIONS
        -x UBSAN_OPTIONS -x MG_CUEMU_ORDER -x MG_CUEMU_SEED)
RUN=("${TINY[@]}" --set train.iterations=6 --set run.checkpoint_every=3)
STATE=(/checkpoint/params /checkpoint/adam_m /checkpoint/adam_v /checkpoint/pool /metrics/loss /metrics/grad_norm)

"$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda --out one.h5 >one.out 2>one.err ||
    fail "1 rank: $(cat one.err)"
grep -q EMULATION one.out one.err || fail "the emulated run does not say it is an emulation"
grep -qE "GPU memory [1-9][0-9]* MiB in morphogen's allocations on rank 0's GPU" one.err ||
    fail "the done line does not report the GPU memory: $(grep done: one.err)"
# Rollouts replayed from CUDA graphs (the default) and launched one by one:
# the same bits.
MORPHOGEN_CUDA_GRAPHS=0 "$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda --out nographs.h5 >/dev/null \
    2>nographs.err || fail "1 rank without CUDA graphs: $(cat nographs.err)"
h5_same one.h5 nographs.h5 "${STATE[@]}"
# Any other value is refused with one line, before training.
rc=0
MORPHOGEN_CUDA_GRAPHS=yes "$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda --out badgraphs.h5 >/dev/null \
    2>badgraphs.err || rc=$?
[ "$rc" = 1 ] || fail "MORPHOGEN_CUDA_GRAPHS=yes: exit $rc, expected 1: $(cat badgraphs.err)"
[ "$(grep -c "MORPHOGEN_CUDA_GRAPHS=yes: must be 0" badgraphs.err)" = 1 ] ||
    fail "MORPHOGEN_CUDA_GRAPHS=yes is not refused in one line: $(cat badgraphs.err)"
[ ! -e badgraphs.h5 ] || fail "MORPHOGEN_CUDA_GRAPHS=yes left a run file"
"${MPIRUN[@]}" -np 2 "$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda --set train.iterations=3 \
    --out two.h5 >/dev/null 2>two.err || fail "2 ranks: $(cat two.err)"
"${MPIRUN[@]}" -np 2 "$MORPHOGEN" train --resume two.h5 --set train.iterations=6 >/dev/null 2>>two.err ||
    fail "2 ranks, resumed: $(cat two.err)"
h5_same one.h5 two.h5 "${STATE[@]}"
# One emulated GPU for two ranks: NCCL cannot be used (it needs a GPU per
# rank), the gradients go through MPI, and rank 0 says why.
grep -q "exchanged through MPI on the host, not NCCL: ranks 0 and 1 share a GPU (.* 0000:10:00.0)" two.err ||
    fail "2 ranks on one GPU do not report the MPI exchange: $(cat two.err)"

# Two emulated GPUs and NCCL (EMULATED over MPI, tests/cuda_emulator/nccl_emulated.c):
# the NCCL exchange, the same bits.
: "${MG_NCCL_EMULATED:?MG_NCCL_EMULATED must name the emulated NCCL library}"
"${MPIRUN[@]}" -np 2 -x MG_CUEMU_DEVICES=2 -x MORPHOGEN_NCCL="$MG_NCCL_EMULATED" "$MORPHOGEN" train "${RUN[@]}" \
    --set run.backend=cuda --out nccl.h5 >/dev/null 2>nccl.err || fail "2 ranks, NCCL: $(cat nccl.err)"
grep -q "NCCL EMULATED over MPI (2 ranks)" nccl.err || fail "2 ranks on 2 GPUs did not use NCCL: $(cat nccl.err)"
grep -q "not NCCL" nccl.err && fail "2 ranks on 2 GPUs fell back to MPI: $(cat nccl.err)"
h5_same one.h5 nccl.h5 "${STATE[@]}"

# Two GPUs but no NCCL library: MPI instead, said once, the same bits.
"${MPIRUN[@]}" -np 2 -x MG_CUEMU_DEVICES=2 -x MORPHOGEN_NCCL=/nonexistent/libnccl.so.2 "$MORPHOGEN" train \
    "${RUN[@]}" --set run.backend=cuda --out nonccl.h5 >/dev/null 2>nonccl.err || fail "2 ranks, no NCCL: $(cat nonccl.err)"
[ "$(grep -c "not NCCL: NCCL did not load" nonccl.err)" = 1 ] ||
    fail "a missing NCCL is not reported once: $(cat nonccl.err)"
h5_same one.h5 nonccl.h5 "${STATE[@]}"
# MORPHOGEN_NCCL=none: MPI by choice, said once, the same bits.
"${MPIRUN[@]}" -np 2 -x MG_CUEMU_DEVICES=2 -x MORPHOGEN_NCCL=none "$MORPHOGEN" train "${RUN[@]}" \
    --set run.backend=cuda --out ncclnone.h5 >/dev/null 2>ncclnone.err || fail "2 ranks, NCCL none: $(cat ncclnone.err)"
[ "$(grep -c "exchanged through MPI on the host, not NCCL: MORPHOGEN_NCCL=none" ncclnone.err)" = 1 ] ||
    fail "MORPHOGEN_NCCL=none is not reported once: $(cat ncclnone.err)"
h5_same one.h5 ncclnone.h5 "${STATE[@]}"

# An all-gather that fails on one rank as a lost peer does on GPUs (rank 1's
# fourth, MG_CUEMU_NCCL_FAIL; rank 0 waits in its own for ever): NCCL's
# asynchronous error ends the whole job within seconds, in one line from
# the failing rank, and the run file keeps the checkpoint of iteration 3.
start=$(date +%s)
rc=0
timeout 60 "${MPIRUN[@]}" -np 2 -x MG_CUEMU_DEVICES=2 -x MORPHOGEN_NCCL="$MG_NCCL_EMULATED" -x MG_CUEMU_NCCL_FAIL=1:4 \
    "$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda --out ncclfail.h5 >/dev/null 2>ncclfail.err || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a failed NCCL all-gather: exit $rc (124 = hung): $(cat ncclfail.err)"
[ $(($(date +%s) - start)) -lt 30 ] || fail "the job took $(($(date +%s) - start)) s to end after the all-gather failed"
[ "$(grep -c "NCCL all-gather of the gradients failed" ncclfail.err)" = 1 ] ||
    fail "a failed NCCL all-gather is not reported in one line: $(cat ncclfail.err)"
grep -qF "morphogen (rank 1 of 2): cuda backend: NCCL all-gather of the gradients failed: remote process exited" \
    ncclfail.err || fail "the failing rank or NCCL's reason is not named: $(cat ncclfail.err)"
[ "$(h5_eval ncclfail.h5 "int(f['checkpoint'].attrs['iteration'])")" = 3 ] ||
    fail "ncclfail.h5 does not keep the checkpoint of iteration 3"

# The replica check with the cuda backend, whose weights live on the GPU:
# checks download them (here after iteration 3, a checkpoint); a one-bit
# difference on rank 1 (MORPHOGEN_TEST_DIVERGE) stops the job with exit 1
# and one line, and the run file keeps the checkpoint before it.
rc=0
"${MPIRUN[@]}" -np 2 -x MORPHOGEN_TEST_DIVERGE=1:3 "$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda \
    --out diverged.h5 >/dev/null 2>diverged.err || rc=$?
[ "$rc" = 1 ] || fail "diverged replicas (cuda): exit $rc, expected 1: $(cat diverged.err)"
[ "$(grep -c "replicas diverged" diverged.err)" = 1 ] ||
    fail "diverged replicas (cuda) not reported in one line: $(cat diverged.err)"
grep -qF "differ after iteration 3 (replicas diverged" diverged.err || fail "$(cat diverged.err)"
[ "$(h5_eval diverged.h5 "int(f['checkpoint'].attrs['iteration'])")" = 0 ] ||
    fail "diverged.h5 does not keep the checkpoint before the divergence"

"$MORPHOGEN_CPU" train "${RUN[@]}" --out cpu.h5 2>cpu.err || fail "cpu backend: $(cat cpu.err)"
"$MG_PYTHON" - one.h5 cpu.h5 <<'PY' || fail "cuda (emulated) and cpu losses differ"
import sys
import h5py
import numpy as np
gpu = h5py.File(sys.argv[1], "r")["metrics/loss"][:]
cpu = h5py.File(sys.argv[2], "r")["metrics/loss"][:]
print("loss per iteration, cuda (emulated):", gpu)
print("loss per iteration, cpu:            ", cpu)
assert gpu.shape == cpu.shape, (gpu.shape, cpu.shape)
# Same seeds, weights and fire masks; only the kernels' summation orders
# differ, by float rounding (about 1e-9 relative over these 6 iterations
# when written). 1e-5 leaves room for that and still catches a wrong sign
# in a weight that starts at zero (w2), which iteration 1 alone would not.
rel = np.abs(gpu - cpu) / np.abs(cpu)
print("relative difference:", rel)
assert np.all(rel <= 1e-5), rel
PY

# Tensor cores (run.matmul = tf32).
"$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda --set run.matmul=tf32 --out tf32.h5 >/dev/null 2>tf32.err ||
    fail "1 rank, tf32: $(cat tf32.err)"
"${MPIRUN[@]}" -np 2 -x MG_CUEMU_DEVICES=2 -x MORPHOGEN_NCCL="$MG_NCCL_EMULATED" "$MORPHOGEN" train "${RUN[@]}" \
    --set run.backend=cuda --set run.matmul=tf32 --out tf32two.h5 >/dev/null 2>tf32two.err ||
    fail "2 ranks, NCCL, tf32: $(cat tf32two.err)"
h5_same tf32.h5 tf32two.h5 "${STATE[@]}"
"$MG_PYTHON" - tf32.h5 one.h5 cpu.h5 <<'PY' || fail "tf32 losses: not the tensor-core path, or off the cpu's"
import sys
import h5py
import numpy as np
tf32, fp32, cpu = (h5py.File(p, "r")["metrics/loss"][:] for p in sys.argv[1:4])
print("loss per iteration, cuda tf32 (emulated):", tf32)
rel = np.abs(tf32 - cpu) / np.abs(cpu)
print("relative difference from the cpu backend:", rel)
# TF32 rounds each multiplicand to 11 significant bits: the parity test
# measured losses within 1.8e-5 of fp32's after one rollout; six training
# iterations compound it through the weights. 1e-3 is TF32's loss tolerance
# there; a rollout gone wrong is off by far more.
assert np.all(rel <= 1e-3), rel
assert np.any(tf32 != fp32), "tf32 gave the fp32 run's bits: the tensor-core kernels did not run"
PY
# morphogen grad on tensor cores (--set run.matmul=tf32, as the device
# check's large-config row runs it): gradients within TF32's tolerance of
# the fp32 ones (parity test: 1e-1 of each tensor's scale), and not the same bits.
"$MG_PYTHON" - one.h5 states.h5 <<'PY' || fail "could not write grad's input states"
import sys
import h5py
import numpy as np
pool = h5py.File(sys.argv[1], "r")["checkpoint/pool/states"][:3]
h5py.File(sys.argv[2], "w")["states"] = pool.astype(np.float32)
PY
for mm in fp32 tf32; do
    "$MORPHOGEN" grad one.h5 --states states.h5 --steps 6 --out "grad_$mm.h5" --set "run.matmul=$mm" >/dev/null \
        2>"grad_$mm.err" || fail "grad --set run.matmul=$mm: $(cat "grad_$mm.err")"
done
"$MG_PYTHON" - grad_tf32.h5 grad_fp32.h5 <<'PY' || fail "grad on tensor cores: not within TF32's tolerance of fp32, or the same bits"
import sys
import h5py
import numpy as np
tf32, fp32 = (h5py.File(p, "r") for p in sys.argv[1:3])
for name in ("grad/w1", "grad/b1", "grad/w2", "grad/states"):
    a, b = tf32[name][:], fp32[name][:]
    ratio = np.abs(a - b).max() / np.abs(b).max()
    print("grad, tf32 against fp32:", name, "max |difference| / scale =", ratio)
    assert ratio <= 1e-1, (name, ratio)
assert np.any(tf32["grad/w1"][:] != fp32["grad/w1"][:]), "the same bits: run.matmul=tf32 did not reach grad"
PY
rc=0
MG_CUEMU_CC_MAJOR=7 "$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda --set run.matmul=tf32 --out old.h5 \
    >/dev/null 2>old.err || rc=$?
[ "$rc" = 1 ] || fail "tf32 on compute capability 7.x: exit $rc, expected 1: $(cat old.err)"
[ "$(wc -l <old.err)" = 1 ] && grep -qF "run.matmul: 'tf32' needs tensor cores with TF32 (compute capability 8.0 or newer), and GPU 0 is 7.x" old.err ||
    fail "tf32 on compute capability 7.x is not refused in one line: $(cat old.err)"
[ ! -e old.h5 ] || fail "the refused tf32 run left a run file"
# refused CC NAME TAIL: on a GPU of compute capability CC (major.minor) for
# which the driver finds no code (MG_CUEMU_NO_KERNEL_IMAGE=1), training is
# refused before it starts in exactly one line, naming the GPU and the
# emulated build's list (80;90, tests/cuda_emulator/include/mg_cuda_build.h)
# and ending in TAIL, the way out.
refused() {
    local rc=0
    rm -f "$2.h5" # from an earlier run in this scratch folder
    MG_CUEMU_NO_KERNEL_IMAGE=1 MG_CUEMU_CC_MAJOR=${1%.*} MG_CUEMU_CC_MINOR=${1#*.} "$MORPHOGEN" train "${RUN[@]}" \
        --set run.backend=cuda --out "$2.h5" >/dev/null 2>"$2.err" || rc=$?
    [ "$rc" = 1 ] || fail "compute capability $1, no code in this build: exit $rc, expected 1: $(cat "$2.err")"
    local want="morphogen: cuda backend: GPU 0 is compute capability $1, and this morphogen was built for CUDA"
    want+=" architectures 80;90 only, which it cannot run; $3"
    [ "$(cat "$2.err")" = "$want" ] || fail "compute capability $1: not the one line expected: $(cat "$2.err")"
    [ ! -e "$2.h5" ] || fail "the refused run on compute capability $1 left a run file"
}
refused 7.5 turing 'rebuild with -DMORPHOGEN_CUDA_ARCHITECTURES="75;80;90", or use run.backend = cpu'
refused 6.1 pascal "CUDA 13.0, which built it, compiles for compute capability 7.5 and newer only: build morphogen with CUDA 12 for this GPU, or use run.backend = cpu"
refused 3.0 kepler "no CUDA toolkit that morphogen builds with (12 or newer) compiles for it: use run.backend = cpu"
# A GPU the list should run that still has no code (a broken build): the
# driver's error, in one line.
rc=0
rm -f noimage.h5
MG_CUEMU_NO_KERNEL_IMAGE=1 "$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda --out noimage.h5 >/dev/null \
    2>noimage.err || rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <noimage.err)" = 1 ] &&
    grep -qF "cuda backend: loading the kernels (was morphogen built for this GPU's architecture? see MORPHOGEN_CUDA_ARCHITECTURES)" noimage.err &&
    grep -qF "no kernel image is available for execution on the device" noimage.err ||
    fail "compute capability 9.0 without code: exit $rc, not the one line expected: $(cat noimage.err)"
[ ! -e noimage.h5 ] || fail "the run refused for want of code left a run file"
# The driver decides, not the list: a GPU outside the list whose code the
# driver finds (code added by other flags) trains.
MG_CUEMU_CC_MAJOR=7 MG_CUEMU_CC_MINOR=5 "$MORPHOGEN" train "${RUN[@]}" --set run.backend=cuda \
    --set train.iterations=1 --out extra_code.h5 >/dev/null 2>extra_code.err ||
    fail "compute capability 7.5 with code the driver finds was refused: $(cat extra_code.err)"
echo "cuda backend on the emulator: 1 and 2 ranks identical (MPI and emulated-NCCL exchange), losses equal to the cpu backend to 1e-5; tf32: 1 and 2 ranks identical, losses within 1e-3 of the cpu's, refused below compute capability 8.0; a GPU without code refused in one line"
