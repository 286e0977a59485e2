#!/usr/bin/env python3
"""morphogen's training iteration in eager PyTorch (float32, CPU), for a
side-by-side speed benchmark (jobs/bench_cpu.sh). Not a checker: it computes
every cell of every sample densely, as a PyTorch user would write it, while
morphogen skips cells that neither fire nor live.

    bench_torch.py RUN.h5 --iterations N [--threads T] [--warmup W] [--verbose]
        [--philox-fire] [--dense onednn|native] [--device cpu|cuda] [--compile]

Starts from a morphogen run file: config, targets, weights, Adam moments and
step, and the sample pool of its last checkpoint, so both implementations
train from the same grown organisms. Runs W untimed warm-up iterations, then
N timed ones (the iterations that follow the checkpoint, numbered as morphogen
numbers them), and prints one line:

    torch: s_per_iter=X cell_steps_per_s=Y peak_rss_mib=Z

The recipe is morphogen's (src/train.c, src/pool.c, src/optimizer.c): batch
position j draws from pool slice [j*P/B, (j+1)*P/B); the batch is ranked by
its loss before the rollout, the `replace_worst` highest are reseeded and the
`damage` lowest damaged by a disc; rollout length in [steps_min, steps_max];
per step perception (identity, Sobel x, Sobel y), dense 3C->H + bias, ReLU,
dense H->C, fire mask, alive masking before and after; loss = mean squared
RGBA error per sample, batch mean; exact BPTT (autograd); per-tensor gradient
normalisation g/(|g|+1e-8); Adam (AdamW when weight_decay > 0) with the
step-wise lr schedule; final states back into the pool. Batch selection,
rollout lengths and damage discs use morphogen's Philox counters (a handful
of draws per iteration), so both programs train the same pool samples for the
same number of steps in the same iteration. Fire masks come from torch.rand
(one call per step; Philox per cell in numpy would dominate the time) unless
--philox-fire asks for morphogen's exact masks (for correctness checks: then
the first iteration's loss equals morphogen's up to float32 rounding).

Speed note: Debian's python3-torch links the reference (netlib) BLAS, so a
1x1 convolution that takes PyTorch's im2col+GEMM path is several times
slower than the oneDNN path. PyTorch 1.13 picks oneDNN when the batch has at
least 16 images or more than one thread is used; `--dense onednn` (default)
therefore applies the per-cell dense layers to the batch viewed as B*H images
of one row each (channels-last memory, so this is a view, and a per-cell layer
cannot tell the difference). `--dense native` uses the plain layout.

GPU (jobs/device_check.sh): `--device cuda` keeps the pool, weights and
every step on the GPU, synchronises before reading the clock, and adds
`peak_gpu_mib=` (torch.cuda.max_memory_allocated) to the line; `--compile`
runs the CA step through torch.compile. The CPU path and its output are
unchanged by these options' defaults."""

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgfiles import MgError, attr_scalar, attr_str, dataset, open_run, run_config, run_main  # noqa: E402
from nca_torch import SOBEL_X, SOBEL_Y, fire_masks, fire_threshold, philox4x32, seed_key  # noqa: E402

# Purpose codes of include/morphogen/rng.h.
RNG_BATCH = 2
RNG_STEPS = 3
RNG_DAMAGE = 4


def rng_u32(seed, purpose, iteration, sample, step, cell):
    """mg_rng_u32: first Philox word of (cell, step | purpose << 24, sample, iteration)."""
    return int(philox4x32(seed_key(seed), cell, (step & 0xFFFFFF) | (purpose << 24),
                          sample, iteration & 0xFFFFFFFF)[0])


def rng_uniform(seed, purpose, iteration, sample, step, cell):
    return (rng_u32(seed, purpose, iteration, sample, step, cell) >> 8) * 2.0 ** -24


