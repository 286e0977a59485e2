#!/usr/bin/env python3
"""Print a short summary of a morphogen run file.

    run_info.py RUN.h5 [--config]

Shows the grid, model size, iterations completed, recent loss, pool size and
the main training settings; --config also prints the full resolved config."""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgfiles import (attr_scalar, attr_str, config_text, open_run,  # noqa: E402
                     read_metrics, run_config, run_main)


def fmt_seconds(s):
    s = int(round(s))
    return "%dh%02dm%02ds" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else \
           "%dm%02ds" % (s // 60, s % 60)


def main():
    ap = argparse.ArgumentParser(description="Summarise a morphogen run file.")
    ap.add_argument("run", metavar="RUN.h5")
    ap.add_argument("--config", action="store_true", help="also print the full resolved config")
    args = ap.parse_args()

    import numpy as np
    with open_run(args.run) as f:
        cfg = run_config(f)
        text = config_text(f)
        metrics = read_metrics(f, args.run)
        version = attr_str(f.attrs.get("morphogen_version", "?"))
        targets = f["targets"].shape if "targets" in f else None
        ck = f["checkpoint"] if "checkpoint" in f else None
        ck_attrs = {k: attr_scalar(v) for k, v in ck.attrs.items()} if ck is not None else {}
        pool_shape = ck["pool/states"].shape if ck is not None and "pool/states" in ck else None
        pool_loss = np.asarray(ck["pool/loss"][()]) if ck is not None and "pool/loss" in ck else None
        n_params = 0
        if ck is not None and "params" in ck:
            n_params = sum(int(np.prod(ck["params"][k].shape)) for k in ck["params"])

    def c(key, default="?"):
        return cfg.get(key, default)

    print("run file     %s (written by morphogen %s)" % (args.run, version))
    if targets is not None:
        print("grid         %d x %d, %d target(s): %s" % (targets[1], targets[2], targets[0], c("target.spec")))
    print("model        %s channels, %s hidden units, fire_rate %s, alive_threshold %s, %d parameters"
          % (c("model.channels"), c("model.hidden"), c("model.fire_rate"),
             c("model.alive_threshold"), n_params))
    print("training     batch %s, steps %s..%s, lr %s, seed %s"
          % (c("train.batch"), c("train.steps_min"), c("train.steps_max"), c("train.lr"),
             ck_attrs.get("rng_seed", c("train.seed"))))
    done = ck_attrs.get("iteration", "?")
    line = "progress     %s of %s iterations in checkpoint" % (done, c("train.iterations"))
    if "wall_time" in ck_attrs:
        line += ", %s wall time" % fmt_seconds(float(ck_attrs["wall_time"]))
    print(line)
    loss = metrics["loss"]
    if len(loss):
        tail = loss[-min(len(loss), 100):]
        tail = tail[np.isfinite(tail)]
        mean = float(np.mean(tail)) if len(tail) else math.nan
        print("loss         final %.6g (iteration %d), mean of last %d: %.6g, best %.6g"
              % (loss[-1], int(metrics["iteration"][-1]), min(len(loss), 100), mean,
                 float(np.nanmin(loss))))
    else:
        print("loss         no iterations recorded yet")
    if pool_shape is not None:
        evaluated = int(np.sum(np.isfinite(pool_loss))) if pool_loss is not None else 0
        print("pool         %d samples of %d x %d x %d, %d evaluated"
              % (pool_shape[0], pool_shape[1], pool_shape[2], pool_shape[3], evaluated))
    if args.config:
        print()
        print(text.rstrip("\n"))
    return 0


if __name__ == "__main__":
    try:
        run_main(main)
    except KeyError as e:  # a dataset the layout promises is missing
        print("%s: damaged run file (%s)" % (sys.argv[1] if len(sys.argv) > 1 else "?", e),
              file=sys.stderr)
        sys.exit(1)
