#!/usr/bin/env bash
# The README's HDF5 tables describe the files morphogen actually writes, in
# both directions: the run file ("The run file"), a `grow` output and a
# `grad` output (their command sections). Every dataset of a fresh file has
# a row with its path and dtype, every attribute is named (a root attribute
# in a row of its own, any other in its object's row), and every object a
# table lists exists in the file. A dataset or attribute added, renamed or
# retyped without the README following fails.
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"

# Damage on, so that every recipe path has written what it writes.
"$MORPHOGEN" train "${TINY[@]}" --set train.damage=1 --out layout.h5 2>/dev/null
"$MORPHOGEN" grow layout.h5 --steps 4 --out grow.h5 --strip strip.png 2>/dev/null
"$MG_PYTHON" - <<'PY'
import h5py, numpy as np
s = np.random.default_rng(3).uniform(0.2, 1.0, (2, 20, 20, 8)).astype(np.float32)
with h5py.File("states.h5", "w") as f:
    f["states"] = s
PY
"$MORPHOGEN" grad layout.h5 --states states.h5 --steps 3 --out grad.h5 2>/dev/null

"$MG_PYTHON" - "$MG_SOURCE_DIR/README.md" <<'PY'
import re, sys
import h5py

text = open(sys.argv[1], encoding="utf-8").read()
problems = []


def section(start, end):
    """The README from the line starting with `start` to the next `end`."""
    at = text.index("\n" + start)
    return text[at:text.index(end, at + 1)]


def table(sec):
    """{object cell entry: row cells} of the section's table rows; a cell
    may name several objects ("`/grad/w1`, `/grad/b1`")."""
    rows = {}
    for r in sec.splitlines():
        if r.startswith("| `"):
            cells = [c.strip() for c in r.strip("|").split("|")]
            for name in re.split(r",\s*(?=`)", cells[0]):
                rows[name] = cells
    return rows


def generic(p):
    """Adam moments are documented once for every tensor."""
    return re.sub(r"^/checkpoint/(adam_m|adam_v)/[^/]+$", r"/checkpoint/\1/<tensor>", p)


def kind_of(obj):
    return "string" if h5py.check_string_dtype(obj.dtype) is not None else obj.dtype.name


def check(what, path, rows):
    seen = set()
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            p = generic("/" + name)
            seen.add(p)
            key = "`%s`" % p
            if isinstance(obj, h5py.Dataset):
                if key not in rows:
                    problems.append("%s: dataset %s has no row" % (what, p))
                    return
                if kind_of(obj) not in rows[key][1]:
                    problems.append("%s: %s is %s, the README says '%s'" % (what, p, kind_of(obj), rows[key][1]))
            elif key not in rows:
                if len(obj.attrs):  # a group needs a row of its own only to name its attributes
                    problems.append("%s: group %s has attributes but no row" % (what, p))
                return
            if p == "/config":
                return  # one attribute per config key, documented as `section.key` (below)
            for a in obj.attrs:
                if "`%s`" % a not in rows[key][3]:
                    problems.append("%s: attribute %s of %s is not named in its row" % (what, a, p))
        f.visititems(visit)
        for a in f.attrs:
            if "`/` attr `%s`" % a not in rows:
                problems.append("%s: root attribute %s has no row" % (what, a))
        for obj in rows:
            m = re.match(r"`/` attr `([^`]*)`$", obj)
            if m and m.group(1) not in f.attrs:
                problems.append("%s: the README lists root attribute %s, which the file does not have"
                                % (what, m.group(1)))
        if "config" in f:
            for a in f["config"].attrs:
                if "." not in a:
                    problems.append("%s: /config attribute %s is not a section.key" % (what, a))
    for obj in rows:
        m = re.match(r"`(/[^`]*)`", obj)
        if m and m.group(1) != "/" and m.group(1) not in seen:
            problems.append("%s: the README lists %s, which the file does not have" % (what, m.group(1)))
    return len(rows)


n = check("run file", "layout.h5", table(section("## The run file", "\n## ")))
n += check("grow output", "grow.h5", table(section("### `morphogen grow", "\n##")))
n += check("grad output", "grad.h5", table(section("### `morphogen grad", "\n##")))
if problems:
    print("README HDF5 tables out of date:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print("README HDF5 tables: %d objects match the run, grow and grad files" % n)
PY
