#!/usr/bin/env bash
# jobs/train.sbatch under a real (private, single-node) Slurm cluster: a
# 2-rank job started with `srun --mpi=pmix` gets SIGUSR1 from
# --signal=B:USR1@45 before its one-minute limit, writes a checkpoint, exits
# 75 and requeues itself; the requeued job resumes and finishes, and the
# result is bitwise the same as an uninterrupted 2-rank mpirun run.
#
# Timing, as Slurm 22.05 does it: slurmctld looks at time limits every 30 s,
# counted from its start, and sends the warning signal at the first look
# that finds the job within (45 + 30) s of its limit. With a one-minute limit
# that is the first look after the job starts: ~28 s into the first run
# (submitted just after the cluster came up), and ~20 s into the requeued
# run, which starts about 10 s after the requeue (AuthInfo cred_expire=5 in
# slurm_cluster.sh; the default would be 2 minutes). So the run is sized from
# a measured iteration rate to take ~36 s: the first job is always stopped
# part-way, and the second normally finishes first. Should a slow machine
# stop the second one too, a third finishes the run: the test then checks
# every restart the same way (and says so).
# mg-test: slow
set -euo pipefail

PATH=$PATH:/usr/sbin:/sbin
for cmd in munged slurmctld slurmd sbatch squeue scontrol mpirun; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "SKIP: $cmd is not installed (Debian: apt-get install slurm-wlm munge openmpi-bin)"
        exit 0
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: starting a private Slurm cluster needs root"
    exit 0
fi

