#!/usr/bin/env bash
# `morphogen train` refuses a bad config before doing any work: exit status 2
# (usage), exactly one line on stderr naming the file, line and key (or the
# --set flag and the allowed range), and no run file created.
set -euo pipefail

: "${MORPHOGEN:?MORPHOGEN must name the morphogen executable}"
: "${MG_WORK:?MG_WORK must name a scratch folder}"
mkdir -p "$MG_WORK"
cd "$MG_WORK"
rm -f x.h5 stderr.txt

fail() { echo "FAIL: $*" >&2; exit 1; }

# Runs the command, expects exit status 2, no x.h5, and a one-line stderr
# containing every further argument.
expect_usage_error() {
    local -a cmd=()
    while [ "$1" != "--" ]; do cmd+=("$1"); shift; done
    shift
    local rc=0
    "${cmd[@]}" >/dev/null 2>stderr.txt || rc=$?
    [ "$rc" -eq 2 ] || fail "'${cmd[*]}' exited $rc, expected 2; stderr: $(cat stderr.txt)"
    [ ! -e x.h5 ] || fail "'${cmd[*]}' created x.h5 although the config is bad"
    local lines
    lines=$(wc -l < stderr.txt)
    [ "$lines" -eq 1 ] || fail "'${cmd[*]}' printed $lines lines on stderr, expected 1: $(cat stderr.txt)"
    local needle
    for needle in "$@"; do
        grep -qF -- "$needle" stderr.txt || fail "stderr lacks '$needle': $(cat stderr.txt)"
    done
}

# Unknown key on line 4.
cat > BAD.ini <<'INI'
[model]
channels = 16
; the next key does not exist
colour = red
INI
expect_usage_error "$MORPHOGEN" train BAD.ini --out "$MG_WORK/x.h5" -- \
    "BAD.ini:4:" "colour" "[model]"

# Out-of-range value on line 3.
cat > RANGE.ini <<'INI'
[train]

batch = 0
INI
expect_usage_error "$MORPHOGEN" train RANGE.ini --out "$MG_WORK/x.h5" -- \
    "RANGE.ini:3:" "batch" "1..4096"

# A good file with a bad override.
cat > GOOD.ini <<'INI'
[model]
channels = 16
INI
expect_usage_error "$MORPHOGEN" train GOOD.ini --set model.channels=999 --out "$MG_WORK/x.h5" -- \
    "--set model.channels=999" "4..128"

# Cross-key check after all sources: batch larger than the pool.
expect_usage_error "$MORPHOGEN" train GOOD.ini --set train.pool_size=4 --out "$MG_WORK/x.h5" -- \
    "train.batch (8) must not exceed train.pool_size (4)"

# run.matmul: an unknown value, and tf32 on the cpu backend (tensor cores are
# the GPU's), from a flag and from a file. A tiny run, should the check fail.
SHORT=(--set target.size=4 --set target.padding=0 --set train.iterations=1 --set train.steps_max=2
       --set train.steps_min=1 --set train.pool_size=8)
expect_usage_error "$MORPHOGEN" train GOOD.ini "${SHORT[@]}" --set run.matmul=fp16 --out "$MG_WORK/x.h5" -- \
    "--set run.matmul=fp16" "fp32 or tf32"
expect_usage_error "$MORPHOGEN" train GOOD.ini "${SHORT[@]}" --set run.matmul=tf32 --out "$MG_WORK/x.h5" -- \
    "GOOD.ini: run.matmul: 'tf32' needs run.backend = cuda (the cpu backend computes in fp32)"
printf '[run]\nbackend = cpu\nmatmul = tf32\n' > TF32.ini
expect_usage_error "$MORPHOGEN" train TF32.ini "${SHORT[@]}" --out "$MG_WORK/x.h5" -- \
    "TF32.ini: run.matmul: 'tf32' needs run.backend = cuda"

echo "ok"
