#!/usr/bin/env python3
"""Sum Nsight Compute's kernel durations per kernel.

Reads what `ncu --metrics gpu__time_duration.sum --print-units base --csv
--page raw PROGRAM` printed (ncu's own `==PROF==` lines and the program's
output may be mixed in; only the CSV rows count) and prints one line:

    TOTAL ms in N launches; NAME SHARE% (LAUNCHES x MEAN us), ...

the kernels by total time, largest first (the device check puts this line in
its table). --table FILE also writes every kernel as a Markdown table.

Exit status 1 with one line on stderr when the file is missing or holds no
kernel rows with durations.
"""
import argparse
import csv
import sys

METRIC = "gpu__time_duration.sum"


def fail(msg):
    print("kernel_times: " + msg, file=sys.stderr)
    sys.exit(1)


def kernel_name(full):
    """The kernel's name without its return type and parameter list."""
    name = full.strip()
    if name.endswith(")"):  # cut the last bracketed group, which may hold brackets itself
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                name = name[:i].rstrip()
                break
    return name[5:] if name.startswith("void ") else name


def read_durations(path):
    """[(kernel name, duration in ns)] in launch order."""
    try:
        with open(path, newline="", errors="replace") as f:
            lines = [line for line in f if line.startswith('"')]
    except OSError as e:
        fail("%s: %s" % (path, e.strerror))
    rows = list(csv.reader(lines))
    header = next((i for i, r in enumerate(rows) if "Kernel Name" in r and METRIC in r), None)
    if header is None:
        fail("%s: no ncu CSV header with 'Kernel Name' and %s (was ncu run with --csv --page raw?)" % (path, METRIC))
    name_col, time_col = rows[header].index("Kernel Name"), rows[header].index(METRIC)
    out = []
    for r in rows[header + 1:]:
        if len(r) <= max(name_col, time_col) or not r[name_col]:
            continue  # the units row, or a short line
        value = r[time_col].replace(",", "")
        try:
            ns = float(value)
        except ValueError:
            fail("%s: kernel %s: duration '%s' is not a number" % (path, kernel_name(r[name_col]), r[time_col]))
        out.append((kernel_name(r[name_col]), ns))
    if not out:
        fail("%s: no kernel rows with a %s value" % (path, METRIC))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", help="ncu's CSV output")
    ap.add_argument("--table", help="also write every kernel as a Markdown table to this file")
    ap.add_argument("--top", type=int, default=4, help="kernels named in the line (default 4)")
    a = ap.parse_args()

    durations = read_durations(a.csv)
    per_kernel = {}
    for name, ns in durations:
        n, total = per_kernel.get(name, (0, 0.0))
        per_kernel[name] = (n + 1, total + ns)
    total = sum(ns for _, ns in durations)
    ranked = sorted(per_kernel.items(), key=lambda kv: -kv[1][1])
    share = lambda t: 100.0 * t / total if total > 0 else 0.0
    top = ", ".join("%s %.0f%% (%d x %.1f us)" % (name, share(t), n, t / n / 1e3)
                    for name, (n, t) in ranked[:max(a.top, 0)])
    print("%.3f ms in %d launches; %s" % (total / 1e6, len(durations), top))
    if a.table:
        try:
            with open(a.table, "w") as f:
                f.write("| kernel | launches | total ms | mean us | share |\n|---|---|---|---|---|\n")
                for name, (n, t) in ranked:
                    f.write("| %s | %d | %.3f | %.2f | %.1f%% |\n" % (name, n, t / 1e6, t / n / 1e3, share(t)))
        except OSError as e:
            fail("%s: %s" % (a.table, e.strerror))


if __name__ == "__main__":
    main()