def below(bits, n):
    """Uniform integer in [0, n) from 32 bits, multiply-shift as src/pool.c."""
    return (bits * n) >> 32


class Recipe:
    """The config keys the training iteration needs, from /config's attributes."""

    def __init__(self, cfg, path):
        def get(key):
            if key not in cfg:
                raise MgError("%s: /config has no attribute %s" % (path, key))
            return cfg[key]
        self.channels = int(get("model.channels"))
        self.hidden = int(get("model.hidden"))
        self.fire_rate = float(get("model.fire_rate"))
        self.alive_threshold = float(get("model.alive_threshold"))
        self.seed_x = int(get("seed.x"))
        self.seed_y = int(get("seed.y"))
        self.pin = bool(int(get("seed.pin")))
        self.seed = int(get("train.seed"))
        self.pool_size = int(get("train.pool_size"))
        self.batch = int(get("train.batch"))
        self.replace_worst = int(get("train.replace_worst"))
        self.damage = int(get("train.damage"))
        self.damage_radius_min = float(get("train.damage_radius_min"))
        self.damage_radius_max = float(get("train.damage_radius_max"))
        self.steps_min = int(get("train.steps_min"))
        self.steps_max = int(get("train.steps_max"))
        self.lr = float(get("train.lr"))
        text = attr_str(get("train.lr_steps")).strip()
        self.lr_steps = [int(v) for v in text.split(",") if v.strip()]
        self.lr_factor = float(get("train.lr_factor"))
        self.beta1 = float(get("train.beta1"))
        self.beta2 = float(get("train.beta2"))
        self.adam_eps = float(get("train.adam_eps"))
        self.weight_decay = float(get("train.weight_decay"))
        self.grad_normalize = bool(int(get("train.grad_normalize")))

    def lr_at(self, iteration):
        """mg_lr_at: lr times lr_factor for every lr_steps entry already passed."""
        lr = self.lr
        for s in self.lr_steps:
            if iteration > s:
                lr *= self.lr_factor
        return lr

    def select(self, iteration):
        """mg_pool_select: batch position j draws from pool slice j."""
        out = []
        for j in range(self.batch):
            lo = j * self.pool_size // self.batch
            hi = (j + 1) * self.pool_size // self.batch
            out.append(lo + below(rng_u32(self.seed, RNG_BATCH, iteration, 0, 0, j), hi - lo))
        return out

    def rollout_steps(self, iteration):
        span = self.steps_max - self.steps_min + 1
        return self.steps_min + below(rng_u32(self.seed, RNG_STEPS, iteration, 0, 0, 0), span)

    def damage_disc(self, iteration, pool_index):
        """mg_damage's disc: centre in [-0.5, 0.5)^2, radius in [min, max), in
        normalised coordinates (linspace(-1, 1) along each axis)."""
        u = [rng_uniform(self.seed, RNG_DAMAGE, iteration, pool_index, 0, k) for k in range(3)]
        r = self.damage_radius_min + (self.damage_radius_max - self.damage_radius_min) * u[2]
        return u[0] - 0.5, u[1] - 0.5, r


