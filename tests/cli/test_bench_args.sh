#!/usr/bin/env bash
# The benchmark scripts' bad arguments: each one line naming the problem,
# exit status 1 for a missing file and 2 for a bad value, before any work
# (jobs/bench_cpu.sh: no build, no copy of the run file, no benchmark;
# jobs/device_check.sh: no build, nothing run on a GPU).
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"

: >run.h5 # exists; never read, every case below stops first
check() { # check STATUS PATTERN [VAR=VALUE] ARGS...
    local want=$1 pattern=$2 rc=0
    shift 2
    env "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" = "$want" ] || fail "$*: exit $rc, expected $want: $(cat err.txt)"
    [ "$(wc -l <err.txt)" = 1 ] || fail "$*: expected one line, got: $(cat err.txt)"
    grep -q -- "$pattern" err.txt || fail "$*: '$(cat err.txt)' does not match '$pattern'"
    [ ! -s out.txt ] || fail "$*: printed on stdout: $(cat out.txt)"
}
bench=(bash "$MG_SOURCE_DIR/jobs/bench_cpu.sh")
check 1 "missing.h5: no such file" "${bench[@]}" missing.h5
check 2 "ITERS 1: must be an integer >= 2" "${bench[@]}" "$PWD/run.h5" 1
check 2 "ITERS x: must be an integer >= 2" "${bench[@]}" "$PWD/run.h5" x
check 2 "REPEATS 0: must be an integer >= 1" "${bench[@]}" "$PWD/run.h5" 3 0
check 2 "THREADS -1: must be an integer >= 1" "${bench[@]}" "$PWD/run.h5" 3 1 2 -1
check 2 "MG_BENCH_POOL=dead: must be as-is or all-alive" MG_BENCH_POOL=dead "${bench[@]}" "$PWD/run.h5"
check_device() { check "$1" "$2" "${@:3}" bash "$MG_SOURCE_DIR/jobs/device_check.sh"; }
check_device 1 "MG_DEVICE_BUNDLE=nowhere: no such directory" MG_DEVICE_BUNDLE=nowhere
check_device 2 "MG_GROW_ITERS=0: must be an integer >= 1" MG_GROW_ITERS=0
check_device 2 "MG_BENCH_ITERS=six: must be an integer >= 1" MG_BENCH_ITERS=six
check_device 2 "MG_BENCH_WARMUP=-5: must be an integer >= 0" MG_BENCH_WARMUP=-5
echo "bench_cpu.sh and device_check.sh: bad arguments rejected with one line each"
