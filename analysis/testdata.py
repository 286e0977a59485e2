#!/usr/bin/env python3
"""Synthetic files in exactly the layouts morphogen writes, for testing the
analysis tools without the trainer:

    testdata.py run RUN.h5 [--height H --width W --channels C --hidden N
                            --iterations I --pool P --targets T --seed S]
    testdata.py grow GROW.h5 --run RUN.h5 --steps 0,4,8,... [--channels C]
    testdata.py states STATES.h5 --run RUN.h5 --batch B [--seed S]
    testdata.py grad RUN.h5 STATES.h5 GRAD.h5 --steps N [--set k=v]
    testdata.py perturb GRAD.h5 BAD.h5 DATASET

`grad` fakes a `morphogen grad` output by running nca_torch in float32 (the
precision morphogen uses); `perturb` copies it, adding 1% of DATASET's max
|value| to its largest entry, which check-grad must reject. Layouts: see
include/morphogen/runfile.h and the README."""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgfiles import parse_set, run_main  # noqa: E402


def _h5py():
    import h5py
    return h5py


def str_dtype():
    return _h5py().string_dtype("utf-8")


def make_target(h, w, k):
    """A soft premultiplied disc, different per target index k."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    alpha = np.clip((min(h, w) / 3 - r) / 2, 0, 1)
    colour = np.array([[0.9, 0.3, 0.1], [0.1, 0.6, 0.9], [0.3, 0.8, 0.2]])[k % 3]
    out = np.zeros((h, w, 4), np.float32)
    out[..., :3] = alpha[..., None] * colour
    out[..., 3] = alpha
    return out


def seed_state(h, w, c):
    s = np.zeros((h, w, c), np.float32)
    s[h // 2, w // 2, 3:] = 1.0
    return s


def write_run(args):
    h5py = _h5py()
    rng = np.random.default_rng(args.seed)
    h, w, c, hid = args.height, args.width, args.channels, args.hidden
    config = {
        "model.channels": np.int64(c), "model.hidden": np.int64(hid),
        "model.fire_rate": np.float64(0.5), "model.alive_threshold": np.float64(0.1),
        "target.spec": "emoji:\U0001F98E", "target.size": np.int64(max(h, w) - 4),
        "target.padding": np.int64(2),
        "seed.seed_x": np.int64(-1), "seed.seed_y": np.int64(-1), "seed.pin_seed": np.int64(0),
        "train.seed": np.int64(args.seed), "train.iterations": np.int64(args.iterations),
        "train.pool_size": np.int64(args.pool), "train.batch": np.int64(min(2, args.pool)),
        "train.steps_min": np.int64(4), "train.steps_max": np.int64(8),
        "train.lr": np.float64(2e-3), "train.lr_steps": "20", "train.lr_factor": np.float64(0.1),
    }
    sections = {}
    for k, v in config.items():
        sec, key = k.split(".", 1)
        sections.setdefault(sec, []).append("%s = %s" % (key, v))
    ini = "".join("[%s]\n%s\n\n" % (s, "\n".join(lines)) for s, lines in sections.items())

    n = args.iterations
    it = np.arange(1, n + 1, dtype=np.int64)
    loss = (0.05 * np.exp(-it / 15.0) + 1e-4) * np.exp(0.2 * rng.standard_normal(n))
    lr = np.where(it < 20, 2e-3, 2e-4)
    with h5py.File(args.out, "w") as f:
        f.attrs["format"] = "morphogen-run"
        f.attrs["layout_version"] = np.int32(1)
        f.attrs["morphogen_version"] = "0.1.0"
        cd = f.create_dataset("config", data=ini, dtype=str_dtype())
        for k, v in config.items():
            cd.attrs[k] = v
        f.create_dataset("config_source", data="[model]\nchannels = %d\n" % c, dtype=str_dtype())
        f.create_dataset("targets", data=np.stack([make_target(h, w, k) for k in range(args.targets)]))
        g = f.create_group("metrics")
        for name, data in (("iteration", it), ("loss", loss), ("lr", lr),
                           ("wall_time", it * 0.01), ("cell_steps_per_s", np.full(n, 1e6))):
            g.create_dataset(name, data=data, maxshape=(None,), chunks=True)
        gn = g.create_dataset("grad_norm", data=np.abs(rng.standard_normal((n, 3))),
                              maxshape=(None, 3), chunks=True)
        gn.attrs["tensor_names"] = "w1,b1,w2"
        ck = f.create_group("checkpoint")
        ck.attrs["iteration"] = np.int64(n)
        ck.attrs["rng_seed"] = np.uint64(args.seed)
        ck.attrs["adam_step"] = np.int64(n)
        ck.attrs["wall_time"] = np.float64(n * 0.01)
        # Small random weights (w2 non-zero, unlike a fresh run) so that a
        # rollout actually changes the state and gradients are non-trivial.
        params = {"w1": 0.2 * rng.standard_normal((3 * c, hid)),
                  "b1": 0.05 * rng.standard_normal(hid),
                  "w2": 0.05 * rng.standard_normal((hid, c))}
        for group in ("params", "adam_m", "adam_v"):
            pg = ck.create_group(group)
            for k, v in params.items():
                pg.create_dataset(k, data=(v if group == "params" else np.abs(v) * 1e-3).astype(np.float32))
        pool = np.stack([seed_state(h, w, c)] * args.pool)
        pl = np.full(args.pool, np.nan, np.float32)
        pl[0] = 0.01
        pg = ck.create_group("pool")
        pg.create_dataset("states", data=pool)
        pg.create_dataset("loss", data=pl)
        pg.create_dataset("target", data=np.arange(args.pool, dtype=np.int32) % args.targets)
    return 0


def write_grow(args):
    h5py = _h5py()
    steps = np.array([int(s) for s in args.steps.split(",")], dtype=np.int32)
    with h5py.File(args.run, "r") as r:
        target = np.asarray(r["targets"][0])
        c = int(r["checkpoint/params/w2"].shape[1])
        iteration = int(r["checkpoint"].attrs["iteration"])
    h, w = target.shape[:2]
    frames = np.zeros((len(steps), h, w, c), np.float32)
    last = max(int(steps.max()), 1)
    for i, s in enumerate(steps):
        # Fade from the seed into the target: frame 0 is the seed.
        t = s / last
        frames[i] = (1 - t) * seed_state(h, w, c)
        frames[i, ..., :4] += t * target
    with h5py.File(args.out, "w") as f:
        f.create_dataset("frames", data=frames)
        f.create_dataset("steps", data=steps)
        f.attrs["run"] = args.run
        f.attrs["iteration"] = np.int64(iteration)
    return 0


def write_states(args):
    h5py = _h5py()
    rng = np.random.default_rng(args.seed)
    with h5py.File(args.run, "r") as r:
        n_targets, h, w = r["targets"].shape[:3]
        c = int(r["checkpoint/params/w2"].shape[1])
    states = np.zeros((args.batch, h, w, c), np.float32)
    # A living blob around the centre plus the seed; alphas well above the
    # alive threshold so float32/float64 differences cannot flip a mask.
    y0, x0 = h // 2 - 2, w // 2 - 2
    states[:, y0:y0 + 5, x0:x0 + 5, :] = rng.uniform(0.4, 1.0, (args.batch, 5, 5, c))
    with h5py.File(args.out, "w") as f:
        f.create_dataset("states", data=states)
        f.create_dataset("target_index", data=np.arange(args.batch, dtype=np.int32) % n_targets)
    return 0


def write_grad(args):
    """Fake `morphogen grad` with the torch model in float32."""
    import torch
    import nca_torch as nt
    h5py = _h5py()
    cfg = parse_set(args.set)
    with h5py.File(args.run, "r") as r:
        targets = np.asarray(r["targets"][()])
        p = {k: torch.tensor(np.asarray(r["checkpoint/params/" + k][()]), requires_grad=True)
             for k in ("w1", "b1", "w2")}
        seed = int(r["checkpoint"].attrs["rng_seed"])
        fire_rate = cfg.get("model.fire_rate", float(r["config"].attrs["model.fire_rate"]))
        thr = float(r["config"].attrs["model.alive_threshold"])
    with h5py.File(args.states, "r") as s:
        states = np.asarray(s["states"][()])
        tindex = np.asarray(s["target_index"][()]) if "target_index" in s else np.zeros(len(states), int)
    s0 = torch.tensor(states, requires_grad=True)
    final = nt.rollout(s0, p["w1"], p["b1"], p["w2"], args.steps, fire_rate=fire_rate,
                       alive_threshold=thr, seed=seed)
    per = nt.loss_per_sample(final, torch.tensor(targets[tindex]))
    total = per.mean()
    total.backward()
    out = {"loss": np.float64(total.item()), "loss_per_sample": per.detach().numpy().astype(np.float64),
           "final_states": final.detach().numpy(), "grad/w1": p["w1"].grad.numpy(),
           "grad/b1": p["b1"].grad.numpy(), "grad/w2": p["w2"].grad.numpy(),
           "grad/states": s0.grad.numpy()}
    with h5py.File(args.out, "w") as f:
        for k, v in out.items():
            f.create_dataset(k, data=v)
    return 0


def write_perturbed(args):
    h5py = _h5py()
    with h5py.File(args.grad, "r") as src, h5py.File(args.out, "w") as dst:
        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = np.array(obj[()])
                if name == args.dataset:
                    flat = a.reshape(-1)
                    flat[int(np.argmax(np.abs(flat)))] += 0.01 * max(float(np.max(np.abs(flat))), 1e-3)
                    a = flat.reshape(a.shape)
                dst.create_dataset(name, data=a)
        src.visititems(copy)
        if args.dataset not in dst:
            raise SystemExit("%s: no dataset %s" % (args.grad, args.dataset))
    return 0


def main():
    ap = argparse.ArgumentParser(description="Synthetic morphogen files for tests.")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("out")
    r.add_argument("--height", type=int, default=12)
    r.add_argument("--width", type=int, default=10)
    r.add_argument("--channels", type=int, default=8)
    r.add_argument("--hidden", type=int, default=6)
    r.add_argument("--iterations", type=int, default=50)
    r.add_argument("--pool", type=int, default=4)
    r.add_argument("--targets", type=int, default=1)
    r.add_argument("--seed", type=int, default=5)
    g = sub.add_parser("grow")
    g.add_argument("out")
    g.add_argument("--run", required=True)
    g.add_argument("--steps", default="0,4,8,12,16,20,24,28,32,36,40")
    s = sub.add_parser("states")
    s.add_argument("out")
    s.add_argument("--run", required=True)
    s.add_argument("--batch", type=int, default=2)
    s.add_argument("--seed", type=int, default=3)
    d = sub.add_parser("grad")
    d.add_argument("run")
    d.add_argument("states")
    d.add_argument("out")
    d.add_argument("--steps", type=int, required=True)
    d.add_argument("--set", action="append", default=[])
    q = sub.add_parser("perturb")
    q.add_argument("grad")
    q.add_argument("out")
    q.add_argument("dataset")
    args = ap.parse_args()
    return {"run": write_run, "grow": write_grow, "states": write_states,
            "grad": write_grad, "perturb": write_perturbed}[args.command](args)


if __name__ == "__main__":
    run_main(main)