class Model:
    """The NCA update in channels-first logical layout [B][C][H][W] with
    channels-last memory. Perception is one depthwise conv producing, per
    channel c, (Sx*s_c, Sy*s_c) interleaved; w1's rows are permuted once at load
    to that order (a fixed permutation changes neither the per-tensor gradient
    norm nor Adam, which is element-wise)."""

    def __init__(self, torch, rec, w1, b1, w2, dense, device="cpu"):
        import torch.nn.functional as F
        self.torch, self.F, self.rec, self.dense, self.device = torch, F, rec, dense, device
        c = rec.channels
        self.perm = np.concatenate([np.arange(c), np.stack([c + np.arange(c), 2 * c + np.arange(c)], 1).ravel()])
        self.w1 = torch.tensor(np.ascontiguousarray(w1[self.perm].T), dtype=torch.float32, device=device,
                               requires_grad=True)                       # [H][3C]
        self.b1 = torch.tensor(b1, dtype=torch.float32, device=device, requires_grad=True)  # [H]
        self.w2 = torch.tensor(np.ascontiguousarray(w2.T), dtype=torch.float32, device=device,
                               requires_grad=True)                       # [C][H]
        k = np.stack([SOBEL_X, SOBEL_Y])[None].repeat(c, 0).reshape(2 * c, 1, 3, 3)
        self.sobel = torch.tensor(k, dtype=torch.float32, device=device)

    def params(self):
        return [self.w1, self.b1, self.w2]

    def to_torch_layout(self, name, a):
        """A morphogen-layout tensor (parameter or Adam moment) in this model's layout."""
        if name == "w1":
            a = a[self.perm].T
        elif name == "w2":
            a = a.T
        return self.torch.tensor(np.ascontiguousarray(a), dtype=self.torch.float32, device=self.device)

    def alive(self, s):
        """max alpha over the 3x3 neighbourhood > threshold; max_pool2d pads with
        -inf, so outside the grid is dead. A constant for autograd."""
        a = s.detach()[:, 3:4]
        return self.F.max_pool2d(a, 3, stride=1, padding=1) > self.rec.alive_threshold

    def update(self, p):
        """The per-cell MLP on perception p [B][3C][H][W]: relu(w1 p + b1), then w2."""
        F, w1, w2 = self.F, self.w1[:, :, None, None], self.w2[:, :, None, None]
        if self.dense == "native":
            return F.conv2d(F.conv2d(p, w1, self.b1).relu_(), w2)
        b, c3, h, w = p.shape
        rows = p.permute(0, 2, 3, 1).reshape(b * h, 1, w, c3).permute(0, 3, 1, 2)
        u = F.conv2d(F.conv2d(rows, w1, self.b1).relu_(), w2)
        return u.permute(0, 2, 3, 1).reshape(b, h, w, -1).permute(0, 3, 1, 2)

    def step(self, s, fire, pin_cell):
        """s_{t+1} = m * (s + f * du), m = alive(s) AND alive(s + f * du)."""
        pre = self.alive(s)
        p = self.torch.cat([s, self.F.conv2d(s, self.sobel, padding=1, groups=self.rec.channels)], 1)
        du = self.update(p)
        if fire is not None:
            du = du * fire
        s1 = s + du
        m = pre & self.alive(s1)
        if pin_cell is not None:
            m[:, :, pin_cell[0], pin_cell[1]] = True
        return s1 * m.to(s1.dtype)


def per_sample_loss(s, target):
    return ((s[:, :4] - target) ** 2).mean(dim=(1, 2, 3))


