#!/usr/bin/env python3
"""morphogen's training iteration in eager PyTorch (float32, CPU), for a
side-by-side speed benchmark (jobs/bench_cpu.sh). Not a checker: it computes
every cell of every sample densely, as a PyTorch user would write it, while
morphogen skips cells that neither fire nor live.

    bench_torch.py RUN.h5 --iterations N [--threads T] [--warmup W] [--verbose]
        [--philox-fire] [--dense onednn|native] [--device cpu|cuda]
        [--compile | --cuda-graphs] [--check-graphs]

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
unchanged by these options' defaults.

`--cuda-graphs` (with `--device cuda`, not with `--compile`) replays each
iteration's rollout, forward + loss + backward, from a CUDA graph
(GraphRunner): one graph per rollout length, all of them sharing one memory
pool. The rollout lengths of the whole run (warm-up and timed iterations)
follow from morphogen's Philox counters, so their graphs are captured before
the first iteration, untimed; the line then ends with `cuda_graphs=N
capture_s=S` (graphs captured, seconds spent warming up and capturing them).
The host-side work of an iteration stays outside the graphs and is the
eager path's code: batch selection, loss ranking, reseeding and damage go
into static input tensors before each replay (and `--philox-fire` masks into
a static mask buffer); gradient normalisation, the Adam step and the pool
write-back follow the replay. The captured function is the eager path's own
Trainer.rollout_loss. `--check-graphs` runs N iterations both ways and
compares them (on CPU with the replay emulated: a self-check of that
plumbing that needs no GPU)."""

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
        """mg_damage_mask's disc: centre in [-0.5, 0.5)^2, radius in [min, max), in
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

    def prepare(self, it):
        """Everything before the rollout of iteration `it`: batch selection
        (host Philox), the gather from the pool, the loss ranking (one host
        sync), reseeding and damage, the rollout length. Returns (idx, batch,
        target, steps). Reads the trainer's state and changes none of it (the
        gathered batch is a copy), so the eager path and the CUDA-graph path
        (GraphRunner) call it alike."""
        torch, rec = self.torch, self.rec
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
        return idx, batch, target, rec.rollout_steps(it)

    def rollout_loss(self, s, target, steps, fire_at):
        """The rollout and its loss: `steps` CA steps from s, fire mask
        fire_at(t) at step t (None: every cell fires). Returns (final state,
        batch loss). The one definition of the forward pass: the eager path
        calls it directly, GraphRunner captures this same function into its
        CUDA graphs, so the two cannot drift apart."""
        pin = self.seed_cell if self.rec.pin else None
        for t in range(steps):
            s = self.step_fn(s, fire_at(t), pin)
        losses = per_sample_loss(s, target)
        return s, losses.mean()

    def finish(self, it, idx, s, loss):
        """Everything after the backward pass, with the gradients in the
        parameters' .grad: finiteness check, per-tensor normalisation, lr
        schedule, optimizer step, final states s back into the pool. Returns
        the batch loss as a float."""
        torch, rec, model = self.torch, self.rec, self.model
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
        return value

    def train_one(self):
        """One training iteration, eagerly; returns (batch loss, steps)."""
        it = self.iteration + 1
        idx, batch, target, steps = self.prepare(it)
        s, loss = self.rollout_loss(batch, target, steps, lambda t: self.fire(it, idx, t, self.rec.batch))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        return self.finish(it, idx, s, loss), steps


class _CapturedGraph:
    """One CUDA graph and its static outputs (final state, loss, gradients):
    tensors from the graphs' memory pool that every replay overwrites."""

    def __init__(self, torch):
        self.graph = torch.cuda.CUDAGraph()
        self.s = self.loss = self.grads = None

    def replay(self):
        self.graph.replay()


class _EmulatedGraph:
    """Stands in for a captured graph where nothing can be captured (the
    --check-graphs self-check on CPU): replay() runs the captured function
    again, eagerly, from the same static inputs, as a replay re-runs its
    kernels, and rebinds the outputs (a real replay writes into the same
    tensors instead). This checks GraphRunner's plumbing, not capture."""

    def __init__(self, body, params):
        self.body, self.params = body, params
        self.s = self.loss = self.grads = None

    def replay(self):
        for p in self.params:
            p.grad = None
        self.s, self.loss, self.grads = self.body()


