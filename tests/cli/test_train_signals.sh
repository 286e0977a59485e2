#!/usr/bin/env bash
# SIGTERM, SIGINT and SIGUSR1 stop `train` cleanly: a checkpoint of the
# iterations done so far is written, the exit status is 75 and the message
# says how to resume; resuming then finishes the run bit for bit as if it had
# never stopped.
# mg-test: slow
set -euo pipefail
mkdir -p "$MG_WORK"
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
rm -f ./*.h5 ./*.tmp ./*.err ./*.error

COMPUTED=(checkpoint targets metrics/iteration metrics/loss metrics/lr metrics/grad_norm)
# Long enough to be stopped in the middle; checkpoint_every beyond the end so
# that the only checkpoints are the initial one and the one the signal forces.
LONG=("${TINY[@]}" --set train.iterations=200 --set run.checkpoint_every=1000 --set run.log_every=1)

# stop_with SIGNAL NAME: starts a long run writing NAME.h5, sends SIGNAL once
# a few iterations are done, and checks the clean stop. Prints the iteration
# the checkpoint holds.
stop_with() {
    local sig=$1 name=$2
    # Emptied here, not by the background redirection, so that the polling
    # below can never see a previous run's progress lines.
    : > "$name.err"
    "$MORPHOGEN" train "${LONG[@]}" --out "$MG_WORK/$name.h5" >/dev/null 2>>"$name.err" &
    local pid=$!
    wait_for_progress "$name.err" "$pid" 5
    kill -s "$sig" "$pid"
    local rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 75 ] || fail "$sig: train exited $rc, expected 75; stderr: $(cat "$name.err")"
    expect_error_line "$name.err" "stopped by signal" "--resume $MG_WORK/$name.h5"
    [ ! -e "$name.h5.tmp" ] || fail "$sig: $name.h5.tmp left behind"
    local done_iter
    done_iter=$(h5_eval "$name.h5" "int(f['checkpoint'].attrs['iteration'])")
    [ "$done_iter" -ge 5 ] && [ "$done_iter" -lt 200 ] \
        || fail "$sig: checkpoint at iteration $done_iter, expected one between 5 and 199"
    [ "$(h5_eval "$name.h5" "f['metrics/loss'].shape[0]")" = "$done_iter" ] \
        || fail "$sig: $name.h5 metrics rows do not match checkpoint iteration $done_iter"
    echo "$done_iter"
}

# SIGTERM, then resume to the end and compare with an uninterrupted run.
stopped_at=$(stop_with TERM term)
"$MORPHOGEN" train --resume "$MG_WORK/term.h5" 2>term_resume.err || fail "resume after SIGTERM: $(cat term_resume.err)"
grep -qF "iterations $((stopped_at + 1))..200" term_resume.err \
    || fail "the resume did not start at iteration $((stopped_at + 1)): $(cat term_resume.err)"
"$MORPHOGEN" train "${LONG[@]}" --out "$MG_WORK/whole.h5" 2>whole.err || fail "uninterrupted run: $(cat whole.err)"
h5_same whole.h5 term.h5 "${COMPUTED[@]}"

# SIGINT and SIGUSR1: the same clean stop; a short resume shows the file is
# resumable.
for sig in INT USR1; do
    name=$(echo "$sig" | tr 'A-Z' 'a-z')
    stopped_at=$(stop_with "$sig" "$name")
    "$MORPHOGEN" train --resume "$MG_WORK/$name.h5" --set train.iterations=$((stopped_at + 2)) 2>"${name}_resume.err" \
        || fail "resume after SIG$sig: $(cat "${name}_resume.err")"
    [ "$(h5_eval "$name.h5" "int(f['checkpoint'].attrs['iteration'])")" = $((stopped_at + 2)) ] \
        || fail "the resume after SIG$sig did not reach iteration $((stopped_at + 2))"
done

echo "ok"