class Trainer:
    def __init__(self, torch, path, dense, philox_fire, device="cpu", compile_step=False):
        self.torch, self.device = torch, device
        with open_run(path) as f:
            self.rec = rec = Recipe(run_config(f), path)
            targets = np.asarray(dataset(f, "targets", path, ndim=4)[()], dtype=np.float32)
            p = {n: np.asarray(dataset(f, "checkpoint/params/" + n, path)[()], dtype=np.float32)
                 for n in ("w1", "b1", "w2")}
            moments = {}
            for kind in ("adam_m", "adam_v"):
                for n in ("w1", "b1", "w2"):
                    moments[kind, n] = np.asarray(dataset(f, "checkpoint/%s/%s" % (kind, n), path)[()],
                                                  dtype=np.float32)
            ck = f["checkpoint"].attrs
            self.iteration = int(attr_scalar(ck["iteration"]))
            adam_step = int(attr_scalar(ck["adam_step"]))
            states = dataset(f, "checkpoint/pool/states", path, ndim=4)
            # One copy of the pool, channel-last as in the file: a gathered batch
            # permuted to [B][C][H][W] is then channels-last memory at no cost.
            self.pool = torch.empty(states.shape, dtype=torch.float32)
            states.read_direct(self.pool.numpy())
            self.pool_target = np.asarray(dataset(f, "checkpoint/pool/target", path)[()], dtype=np.int64)
        n, self.height, self.width, c = self.pool.shape
        if n != rec.pool_size or c != rec.channels:
            raise MgError("%s: pool is [%d][..][..][%d], config says pool_size %d, channels %d"
                          % (path, n, c, rec.pool_size, rec.channels))
        if device != "cpu":
            self.pool = self.pool.to(device)
        self.targets = torch.from_numpy(targets).to(device).permute(0, 3, 1, 2)  # [T][4][H][W]
        self.model = Model(torch, rec, p["w1"], p["b1"], p["w2"], dense, device)
        self.step_fn = torch.compile(self.model.step) if compile_step else self.model.step
        sx = rec.seed_x if rec.seed_x >= 0 else self.width // 2
        sy = rec.seed_y if rec.seed_y >= 0 else self.height // 2
        self.seed_cell = (sy, sx)
        self.philox_threshold = fire_threshold(rec.fire_rate) if philox_fire else None
        opt_cls = torch.optim.AdamW if rec.weight_decay > 0 else torch.optim.Adam
        self.opt = opt_cls(self.model.params(), lr=rec.lr, betas=(rec.beta1, rec.beta2),
                           eps=rec.adam_eps, weight_decay=rec.weight_decay)
        if adam_step > 0:
            # Continue Adam where morphogen left it: same moments, same bias correction.
            for name, prm in zip(("w1", "b1", "w2"), self.model.params()):
                self.opt.state[prm] = {
                    "step": torch.tensor(float(adam_step)),
                    "exp_avg": self.model.to_torch_layout(name, moments["adam_m", name]),
                    "exp_avg_sq": self.model.to_torch_layout(name, moments["adam_v", name]),
                }

    def fire(self, iteration, samples, t, b):
        torch, rec = self.torch, self.rec
        if self.philox_threshold is not None:
            if self.philox_threshold >= 1 << 24:
                return None
            m = fire_masks(rec.seed, iteration, samples, t, self.philox_threshold, self.height, self.width)
            return torch.from_numpy(m[:, None].astype(np.float32)).to(self.device)
        if rec.fire_rate >= 1.0:
            return None
        if self.device != "cpu":
            return (torch.rand(b, 1, self.height, self.width, device=self.device) < rec.fire_rate).to(torch.float32)
        return (torch.rand(b, 1, self.height, self.width) < rec.fire_rate).to(torch.float32)

    def train_one(self):
        """One training iteration; returns (batch loss, steps)."""
        torch, rec, model = self.torch, self.rec, self.model
        it = self.iteration + 1
        idx = rec.select(it)
        batch = self.pool[idx].permute(0, 3, 1, 2)  # [B][C][H][W], channels-last memory
        target = self.targets[self.pool_target[idx]]
        with torch.no_grad():
            before = per_sample_loss(batch, target).tolist()
        # Highest loss first; NaN counts as the worst; ties keep batch order.
        order = sorted(range(rec.batch), key=lambda j: (0, 0.0) if before[j] != before[j] else (1, -before[j]))
        ys = torch.linspace(-1.0, 1.0, self.height, dtype=torch.float64)[:, None] if self.height > 1 \
            else torch.zeros(1, 1, dtype=torch.float64)
        xs = torch.linspace(-1.0, 1.0, self.width, dtype=torch.float64)[None, :] if self.width > 1 \
            else torch.zeros(1, 1, dtype=torch.float64)
        for r, j in enumerate(order):
            if r < rec.replace_worst:
                batch[j] = 0
                batch[j, 3:, self.seed_cell[0], self.seed_cell[1]] = 1
            elif r >= rec.batch - rec.damage:
                cx, cy, rad = rec.damage_disc(it, idx[j])
                hole = (xs - cx) ** 2 + (ys - cy) ** 2 < rad * rad
                if self.device != "cpu":
                    hole = hole.to(self.device)
                batch[j, :, hole] = 0
        steps = rec.rollout_steps(it)
        pin = self.seed_cell if rec.pin else None
        s = batch
        for t in range(steps):
            s = self.step_fn(s, self.fire(it, idx, t, rec.batch), pin)
        losses = per_sample_loss(s, target)
        loss = losses.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for prm in model.params():
                if not torch.isfinite(prm.grad).all():
                    raise MgError("torch: a gradient is not finite at iteration %d" % it)
                if rec.grad_normalize:
                    prm.grad.mul_(1.0 / (prm.grad.norm().item() + 1e-8))
            for g in self.opt.param_groups:
                g["lr"] = rec.lr_at(it)
            self.opt.step()
            self.pool[idx] = s.permute(0, 2, 3, 1)
        self.iteration = it
        value = loss.item()
        if value != value:
            raise MgError("torch: loss is NaN at iteration %d" % it)
        return value, steps


