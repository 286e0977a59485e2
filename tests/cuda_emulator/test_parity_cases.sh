#!/usr/bin/env bash
# MG_PARITY_CASES (the device check runs small parity cases under
# compute-sanitizer with it; the sanitizer build splits its emulated run by
# kind with it), against the emulated parity test: a selection runs the
# fire-mask test and exactly the cases named, or all of one kind (fp32,
# tf32); MG_PARITY_LIST lists them instead; anything malformed is refused
# with one line and exit 2 before any test runs.
set -euo pipefail
: "${PARITY:?PARITY must name the parity test executable}"
fail() { echo "FAIL: $*" >&2; exit 1; }

# listed SELECTION: the tests that selection would run, in order, on one line.
listed() {
    MG_PARITY_LIST=1 MG_PARITY_CASES="$1" "$PARITY" >list.out 2>list.err ||
        fail "MG_PARITY_CASES=$1 MG_PARITY_LIST=1: $(cat list.out list.err)"
    grep '^test_' list.out | tr '\n' ' '
}
got=$(listed 5,0)
[ "$got" = "test_fire_masks test_case_5 test_case_0 " ] || fail "MG_PARITY_CASES=5,0 lists: $got"
# By kind: the "tf32" cases are 7..12, 14 and 15 (test_cuda_parity.c's CASES), the
# others fp32.
got=$(listed tf32)
[ "$got" = "test_fire_masks test_case_7 test_case_8 test_case_9 test_case_10 test_case_11 test_case_12 test_case_14 test_case_15 " ] ||
    fail "MG_PARITY_CASES=tf32 lists: $got"
got=$(listed fp32)
[ "$got" = "test_fire_masks test_case_0 test_case_1 test_case_2 test_case_3 test_case_4 test_case_5 test_case_6 test_case_13 test_case_16 " ] ||
    fail "MG_PARITY_CASES=fp32 lists: $got"
# ... and a selection runs exactly what it lists.
MG_PARITY_CASES=5,0 "$PARITY" >sel.out 2>sel.err || fail "MG_PARITY_CASES=5,0: $(cat sel.out sel.err)"
ran=$(grep -oE '^\[ RUN      \] [a-z_0-9]+' sel.out | awk '{print $NF}' | tr '\n' ' ')
[ "$ran" = "test_fire_masks test_case_5 test_case_0 " ] || fail "MG_PARITY_CASES=5,0 ran: $ran"

# The case count n from the full list: index n is one past the end, and n + 1
# indices are one too many.
n=$(MG_PARITY_LIST=1 "$PARITY" | grep -c '^test_case_')
[ "$n" -ge 16 ] || fail "MG_PARITY_LIST lists $n cases"
too_many=$(seq -s, 0 "$n")
for bad in "$n" -1 x "0,,1" "0," "1 " "$too_many" TF32 "tf32,1" fp16; do
    rc=0
    MG_PARITY_CASES="$bad" "$PARITY" >bad.out 2>bad.err || rc=$?
    [ "$rc" = 2 ] || fail "MG_PARITY_CASES='$bad': exit $rc, expected 2"
    [ "$(wc -l <bad.err)" = 1 ] || fail "MG_PARITY_CASES='$bad': not one line: $(cat bad.err)"
    grep -qF "MG_PARITY_CASES='$bad': want fp32, tf32, or at most $n comma-separated case indices in 0..$((n - 1))" bad.err ||
        fail "MG_PARITY_CASES='$bad': $(cat bad.err)"
    ! grep -q '^\[ RUN' bad.out || fail "MG_PARITY_CASES='$bad' ran tests"
done
echo "MG_PARITY_CASES: selection and refusals as expected"
