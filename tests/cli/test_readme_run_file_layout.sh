#!/usr/bin/env bash
# The README's run-file table ("The run file") describes the file morphogen
# actually writes, in both directions: every dataset of a fresh run file has
# a row with its path and dtype, every root and /checkpoint attribute is
# named, and every object the table lists exists in the file. A dataset or
# attribute added, renamed or retyped without the README following fails.
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"

# Damage on, so that every recipe path has written what it writes.
"$MORPHOGEN" train "${TINY[@]}" --set train.damage=1 --out layout.h5 2>/dev/null

"$MG_PYTHON" - "$MG_SOURCE_DIR/README.md" layout.h5 <<'PY'
import re, sys
import h5py

readme, path = sys.argv[1], sys.argv[2]
text = open(readme, encoding="utf-8").read()
section = text[text.index("\n## The run file"):]
section = section[:section.index("\n## ", 1)]
rows = [r for r in section.splitlines() if r.startswith("| `")]
# Row: | `OBJECT` [attr `NAME`] | KIND | SHAPE | MEANING |
documented = {}
for r in rows:
    cells = [c.strip() for c in r.strip("|").split("|")]
    documented[cells[0]] = cells
problems = []


def generic(p):
    """Adam moments are documented once for every tensor."""
    return re.sub(r"^/checkpoint/(adam_m|adam_v)/[^/]+$", r"/checkpoint/\1/<tensor>", p)


def kind_of(obj):
    if h5py.check_string_dtype(obj.dtype) is not None:
        return "string"
    return obj.dtype.name


seen = set()
with h5py.File(path, "r") as f:
    def visit(name, obj):
        p = generic("/" + name)
        seen.add(p)
        key = "`%s`" % p
        if isinstance(obj, h5py.Dataset):
            if key not in documented:
                problems.append("dataset %s has no row" % p)
                return
            if kind_of(obj) not in documented[key][1]:
                problems.append("%s is %s, the README says '%s'" % (p, kind_of(obj), documented[key][1]))
        elif key not in documented:
            if len(obj.attrs):  # a group needs a row of its own only to name its attributes
                problems.append("group %s has attributes but no row" % p)
            return
        if p == "/config":
            return  # one attribute per config key, documented as `section.key` (below)
        for a in obj.attrs:
            if "`%s`" % a not in documented[key][3]:
                problems.append("attribute %s of %s is not named in its row" % (a, p))
    f.visititems(visit)
    for a in f.attrs:
        if "`/` attr `%s`" % a not in documented:
            problems.append("root attribute %s has no row" % a)
    for a in f["config"].attrs:
        if "." not in a:
            problems.append("/config attribute %s is not a section.key" % a)
    for obj in documented:
        m = re.match(r"`(/[^`]*)`", obj)
        if m and m.group(1) != "/" and m.group(1) not in seen:
            problems.append("the README lists %s, which the file does not have" % m.group(1))
if problems:
    print("README run-file table out of date:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print("run-file layout: %d README rows match the file" % len(rows))
PY
