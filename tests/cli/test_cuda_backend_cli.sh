#!/usr/bin/env bash
# run.backend = cuda from the command line. Without a usable CUDA device (or
# in a build without CUDA) training is refused before any work with exactly
# one line that names the key, the reason and the alternative, exit status 1,
# and no run file. With a device, a tiny run trains to a finite loss.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rc=0
"$MORPHOGEN" train "${TINY[@]}" --set run.backend=cuda --out cuda.h5 >/dev/null 2>err.txt || rc=$?
if [ "$rc" -eq 0 ]; then
    echo "a CUDA device is present: checking that the cuda backend trains"
    loss=$(h5_eval cuda.h5 'float(f["metrics/loss"][-1])')
    "$MG_PYTHON" -c "import math,sys; sys.exit(0 if math.isfinite(float(sys.argv[1])) else 1)" "$loss" \
        || fail "cuda backend: final loss $loss is not finite"
    exit 0
fi
[ "$rc" -eq 1 ] || fail "train with run.backend=cuda exited $rc, expected 1 (no device) or 0; stderr: $(cat err.txt)"
expect_one_line err.txt "run.backend" "'cuda'" "cpu"
[ ! -e cuda.h5 ] || fail "a run file was written although the backend could not start"
echo "no usable CUDA device here, refused as expected: $(cat err.txt)"

# The same from a config file.
printf '[run]\nbackend = cuda\n' > cuda.ini
run_status 1 err2.txt "$MORPHOGEN" train cuda.ini "${TINY[@]}" --out cuda2.h5
expect_one_line err2.txt "run.backend" "'cuda'"
[ ! -e cuda2.h5 ] || fail "a run file was written although the backend could not start"
