# Shared helpers for the tests/cli/test_*.sh scripts; sourced, never run on
# its own (hence not named test_*). Sourcing it checks the environment ctest
# provides, creates $MG_WORK and changes into it.

: "${MORPHOGEN:?MORPHOGEN must name the morphogen executable}"
: "${MG_SOURCE_DIR:?MG_SOURCE_DIR must name the repository root}"
: "${MG_WORK:?MG_WORK must name a scratch folder}"
: "${MG_PYTHON:=/usr/bin/python3}"
mkdir -p "$MG_WORK"
cd "$MG_WORK"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# A config that trains in a fraction of a second: 20x20 grid, 8 channels,
# 32 hidden units, 10 iterations, a checkpoint every 5.
TINY=(--set target.size=12 --set target.padding=4 --set train.pool_size=16 --set train.batch=4
      --set train.steps_min=8 --set train.steps_max=12 --set model.hidden=32 --set model.channels=8
      --set train.iterations=10 --set run.checkpoint_every=5)

# A still smaller model (4x4 grid, one CA step per iteration, ~10k
# iterations per second), for runs that need many iterations so that the
# metrics datasets grow past one 1024-row chunk.
MICRO=(--set target.size=4 --set target.padding=0 --set train.pool_size=4 --set train.batch=1
       --set train.steps_min=1 --set train.steps_max=1 --set model.hidden=4 --set model.channels=4
       --set run.log_every=1000000)

# run_status WANT ERRFILE CMD...: runs CMD with stdout discarded and stderr
# in ERRFILE, and fails unless it exits with status WANT.
run_status() {
    local want=$1 errfile=$2
    shift 2
    local rc=0
    "$@" >/dev/null 2>"$errfile" || rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want; stderr: $(cat "$errfile")"
}

# expect_one_line ERRFILE NEEDLE...: ERRFILE holds exactly one line, and it
# contains every NEEDLE (fixed strings). For errors found before any work
# starts, where nothing but the error may be printed.
expect_one_line() {
    local errfile=$1
    shift
    local lines
    lines=$(wc -l < "$errfile")
    [ "$lines" -eq 1 ] || fail "$lines lines on stderr, expected exactly one: $(cat "$errfile")"
    local needle
    for needle in "$@"; do
        grep -qF -- "$needle" "$errfile" || fail "stderr lacks '$needle': $(cat "$errfile")"
    done
}

# expect_error_line ERRFILE NEEDLE...: like expect_one_line, but for errors
# that stop a run which had already started: the banner train prints when it
# starts ("morphogen: training/resuming ...") and progress lines ("iter ...")
# may precede the one error line.
expect_error_line() {
    local errfile=$1
    shift
    grep -vE '^(morphogen: (training|resuming) |iter [0-9]+/)' "$errfile" > "$errfile.error" || true
    local lines
    lines=$(wc -l < "$errfile.error")
    [ "$lines" -eq 1 ] || fail "$lines error lines on stderr, expected exactly one: $(cat "$errfile")"
    local needle
    for needle in "$@"; do
        grep -qF -- "$needle" "$errfile.error" || fail "error line lacks '$needle': $(cat "$errfile.error")"
    done
}

# h5_same A B OBJECT...: every dataset at or under each OBJECT (a dataset or
# a group, searched recursively) is bitwise identical in the two files (same
# dtype, shape and bytes, so NaNs compare equal), and so are the attributes
# of every object there except wall_time (seconds legitimately differ).
h5_same() {
    "$MG_PYTHON" - same "$@" <<'PY' || fail "$1 and $2 differ (see above)"
import sys
import h5py
import numpy as np

mode, path_a, path_b, *objects = sys.argv[1:]

def collect(f, name):
    """{path: (kind, value)} for the object and, for a group, everything under it."""
    out = {}
    def add(path, obj):
        attrs = {k: np.asarray(v) for k, v in obj.attrs.items() if k != "wall_time"}
        if isinstance(obj, h5py.Dataset):
            out[path] = ("dataset", np.asarray(obj[()]), attrs)
        else:
            out[path] = ("group", None, attrs)
    root = f[name]
    add(name, root)
    if isinstance(root, h5py.Group):
        root.visititems(lambda n, o: add(name + "/" + n, o))
    return out

def same_array(x, y):
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    if x.dtype.kind == "O":  # variable-length strings: compare the values, not the pointers
        return x.tolist() == y.tolist()
    return x.tobytes() == y.tobytes()

differences = []
with h5py.File(path_a, "r") as a, h5py.File(path_b, "r") as b:
    for name in objects:
        ca, cb = collect(a, name), collect(b, name)
        if sorted(ca) != sorted(cb):
            differences.append(f"{name}: different members {sorted(ca)} vs {sorted(cb)}")
            continue
        for path in sorted(ca):
            kind, va, attrs_a = ca[path]
            _, vb, attrs_b = cb[path]
            if kind == "dataset" and not same_array(va, vb):
                differences.append(f"{path}: values differ")
            if sorted(attrs_a) != sorted(attrs_b):
                differences.append(f"{path}: different attributes")
            else:
                for k in attrs_a:
                    if not same_array(attrs_a[k], attrs_b[k]):
                        differences.append(f"{path}: attribute {k} differs ({attrs_a[k]} vs {attrs_b[k]})")
for d in differences:
    print(d, file=sys.stderr)
sys.exit(1 if differences else 0)
PY
}

# h5_differ A B DATASET: the dataset's values are not bitwise identical.
h5_differ() {
    "$MG_PYTHON" - "$@" <<'PY' || fail "$3 is identical in $1 and $2"
import sys
import h5py
a, b, name = sys.argv[1:]
with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
    sys.exit(1 if fa[name][()].tobytes() == fb[name][()].tobytes() else 0)
PY
}

# h5_eval FILE EXPR: prints the Python expression EXPR evaluated with `f`
# the open file and `np` numpy.
h5_eval() {
    "$MG_PYTHON" - "$@" <<'PY'
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as f:
    print(eval(sys.argv[2]))
PY
}

# wait_for_progress ERRFILE PID N: waits (at most 120 s: the sanitizer build
# on a loaded 2-core machine is slow to start MPI jobs) until process PID has
# logged progress line "iter N/..." or later in ERRFILE; fails if PID exits
# first. Needs run.log_every=1.
wait_for_progress() {
    local errfile=$1 pid=$2 n=$3 tries=0
    while true; do
        local last
        last=$(grep -oE '^iter [0-9]+/' "$errfile" 2>/dev/null | tail -n 1 | tr -dc '0-9' || true)
        if [ -n "$last" ] && [ "$last" -ge "$n" ]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || fail "process $pid exited before iteration $n: $(cat "$errfile")"
        tries=$((tries + 1))
        [ "$tries" -lt 1200 ] || fail "process $pid did not reach iteration $n within 120 s"
        sleep 0.1
    done
}