def main():
    ap = argparse.ArgumentParser(description="morphogen's training iteration in eager PyTorch (float32, CPU).")
    ap.add_argument("run", metavar="RUN.h5", help="morphogen run file to start from")
    ap.add_argument("--iterations", type=int, required=True, metavar="N", help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, metavar="W", help="untimed iterations first (default 1)")
    ap.add_argument("--threads", type=int, default=1, metavar="T", help="torch intra-op threads (default 1)")
    ap.add_argument("--dense", choices=["onednn", "native"], default="onednn",
                    help="layout of the per-cell dense layers (see the module doc; default onednn)")
    ap.add_argument("--philox-fire", action="store_true",
                    help="morphogen's exact fire masks (slow; for checking the recipe, not for timing)")
    ap.add_argument("--verbose", action="store_true", help="one line per iteration on stderr")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where tensors live and the iteration runs (default cpu)")
    ap.add_argument("--compile", action="store_true", help="run the CA step through torch.compile")
    args = ap.parse_args()
    if args.iterations < 1 or args.warmup < 0 or args.threads < 1:
        raise MgError("--iterations must be >= 1, --warmup >= 0, --threads >= 1")
    try:
        import torch
    except ImportError:
        raise MgError("torch: not installed for %s (Debian package python3-torch)" % sys.executable)
    # Before any parallel work, or torch refuses to change the inter-op pool.
    torch.set_num_interop_threads(1)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise MgError("torch: --device cuda, but torch.cuda.is_available() is False (torch %s)" % torch.__version__)
    if args.compile and not hasattr(torch, "compile"):
        raise MgError("torch: --compile needs torch.compile (torch >= 2.0; this is %s)" % torch.__version__)
    gpu = args.device == "cuda"
    trainer = Trainer(torch, args.run, args.dense, args.philox_fire, args.device, args.compile)
    rec = trainer.rec
    cells = trainer.height * trainer.width
    elapsed = 0.0
    cell_steps = 0
    for i in range(args.warmup + args.iterations):
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, steps = trainer.train_one()
        if gpu:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        timed = i >= args.warmup
        if timed:
            elapsed += dt
            cell_steps += rec.batch * cells * steps
        if args.verbose:
            print("torch: iteration %d loss %.6e steps %d %.3f s%s"
                  % (trainer.iteration, loss, steps, dt, "" if timed else " (warm-up)"), file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    extra = " peak_gpu_mib=%.1f" % (torch.cuda.max_memory_allocated() / 1048576.0) if gpu else ""
    print("torch: s_per_iter=%.6f cell_steps_per_s=%.6g peak_rss_mib=%.1f%s"
          % (elapsed / args.iterations, cell_steps / elapsed, peak, extra))
    return 0


if __name__ == "__main__":
    run_main(main)
