#!/usr/bin/env bash
# When the run file cannot be written (file size limit reached, directory not
# writable or missing) `train` exits 1 with one error line naming the path and
# the system's reason, the run file already on disk stays complete and
# readable (or keeps its last complete checkpoint), and no .tmp is left.
# `grow` reports a full disk the same way.
set -euo pipefail
mkdir -p "$MG_WORK"
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
rm -rf ./*.h5 ./*.tmp ./*.err ./*.error ./*.png locked

# limited KIB CMD...: runs CMD with files limited to KIB KiB; SIGXFSZ is
# ignored so that writing past the limit fails with EFBIG ("File too large")
# instead of killing the process.
limited() {
    local kib=$1
    shift
    ( trap '' XFSZ; ulimit -f "$kib"; exec "$@" )
}

# ---- (e1) the first write fails: the earlier file survives unchanged ----
"$MORPHOGEN" train "${TINY[@]}" --set train.iterations=5 --out "$MG_WORK/full.h5" 2>first.err \
    || fail "first run: $(cat first.err)"
sum_before=$(md5sum < full.h5)
run_status 1 e1.err limited 8 "$MORPHOGEN" train "${TINY[@]}" --set train.seed=2 --out "$MG_WORK/full.h5"
expect_error_line e1.err "$MG_WORK/full.h5" "File too large"
[ "$(md5sum < full.h5)" = "$sum_before" ] || fail "the failed write changed full.h5"
[ ! -e full.h5.tmp ] || fail "full.h5.tmp left behind"
[ "$(h5_eval full.h5 "int(f['checkpoint'].attrs['iteration'])")" = 5 ] || fail "full.h5 no longer reads back"

# ---- (e2) a later checkpoint fails: the file keeps the last complete one ----
# The run file grows when /metrics passes one 1024-row chunk, so a limit
# between the sizes of a 1000- and an 1100-iteration file lets the checkpoint
# at iteration 1000 through and stops the final one at 1100. The sizes are
# measured rather than assumed.
"$MORPHOGEN" train "${MICRO[@]}" --set train.iterations=1000 --out "$MG_WORK/size1000.h5" 2>s1.err \
    || fail "size run: $(cat s1.err)"
"$MORPHOGEN" train "${MICRO[@]}" --set train.iterations=1100 --out "$MG_WORK/size1100.h5" 2>s2.err \
    || fail "size run: $(cat s2.err)"
small=$(stat -c %s size1000.h5)
big=$(stat -c %s size1100.h5)
[ $((big - small)) -gt 8192 ] || fail "an 1100-iteration run file ($big bytes) is not clearly bigger than a 1000-iteration one ($small)"
limit_kib=$(((small + big) / 2 / 1024))
run_status 1 e2.err limited "$limit_kib" "$MORPHOGEN" train "${MICRO[@]}" --set train.iterations=1100 \
    --set run.checkpoint_every=1000 --out "$MG_WORK/late.h5"
expect_error_line e2.err "$MG_WORK/late.h5" "File too large"
[ ! -e late.h5.tmp ] || fail "late.h5.tmp left behind"
h5_same size1000.h5 late.h5 checkpoint metrics/iteration metrics/loss

# ---- (e3) grow's frames file hits the limit ----
run_status 1 e3.err limited 16 "$MORPHOGEN" grow "$MG_WORK/full.h5" --steps 20 --out "$MG_WORK/frames.h5"
expect_one_line e3.err "$MG_WORK/frames.h5" "File too large"

# ---- (f) the output directory is not writable, or does not exist ----
run_status 1 f1.err "$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/no/such/dir/run.h5"
expect_error_line f1.err "$MG_WORK/no/such/dir/run.h5" "No such file or directory"

# Root ignores permission bits, so the unwritable-directory case runs the
# executable as user nobody (65534) with setpriv, when that is possible.
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
skip_reason=""
if [ "$(id -u)" -ne 0 ]; then
    # Not root: a directory without write permission stops us directly.
    NOBODY=()
elif ! command -v setpriv >/dev/null; then
    skip_reason="setpriv (util-linux) is not installed"
elif ! "${NOBODY[@]}" test -x "$MORPHOGEN"; then
    skip_reason="user 65534 cannot execute $MORPHOGEN"
elif ! "${NOBODY[@]}" test -r "$MG_WORK/full.h5"; then
    skip_reason="user 65534 cannot read $MG_WORK"
fi
if [ -n "$skip_reason" ]; then
    echo "SKIP (unwritable directory case): $skip_reason"
else
    mkdir -p locked
    chmod 555 locked
    [ "$(id -u)" -eq 0 ] && chmod 755 locked
    # The process runs in a folder it can read; the target is rendered as
    # usual and only the run file cannot be created.
    run_status 1 f2.err "${NOBODY[@]}" "$MORPHOGEN" train "${TINY[@]}" --out "$MG_WORK/locked/run.h5"
    expect_error_line f2.err "$MG_WORK/locked/run.h5" "Permission denied"
    [ -z "$(ls -A locked)" ] || fail "files appeared in the unwritable directory: $(ls -A locked)"
fi

echo "ok"