class GraphRunner:
    """--cuda-graphs: the trainer's iteration with the rollout's forward pass,
    loss and backward pass replayed from CUDA graphs.

    A graph fixes its kernel sequence, and the rollout length varies per
    iteration (steps_min..steps_max), so there is one graph per step count,
    captured on first use and kept (graph(steps)). Every graph reads the same
    static inputs (start states, targets, and with --philox-fire the fire
    masks), allocated once outside the graphs; each iteration copies its own
    data into them before the replay. What is decided on the host stays
    outside the graph and is the eager path's own code (Trainer.prepare,
    Trainer.fire, Trainer.finish): batch selection and damage from Philox
    counters, the loss ranking (a host sync), the rollout length, and the
    --philox-fire masks. The captured function is Trainer.rollout_loss plus
    backward, the same function the eager path runs.

    Without --philox-fire the fire masks are drawn inside the graph by the
    eager path's own torch.rand call (Trainer.fire): replays of a graph with
    RNG kernels draw fresh numbers from the default CUDA generator each time
    (PyTorch advances its Philox offset per replay), so every iteration gets
    new masks of the same distribution, as in the eager path; the exact
    numbers are not those of an eager run (neither path seeds torch).

    Outside the graphs, as the eager path does them: the gradient checks and
    normalisation (they read the gradient norm on the host, .item()), the
    lr schedule and the optimizer step (capturing Adam needs capturable=True
    and a device-side lr; not worth it for 3 parameter tensors: a dozen
    launches per iteration against thousands in the rollout), and writing the
    final states back into the pool (indices differ per iteration)."""

    def __init__(self, trainer, emulate=False):
        torch, rec = trainer.torch, trainer.rec
        self.torch, self.tr, self.emulate = torch, trainer, emulate
        self.params = trainer.model.params()
        # Static inputs with the layouts of the eager path's tensors (zeros_like
        # keeps the strides of a dense tensor: channels-last start states), so
        # the captured kernels are the eager path's kernels. Allocated here,
        # outside any capture, so they are not in the graphs' memory pool.
        first = list(range(rec.batch))
        self.s0 = torch.zeros_like(trainer.pool[first].permute(0, 3, 1, 2))
        self.target = torch.zeros_like(trainer.targets[trainer.pool_target[first]])
        thr = trainer.philox_threshold
        self.fire_buf = None
        if thr is not None and thr < 1 << 24:
            # Host-computed masks: filled per iteration, steps_max slots.
            self.fire_buf = torch.zeros(rec.steps_max, rec.batch, 1, trainer.height, trainer.width,
                                        device=trainer.device)
        self.graphs = {}
        self.capture_s = 0.0
        self.warmed_up = False
        # One memory pool for all graphs: each graph holds the activations of
        # a whole rollout (about 30 MiB per step at the Distill config, so
        # ~3 GiB at 96 steps), and a pool per graph would keep one such set
        # per rollout length (33 at 64..96 steps). PyTorch's docs promise a
        # shared pool is safe for graphs replayed in capture order; ours are
        # replayed in any order, which is safe too because no graph reads
        # another's outputs, every graph writes its intermediates before
        # reading them, and each graph's outputs are consumed (pool
        # write-back, optimizer step, loss) before the next replay, which may
        # overwrite them.
        self.mempool = None if emulate else torch.cuda.graph_pool_handle()

    def _body(self, steps):
        """The captured work: forward, loss and backward of a `steps`-step
        rollout from the static inputs. Returns (final state, loss, grads);
        the parameters' .grad must be None on entry, so that backward
        writes fresh gradient tensors (captured: the graph's outputs) rather
        than accumulating into old ones."""
        tr = self.tr
        if self.fire_buf is not None:
            def fire_at(t):
                return self.fire_buf[t]
        else:
            def fire_at(t):  # torch.rand, or None when every cell fires
                return tr.fire(None, None, t, tr.rec.batch)
        s, loss = tr.rollout_loss(self.s0, self.target, steps, fire_at)
        loss.backward()
        return s, loss, [p.grad for p in self.params]

    def _capture(self, steps):
        torch = self.torch
        for p in self.params:
            p.grad = None
        if self.emulate:
            return _EmulatedGraph(lambda: self._body(steps), self.params)
        if not self.warmed_up:
            # PyTorch's rule: run the workload a few times on a side stream
            # before capturing it (lazy initialisation of cuBLAS/cuDNN handles,
            # workspaces and autograd's device threads must not happen during
            # capture). Once is enough for all step counts: a longer rollout
            # repeats the same kernels.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._body(steps)
                    for p in self.params:
                        p.grad = None
            torch.cuda.current_stream().wait_stream(side)
            self.warmed_up = True
        g = _CapturedGraph(torch)
        with torch.cuda.graph(g.graph, pool=self.mempool):
            g.s, g.loss, g.grads = self._body(steps)
        return g

    def graph(self, steps):
        """The graph for `steps` steps, captured now if new (the time goes to
        capture_s; inside a timed iteration it would be timed too)."""
        g = self.graphs.get(steps)
        if g is None:
            t0 = time.perf_counter()
            g = self.graphs[steps] = self._capture(steps)
            if not self.emulate:
                self.torch.cuda.synchronize()
            self.capture_s += time.perf_counter() - t0
        return g

    def capture_ahead(self, first_iteration, count):
        """Capture the graphs of iterations first_iteration.. (count of them)
        now, before any is timed: their rollout lengths are known in advance
        (morphogen's Philox counters), so no timed iteration includes a
        capture. Longest first: the shared pool is sized by the first capture
        and the shorter rollouts fit in what it freed."""
        rec = self.tr.rec
        needed = {rec.rollout_steps(first_iteration + i) for i in range(count)}
        for steps in sorted(needed, reverse=True):
            self.graph(steps)
        return sorted(needed)

    def train_one(self):
        """One training iteration with the rollout replayed from a graph;
        returns (batch loss, steps) as Trainer.train_one does."""
        tr = self.tr
        it = tr.iteration + 1
        idx, batch, target, steps = tr.prepare(it)
        self.s0.copy_(batch)
        self.target.copy_(target)
        if self.fire_buf is not None:
            for t in range(steps):
                self.fire_buf[t].copy_(tr.fire(it, idx, t, tr.rec.batch))
        g = self.graph(steps)
        g.replay()
        for p, grad in zip(self.params, g.grads):
            p.grad = grad
        return tr.finish(it, idx, g.s, g.loss), steps


