#!/usr/bin/env bash
# MG_PARITY_CASES (the device check runs small parity cases under
# compute-sanitizer with it), against the emulated parity test: a selection
# runs the fire-mask test and exactly the cases named; anything malformed is
# refused with one line and exit 2 before any test runs.
set -euo pipefail
: "${PARITY:?PARITY must name the parity test executable}"
fail() { echo "FAIL: $*" >&2; exit 1; }

MG_PARITY_CASES=5,0 "$PARITY" >sel.out 2>sel.err || fail "MG_PARITY_CASES=5,0: $(cat sel.out sel.err)"
ran=$(grep -oE '^\[ RUN      \] [a-z_0-9]+' sel.out | awk '{print $NF}' | tr '\n' ' ')
[ "$ran" = "test_fire_masks test_case_5 test_case_0 " ] || fail "MG_PARITY_CASES=5,0 ran: $ran"

for bad in 14 -1 x "0,,1" "0," "1 " "0,1,2,3,4,5,6,7,8,9,10,11,12,13,0"; do
    rc=0
    MG_PARITY_CASES="$bad" "$PARITY" >bad.out 2>bad.err || rc=$?
    [ "$rc" = 2 ] || fail "MG_PARITY_CASES='$bad': exit $rc, expected 2"
    [ "$(wc -l <bad.err)" = 1 ] || fail "MG_PARITY_CASES='$bad': not one line: $(cat bad.err)"
    grep -qF "MG_PARITY_CASES='$bad': want at most 14 comma-separated case indices in 0..13" bad.err ||
        fail "MG_PARITY_CASES='$bad': $(cat bad.err)"
    ! grep -q '^\[ RUN' bad.out || fail "MG_PARITY_CASES='$bad' ran tests"
done
echo "MG_PARITY_CASES: selection and refusals as expected"
