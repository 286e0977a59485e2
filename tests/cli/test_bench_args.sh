#!/usr/bin/env bash
# jobs/bench_cpu.sh's bad arguments: each one line naming the problem, exit
# status 1 for a missing run file and 2 for a bad value, before any work
# (no build, no copy of the run file, no benchmark).
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
echo "bench_cpu.sh: bad arguments rejected with one line each"