def check_graphs(torch, args):
    """--check-graphs: the same iterations through the eager path and through
    GraphRunner, from the same run file, with morphogen's Philox fire masks (so
    both see the same masks), compared. On CPU the graph replay is emulated
    (_EmulatedGraph), the arithmetic is the same code in the same order, and
    the results must be bitwise equal. On CUDA real graphs are captured;
    cuDNN is put in deterministic mode for both paths (no atomics in its
    backward kernels), and small differences are tolerated; a plumbing error
    (stale inputs, wrong masks, another graph's gradients) shows up orders of
    magnitude above the tolerances."""
    gpu = args.device == "cuda"
    if gpu:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    eager = Trainer(torch, args.run, args.dense, True, args.device)
    graphed = Trainer(torch, args.run, args.dense, True, args.device)
    runner = GraphRunner(graphed, emulate=not gpu)
    runner.capture_ahead(graphed.iteration + 1, args.iterations)
    start = [p.detach().clone() for p in eager.model.params()]
    loss_rel = 0.0
    steps_seen = []
    for _ in range(args.iterations):
        le, se = eager.train_one()
        lg, sg = runner.train_one()
        if se != sg:
            raise MgError("torch: --check-graphs: iteration %d: %d steps eager, %d with graphs"
                          % (eager.iteration, se, sg))
        steps_seen.append(se)
        loss_rel = max(loss_rel, abs(lg - le) / max(abs(le), 1e-30))
        if args.verbose:
            print("torch: iteration %d steps %d loss eager %.9e graphs %.9e"
                  % (eager.iteration, se, le, lg), file=sys.stderr)
    with torch.no_grad():
        moved = max((pe - p0).abs().max().item() for pe, p0 in zip(eager.model.params(), start))
        pdiff = max((pg - pe).abs().max().item() for pg, pe in zip(graphed.model.params(), eager.model.params()))
        sdiff = (graphed.pool - eager.pool).abs().max().item()
    # CUDA: losses to 1e-5 relative, parameters to 1e-3 of how far the
    # optimizer moved them, pool states (O(1) values) to 1e-3.
    tol = (1e-5, 1e-3 * moved, 1e-3) if gpu else (0.0, 0.0, 0.0)
    ok = loss_rel <= tol[0] and pdiff <= tol[1] and sdiff <= tol[2]
    what = ("torch: --check-graphs %s: %d iterations (steps %s), %s: loss max rel diff %.3g, "
            "parameters max abs diff %.3g (moved %.3g), pool max abs diff %.3g"
            % ("passed" if ok else "FAILED", args.iterations, ",".join(map(str, steps_seen)),
               "CUDA graphs" if gpu else "graph replay emulated on CPU", loss_rel, pdiff, moved, sdiff))
    if not ok:
        raise MgError(what + "; tolerances %g, %.3g, %g" % tol)
    print(what)
    return 0


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
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="replay each iteration's rollout (forward, loss, backward) from CUDA graphs, one per "
                         "rollout length; the graphs of every length the run will draw are captured before "
                         "the first iteration, untimed, and the capture time is reported as capture_s= "
                         "(--device cuda only; not with --compile)")
    ap.add_argument("--check-graphs", action="store_true",
                    help="no timing: run N iterations eagerly and through the --cuda-graphs code from the same "
                         "run file, with --philox-fire masks, and compare losses, parameters and pool (on CPU "
                         "the graph replay is emulated and the results must be bitwise equal)")
    args = ap.parse_args()
    if args.iterations < 1 or args.warmup < 0 or args.threads < 1:
        raise MgError("--iterations must be >= 1, --warmup >= 0, --threads >= 1")
    # Before importing torch: a wrong combination fails at once, in one line.
    if args.cuda_graphs and args.device != "cuda":
        raise MgError("--cuda-graphs needs --device cuda (CUDA graphs capture GPU work)")
    if args.compile and (args.cuda_graphs or args.check_graphs):
        raise MgError("--%s and --compile exclude each other: the graphs capture the eager CA step"
                      % ("cuda-graphs" if args.cuda_graphs else "check-graphs"))
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
    if (args.cuda_graphs or args.check_graphs) and args.device == "cuda" and not hasattr(torch.cuda, "CUDAGraph"):
        raise MgError("torch: --cuda-graphs needs torch.cuda.CUDAGraph (torch >= 1.10; this is %s)"
                      % torch.__version__)
    if args.check_graphs:
        return check_graphs(torch, args)
    gpu = args.device == "cuda"
    trainer = Trainer(torch, args.run, args.dense, args.philox_fire, args.device, args.compile)
    rec = trainer.rec
    train_one = trainer.train_one
    graphs = ""
    if args.cuda_graphs:
        runner = GraphRunner(trainer)
        lengths = runner.capture_ahead(trainer.iteration + 1, args.warmup + args.iterations)
        train_one = runner.train_one
        graphs = " cuda_graphs=%d capture_s=%.3f" % (len(lengths), runner.capture_s)
        if args.verbose:
            print("torch: captured %d CUDA graphs (rollout lengths %s) in %.3f s, before the first iteration"
                  % (len(lengths), ",".join(map(str, lengths)), runner.capture_s), file=sys.stderr)
    cells = trainer.height * trainer.width
    elapsed = 0.0
    cell_steps = 0
    for i in range(args.warmup + args.iterations):
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, steps = train_one()
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
    print("torch: s_per_iter=%.6f cell_steps_per_s=%.6g peak_rss_mib=%.1f%s%s"
          % (elapsed / args.iterations, cell_steps / elapsed, peak, extra, graphs))
    return 0


if __name__ == "__main__":
    run_main(main)
