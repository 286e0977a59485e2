#!/usr/bin/env bash
# analysis/kernel_times.py (the device check's per-kernel summary of one
# training iteration under Nsight Compute) on a CSV in ncu's raw-page layout,
# with ncu's own lines and the program's output mixed in: per-kernel sums,
# shares and means, the Markdown table, and one-line errors for a missing
# file, a CSV without the duration column and a duration that is no number.
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"
PY="$MG_PYTHON"
KT="$MG_SOURCE_DIR/analysis/kernel_times.py"

cat >ncu.csv <<'EOF'
==PROF== Connected to process 4242 (/tmp/morphogen)
==PROF== Profiling "k_select_forward" - 0: 0%....50%....100% - 1 pass
morphogen: resuming p.h5 -> p.h5: 72x72 grid, 16 channels
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","gpu__time_duration.sum"
"","","","","","","","","","","","nsecond"
"0","4242","morphogen","127.0.0.1","k_select_forward(const float *, unsigned char *, int)","1","13","(256, 1, 1)","(21, 8, 1)","0","9.0","3,000"
"1","4242","morphogen","127.0.0.1","void k_mlp_forward<(int)4>(const float *, float *)","1","13","(256, 1, 1)","(32, 8, 1)","0","9.0","12000"
"2","4242","morphogen","127.0.0.1","k_select_forward(const float *, unsigned char *, int)","1","13","(256, 1, 1)","(21, 8, 1)","0","9.0","5000"
"3","4242","morphogen","127.0.0.1","k_adam(float *, const float *, int)","1","13","(256, 1, 1)","(33, 1, 1)","0","9.0","20000"
==PROF== Disconnected from process 4242
EOF

out=$("$PY" "$KT" ncu.csv --table kernels.md --top 2)
want="0.040 ms in 4 launches; k_adam 50% (1 x 20.0 us), k_mlp_forward<(int)4> 30% (1 x 12.0 us)"
[ "$out" = "$want" ] || fail "summary '$out', expected '$want'"
grep -qxF "| k_select_forward | 2 | 0.008 | 4.00 | 20.0% |" kernels.md || fail "table: $(cat kernels.md)"
[ "$(wc -l <kernels.md)" -eq 5 ] || fail "table has $(wc -l <kernels.md) lines, expected 5"

# expect_error TEXT ARGS...: exit 1 and one stderr line containing TEXT.
expect_error() {
    local want="$1" rc=0
    shift
    "$PY" "$KT" "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" -eq 1 ] || fail "kernel_times $* exited $rc, expected 1"
    grep -qF -- "$want" err.txt || fail "kernel_times $*: stderr lacks '$want': $(cat err.txt)"
    [ "$(wc -l <err.txt)" -eq 1 ] || fail "kernel_times $*: error is not one line: $(cat err.txt)"
}
expect_error "missing.csv: No such file" missing.csv
grep -v gpu__time ncu.csv | sed 's/"Kernel Name"/"Kernel"/' >nohead.csv
expect_error "nohead.csv: no ncu CSV header" nohead.csv
sed 's/"20000"/"n\/a"/' ncu.csv >bad.csv
expect_error "bad.csv: kernel k_adam: duration 'n/a' is not a number" bad.csv
head -n 5 ncu.csv >empty.csv
expect_error "empty.csv: no kernel rows" empty.csv
echo "kernel_times: all checks passed"
