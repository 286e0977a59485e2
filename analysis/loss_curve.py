#!/usr/bin/env python3
"""Plot the training loss of a morphogen run file.

    loss_curve.py RUN.h5 --out loss.png [--smooth N]

Top panel: log10 of the batch loss per iteration (raw, light) and its running
mean over N iterations. Bottom panel: the learning rate (log scale), so that
drops in the loss can be matched with the schedule. The title names the run
file and the final loss."""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgfiles import MgError, open_run, read_metrics, run_main  # noqa: E402


def running_mean(values, n):
    """Trailing mean over the last n values (shorter at the start), so the curve
    starts at iteration 1 instead of being shifted by n/2."""
    import numpy as np
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - n, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def main():
    ap = argparse.ArgumentParser(description="Plot log10 loss and learning rate of a morphogen run.")
    ap.add_argument("run", metavar="RUN.h5")
    ap.add_argument("--out", required=True, metavar="PNG")
    ap.add_argument("--smooth", type=int, default=100, metavar="N",
                    help="running-mean window in iterations (default 100)")
    args = ap.parse_args()
    if args.smooth < 1:
        raise MgError("--smooth %d: must be at least 1" % args.smooth)

    with open_run(args.run) as f:
        m = read_metrics(f, args.run)
    it, loss = m["iteration"], m["loss"].astype(float)
    if len(it) == 0:
        raise MgError("%s: no iterations recorded yet, nothing to plot" % args.run)

    import numpy as np
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # log10 of a non-positive or non-finite loss is undefined; such rows are
    # dropped from the log plot rather than breaking the whole figure.
    finite = np.isfinite(loss) & (loss > 0)
    log_loss = np.full_like(loss, np.nan)
    log_loss[finite] = np.log10(loss[finite])
    smooth = running_mean(np.where(finite, log_loss, 0.0), args.smooth)
    counts = running_mean(finite.astype(float), args.smooth)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = np.where(counts > 0, smooth / counts, np.nan)

    has_lr = "lr" in m and len(m["lr"]) == len(it)
    fig, axes = plt.subplots(2 if has_lr else 1, 1, sharex=True, figsize=(8, 6 if has_lr else 4),
                             gridspec_kw={"height_ratios": [3, 1]} if has_lr else None,
                             squeeze=False)
    ax = axes[0][0]
    ax.plot(it, log_loss, color="tab:blue", alpha=0.25, linewidth=0.7, label="loss")
    ax.plot(it, smooth, color="tab:blue", linewidth=1.6,
            label="running mean (%d)" % args.smooth)
    ax.set_ylabel("log10 loss")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    final = loss[-1]
    final_text = ("%.4g" % final) if math.isfinite(final) else str(final)
    ax.set_title("%s: final loss %s at iteration %d"
                 % (os.path.basename(args.run), final_text, int(it[-1])))
    if has_lr:
        lax = axes[1][0]
        lr = m["lr"].astype(float)
        lax.plot(it, lr, color="tab:orange", linewidth=1.2)
        if np.all(lr > 0):
            lax.set_yscale("log")
        lax.set_ylabel("learning rate")
        lax.grid(True, alpha=0.3)
        lax.set_xlabel("iteration")
    else:
        ax.set_xlabel("iteration")
    fig.tight_layout()
    try:
        fig.savefig(args.out, dpi=100)
    except OSError as e:
        raise MgError("%s: cannot write (%s)" % (args.out, e.strerror or e))
    plt.close(fig)
    return 0


if __name__ == "__main__":
    run_main(main)