source "$MG_SOURCE_DIR/tests/cli/lib.sh"
source "$MG_SOURCE_DIR/tests/cli/slurm_cluster.sh"
CLUSTER=$MG_WORK/slurm
trap 'slurm_cluster_stop "$CLUSTER"' EXIT
slurm_cluster_stop "$CLUSTER"   # a killed earlier run may have left one running
rm -rf ./*.h5 ./*.tmp ./*.ini ./*.log ./*.err "$CLUSTER"

MPIRUN=(mpirun --oversubscribe --allow-run-as-root --bind-to none -np 2)
STATE=(/checkpoint/params /checkpoint/adam_m /checkpoint/adam_v /checkpoint/pool /metrics/loss
       /metrics/grad_norm /metrics/iteration /metrics/lr)
TARGET_SECONDS=36

# write_config FILE ITERATIONS: the tiny model (about 60 iterations/s on two
# ranks here), one thread per rank as the job gets, and no periodic
# checkpoints, so that the only one between start and end is the signal's.
write_config() {
    cat > "$1" <<EOF
[model]
hidden = 32
channels = 8
[target]
size = 12
padding = 4
[train]
pool_size = 16
batch = 4
steps_min = 8
steps_max = 12
iterations = $2
[run]
threads = 1
checkpoint_every = 1000000000
log_every = 200
EOF
}

# Measure the 2-rank rate, without start-up costs (the difference of two
# runs), and size the run to take TARGET_SECONDS.
write_config calibrate.ini 1
timed_run() {
    local start end
    start=$(date +%s%N)
    "${MPIRUN[@]}" "$MORPHOGEN" train calibrate.ini --set train.iterations="$1" --out "calibrate$1.h5" \
        2>calibrate.err || fail "calibration run of $1 iterations: $(cat calibrate.err)"
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}
short_ms=$(timed_run 40)
long_ms=$(timed_run 240)
[ "$long_ms" -gt "$short_ms" ] || fail "calibration: 240 iterations took ${long_ms} ms, 40 took ${short_ms} ms"
ITERATIONS=$((TARGET_SECONDS * 1000 * 200 / (long_ms - short_ms)))
[ "$ITERATIONS" -ge 200 ] || ITERATIONS=200
echo "calibration: $((200 * 1000 / (long_ms - short_ms))) iterations/s on 2 ranks; the job runs $ITERATIONS iterations"
write_config job.ini "$ITERATIONS"

# The uninterrupted reference, on the same number of ranks.
start=$(date +%s)
"${MPIRUN[@]}" "$MORPHOGEN" train job.ini --out ref.h5 2>ref.err || fail "reference run: $(cat ref.err)"
echo "reference run (mpirun -np 2): $(($(date +%s) - start)) s"

start=$(date +%s)
slurm_cluster_start "$CLUSTER"
echo "cluster up in $(($(date +%s) - start)) s"

# The job script runs $MORPHOGEN (sbatch exports the environment) and writes
# its log morphogen-JOBID.log in the folder it was submitted from. The
# command-line options override the script's #SBATCH lines.
export MORPHOGEN
submitted=$(date +%s)
job=$(sbatch --parsable --ntasks=2 --cpus-per-task=1 --time=1 --signal=B:USR1@45 \
    "$MG_SOURCE_DIR/jobs/train.sbatch" job.ini run.h5) || fail "sbatch refused the job"
job=${job%%;*}
LOG=$MG_WORK/morphogen-$job.log

# Poll (sbatch --wait backs off to tens of seconds). The job leaves squeue
# when it ends; a requeued job stays in it (pending, then running again).
states=""
while true; do
    state=$(squeue -h -j "$job" -o %T 2>/dev/null || true)
    [ -n "$state" ] || break
    [ "${states##* }" = "$state" ] || states="$states $state"
    if [ $(($(date +%s) - submitted)) -gt 150 ]; then
        fail "job $job still $state after 150 s (states seen:$states); log: $(cat "$LOG" 2>/dev/null)"
    fi
    sleep 0.5
done
echo "job $job: done in $(($(date +%s) - submitted)) s; states seen:$states"

show=$(scontrol show job "$job")
field() { grep -oE "(^| )$1=[^ ]*" <<<"$show" | head -n 1 | cut -d= -f2-; }
[ -f "$LOG" ] || fail "no job log $LOG; scontrol: $show"
context="job log:
$(cat "$LOG")
scontrol show job:
$show"
[ "$(field JobState)" = COMPLETED ] || fail "job ended $(field JobState), exit $(field ExitCode); $context"
[ "$(field ExitCode)" = 0:0 ] || fail "job exit code $(field ExitCode); $context"

# Every run of the job: each but the last was stopped by the signal with a
# checkpoint and requeued itself; each after the first resumed the run file.
restarts=$(field Restarts)
[ -n "$restarts" ] || fail "scontrol shows no Restarts field; $context"
[ "$restarts" -ge 1 ] || fail "the job was never requeued (the run finished before SIGUSR1 came); $context"
count() { grep -cF -- "$1" "$LOG" || true; }
[ "$(count "morphogen: training job.ini -> run.h5")" -eq 1 ] || fail "expected one fresh start; $context"
[ "$(count "morphogen: resuming run.h5 -> run.h5")" -eq "$restarts" ] || fail "expected $restarts resumed runs; $context"
[ "$(count "morphogen: stopped by signal after iteration")" -eq "$restarts" ] ||
    fail "expected $restarts stop messages; $context"
[ "$(count "morphogen stopped for the time limit after a checkpoint; requeueing job $job")" -eq "$restarts" ] ||
    fail "expected $restarts requeue lines; $context"
[ "$(count "morphogen: done: $ITERATIONS iterations")" -eq 1 ] || fail "the last run did not finish; $context"
# srun --mpi=pmix made the two tasks one MPI job of two ranks (not two
# separate one-rank runs) in every run.
[ "$(count "morphogen (rank 1 of 2): node-local rank 1 of 2")" -eq $((restarts + 1)) ] ||
    fail "not every run had 2 MPI ranks; $context"
# Each resume starts right after the iteration the previous stop reported.
stops=$(grep -oE "stopped by signal after iteration [0-9]+" "$LOG" | grep -oE "[0-9]+$")
resumes=$(grep -oE "^morphogen: resuming .*iterations [0-9]+\.\." "$LOG" | grep -oE "[0-9]+\.\.$" | tr -d .)
for stop in $stops; do
    [ "$stop" -gt 0 ] && [ "$stop" -lt "$ITERATIONS" ] || fail "stopped after iteration $stop of $ITERATIONS; $context"
done
[ "$(echo $resumes)" = "$(for s in $stops; do echo $((s + 1)); done | tr '\n' ' ' | sed 's/ $//')" ] ||
    fail "resumes at iterations '$(echo $resumes)' do not follow the stops at '$(echo $stops)'; $context"
[ "$restarts" -eq 1 ] || echo "note: the run needed $restarts requeues (a slower machine than sized for)"

[ "$(h5_eval run.h5 "int(f['checkpoint'].attrs['iteration'])")" = "$ITERATIONS" ] ||
    fail "run.h5 checkpoint is not at iteration $ITERATIONS"
[ ! -e run.h5.tmp ] || fail "run.h5.tmp left behind"
h5_same ref.h5 run.h5 "${STATE[@]}"
echo "slurm job: ok (stopped after iteration$(echo " $stops" | tr '\n' ' '), $restarts requeue(s), bitwise equal to mpirun)"
