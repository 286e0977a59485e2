#!/usr/bin/env python3
"""An independent reference implementation of the morphogen NCA in PyTorch.

It is written from the model description in the README ("The model,
exactly"), not from the C code, so that agreement between the two is
evidence that both are right. Computation is float64 by default.

    nca_torch.py selftest
        Philox4x32-10 known-answer vectors, perception/alive-mask against
        naive loops over the spec, and torch.autograd.gradcheck of the model.
    nca_torch.py check-grad RUN.h5 STATES.h5 GRAD.h5 --steps N [--rtol R] [--set k=v ...]
        Recompute what `morphogen grad` wrote into GRAD.h5 (loss, per-sample
        losses, final states, gradients w.r.t. w1, b1, w2 and the input
        states) with torch autograd and compare. Pass the same --set
        overrides that were given to `morphogen grad`.

Layouts: states are channel-last [B][H][W][C] as in the run file; w1 is
[3C][Hd], b1 [Hd], w2 [Hd][C]."""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgfiles import (MgError, attr_scalar, dataset, open_h5, open_run, parse_set,  # noqa: E402
                     run_config, run_main)

# ---------------------------------------------------------------------------
# Philox4x32-10 (Salmon et al., SC'11; constants from Random123), vectorised:
# 32-bit words live in uint64 arrays so that the 32x32 -> 64-bit products of
# the round function are exact, and every addition is masked back to 32 bits.

PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)

RNG_FIRE = 1  # purpose code of fire decisions (include/morphogen/rng.h)


def philox4x32(key, c0, c1, c2, c3):
    """Philox4x32-10 of counters (c0..c3, broadcastable arrays of uint32
    values) under key = (k0, k1). Returns four uint64 arrays of 32-bit words."""
    x = [np.asarray(c, dtype=np.uint64) & MASK32 for c in (c0, c1, c2, c3)]
    x0, x1, x2, x3 = np.broadcast_arrays(*x)
    k0 = np.uint64(key[0]) & MASK32
    k1 = np.uint64(key[1]) & MASK32
    for _ in range(10):
        p0 = PHILOX_M0 * x0
        p1 = PHILOX_M1 * x2
        x0, x1, x2, x3 = ((p1 >> SHIFT32) ^ x1 ^ k0, p1 & MASK32,
                          (p0 >> SHIFT32) ^ x3 ^ k1, p0 & MASK32)
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return x0, x1, x2, x3


def seed_key(seed):
    """The 64-bit run seed is the Philox key, low word first."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return (seed & 0xFFFFFFFF, seed >> 32)


def fire_threshold(fire_rate):
    """A cell fires iff (u32 >> 8) < threshold: an integer test on 24 bits."""
    if fire_rate >= 1.0:
        return 1 << 24
    if fire_rate <= 0.0:
        return 0
    return int(fire_rate * 16777216.0 + 0.5)


def fire_masks(seed, iteration, samples, step, threshold, height, width):
    """Fire masks at one step for several samples: bool [len(samples)][H][W].
    Counter: c0 = cell (y*W + x), c1 = step | FIRE << 24, c2 = sample, c3 = iteration."""
    cells = np.arange(height * width, dtype=np.uint64)[None, :]
    samples = np.asarray(samples, dtype=np.uint64)[:, None]
    c1 = (int(step) & 0xFFFFFF) | (RNG_FIRE << 24)
    v0 = philox4x32(seed_key(seed), cells, c1, samples, int(iteration) & 0xFFFFFFFF)[0]
    return ((v0 >> np.uint64(8)) < np.uint64(threshold)).reshape(len(samples), height, width)


# ---------------------------------------------------------------------------
# The model. torch is imported lazily so the RNG part is usable without it.

def _torch():
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        raise MgError("torch: not installed for %s (Debian package python3-torch)" % sys.executable)
    return torch


# Rows are y-1, y, y+1; columns x-1, x, x+1 (cross-correlation, as conv2d does).
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
SOBEL_Y = SOBEL_X.T.copy()


def perceive(state):
    """[B][H][W][C] -> [B][H][W][3C] = (s, Sx*s, Sy*s), zero padding outside."""
    torch = _torch()
    import torch.nn.functional as F
    c = state.shape[-1]
    x = state.permute(0, 3, 1, 2)  # conv2d wants channels first
    kx = torch.tensor(SOBEL_X, dtype=state.dtype, device=state.device).expand(c, 1, 3, 3)
    ky = torch.tensor(SOBEL_Y, dtype=state.dtype, device=state.device).expand(c, 1, 3, 3)
    gx = F.conv2d(x, kx, padding=1, groups=c)
    gy = F.conv2d(x, ky, padding=1, groups=c)
    return torch.cat([x, gx, gy], dim=1).permute(0, 2, 3, 1)


def alive_mask(state, alive_threshold):
    """bool [B][H][W]: max alpha over the 3x3 neighbourhood > threshold.
    max_pool2d pads with -inf, i.e. cells outside the grid count as dead."""
    import torch.nn.functional as F
    alpha = state[..., 3].unsqueeze(1)
    return (F.max_pool2d(alpha, kernel_size=3, stride=1, padding=1) > alive_threshold).squeeze(1)


def step(state, w1, b1, w2, fire_mask, alive_threshold, pin_cell=None):
    """One update s_t -> s_{t+1}. fire_mask: bool [B][H][W] or None (all fire).
    pin_cell: (y, x) of a seed cell forced alive, or None. The masks come from
    comparisons, so autograd treats them as constants, as the spec requires."""
    torch = _torch()
    pre = alive_mask(state, alive_threshold)
    du = torch.relu(perceive(state) @ w1 + b1) @ w2
    if fire_mask is not None:
        du = du * fire_mask.unsqueeze(-1).to(du.dtype)
    s1 = state + du
    m = pre & alive_mask(s1, alive_threshold)
    if pin_cell is not None:
        m[:, pin_cell[0], pin_cell[1]] = True
    return s1 * m.unsqueeze(-1).to(s1.dtype)


def rollout(state, w1, b1, w2, steps, fire_rate=1.0, alive_threshold=0.1, seed=0,
            iteration=0, samples=None, pin_cell=None, first_step=0, low_memory=False):
    """Run `steps` updates. Fire masks of step t (t = first_step .. first_step+steps-1)
    come from Philox with (seed; cell, t | FIRE<<24, samples[b], iteration);
    samples defaults to the row index b. low_memory recomputes each step in the
    backward pass instead of keeping its activations (same result)."""
    torch = _torch()
    b, h, w, _ = state.shape
    samples = np.arange(b) if samples is None else np.asarray(samples)
    threshold = fire_threshold(fire_rate)
    for t in range(first_step, first_step + steps):
        fm = None
        if threshold < (1 << 24):
            fm = torch.from_numpy(fire_masks(seed, iteration, samples, t, threshold, h, w)).to(state.device)
        if low_memory and torch.is_grad_enabled():
            import torch.utils.checkpoint as tc
            state = tc.checkpoint(
                lambda s, a, bb, c, fm=fm: step(s, a, bb, c, fm, alive_threshold, pin_cell),
                state, w1, b1, w2, use_reentrant=False)
        else:
            state = step(state, w1, b1, w2, fm, alive_threshold, pin_cell)
    return state


def loss_per_sample(final, targets):
    """Mean over y, x and the RGBA channels of the squared error: [B]."""
    return ((final[..., :4] - targets) ** 2).mean(dim=(1, 2, 3))


def loss(final, targets):
    """Batch loss: the mean of the per-sample losses."""
    return loss_per_sample(final, targets).mean()


# ---------------------------------------------------------------------------
# selftest

PHILOX_KAT = [  # Random123 kat_vectors, philox4x32_10: (key, counter, expected)
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000, 0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0xa4093822, 0x299f31d0), (0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def naive_perceive(s):
    """The spec written as loops (numpy, one sample [H][W][C]) to check the conv layout."""
    h, w, c = s.shape
    out = np.zeros((h, w, 3 * c))
    for y in range(h):
        for x in range(w):
            out[y, x, :c] = s[y, x]
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        out[y, x, c:2 * c] += SOBEL_X[dy + 1, dx + 1] * s[yy, xx]
                        out[y, x, 2 * c:] += SOBEL_Y[dy + 1, dx + 1] * s[yy, xx]
    return out


def naive_alive(s, thr):
    h, w, _ = s.shape
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            out[y, x] = s[max(0, y - 1):y + 2, max(0, x - 1):x + 2, 3].max() > thr
    return out


def selftest():
    torch = _torch()
    failures = []

    def check(ok, what):
        print("%-4s %s" % ("ok" if ok else "FAIL", what))
        if not ok:
            failures.append(what)

    # 1. Philox known answers, each as a one-element call and all three at once.
    for key, ctr, want in PHILOX_KAT:
        got = tuple(int(v) for v in philox4x32(key, *ctr))
        check(got == want, "philox4x32-10 key=%08x,%08x ctr=%s -> %s"
              % (key[0], key[1], ",".join("%08x" % c for c in ctr),
                 ",".join("%08x" % g for g in got)))
    ctr = np.arange(5, dtype=np.uint64) * np.uint64(0x9E3779B9)
    vec = philox4x32((5, 6), ctr, 1, 2, 3)
    check(all(int(vec[j][i]) == int(philox4x32((5, 6), int(ctr[i]), 1, 2, 3)[j])
              for i in range(5) for j in range(4)),
          "philox4x32 over a counter array equals element-wise calls")
    # The 64-bit seed's low word is key[0]: the third vector as a seed.
    seed3 = (0x299f31d0 << 32) | 0xa4093822
    got = tuple(int(v) for v in philox4x32(seed_key(seed3), *PHILOX_KAT[2][1]))
    check(got == PHILOX_KAT[2][2], "seed_key puts the low 32 bits of the seed in key[0]")

    # 2. Fire masks: threshold edge cases and the rate of a large mask.
    check(fire_threshold(1.0) == 1 << 24 and fire_threshold(0.0) == 0
          and fire_threshold(0.5) == 1 << 23, "fire_threshold(1, 0, 0.5)")
    m = fire_masks(seed=7, iteration=3, samples=[0, 1], step=5, threshold=fire_threshold(0.5),
                   height=72, width=72)
    frac = m.mean()
    check(abs(frac - 0.5) < 0.02, "fire mask rate 0.5 on 2x72x72 cells: %.4f" % frac)
    check(not np.array_equal(m[0], m[1]), "fire masks differ between samples")
    one = fire_masks(7, 3, [1], 5, fire_threshold(0.5), 72, 72)
    check(np.array_equal(one[0], m[1]), "fire mask of a sample is independent of the batch")
    u = philox4x32(seed_key(7), 72 * 10 + 4, 5 | (RNG_FIRE << 24), 1, 3)[0]
    check(bool((int(u) >> 8) < (1 << 23)) == bool(m[1, 10, 4]),
          "fire mask cell index is y*W + x")

    # 3. Perception and alive mask against loops over the spec.
    gen = torch.Generator().manual_seed(1)
    s = torch.rand(2, 5, 6, 5, generator=gen, dtype=torch.float64)
    p = perceive(s).numpy()
    check(all(np.allclose(p[i], naive_perceive(s[i].numpy()), atol=1e-14) for i in range(2)),
          "perceive (conv2d, channel-last) equals the spec's loops")
    ramp = torch.zeros(1, 3, 3, 4, dtype=torch.float64)
    ramp[0, :, :, 0] = torch.tensor([0.0, 1.0, 2.0])  # value = x: slope +1 along x
    pr = perceive(ramp)
    check(abs(pr[0, 1, 1, 4].item() - 1.0) < 1e-15 and abs(pr[0, 1, 1, 8].item()) < 1e-15,
          "Sx responds to a ramp increasing in x with +1, Sy with 0")
    s[..., 3] = torch.where(s[..., 3] > 0.7, s[..., 3], torch.zeros_like(s[..., 3]))
    am = alive_mask(s, 0.1).numpy()
    check(all(np.array_equal(am[i], naive_alive(s[i].numpy(), 0.1)) for i in range(2)),
          "alive mask (max_pool2d) equals the spec's loops")

    # 4. Gradients of the whole rollout + loss against finite differences.
    b, h, w, c, hid, steps = 2, 6, 5, 6, 4, 3
    state = torch.zeros(b, h, w, c, dtype=torch.float64)
    # Alpha far from the threshold (0 or >= 0.5) so that finite-difference
    # perturbations cannot flip an alive mask; one dead corner exercises masking.
    state[:, 1:5, 1:4, :] = 0.5 + 0.5 * torch.rand(b, 4, 3, c, generator=gen, dtype=torch.float64)
    w1 = (0.1 * torch.randn(3 * c, hid, generator=gen, dtype=torch.float64))
    b1 = (0.1 * torch.randn(hid, generator=gen, dtype=torch.float64))
    w2 = (0.05 * torch.randn(hid, c, generator=gen, dtype=torch.float64))
    targets = torch.rand(b, h, w, 4, generator=gen, dtype=torch.float64)
    inputs = tuple(t.clone().requires_grad_(True) for t in (state, w1, b1, w2))

    for fire_rate, pin in ((1.0, None), (0.5, (3, 2))):
        def f(s0, a, bb, cc):
            final = rollout(s0, a, bb, cc, steps, fire_rate=fire_rate, alive_threshold=0.1,
                            seed=11, pin_cell=pin)
            return loss(final, targets), final
        ok = torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, raise_exception=False)
        check(ok, "gradcheck of rollout+loss (fire_rate %g, pinned seed %s)" % (fire_rate, pin))

    # 5. low_memory recomputation gives identical gradients.
    grads = []
    for low in (False, True):
        xs = tuple(t.clone().requires_grad_(True) for t in (state, w1, b1, w2))
        loss(rollout(*xs, steps, fire_rate=0.5, seed=3, low_memory=low), targets).backward()
        grads.append([x.grad for x in xs])
    check(all(torch.equal(a, bb) for a, bb in zip(*grads)), "low_memory rollout gives the same gradients")

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


# ---------------------------------------------------------------------------
# check-grad

def cfg_value(cfg, keys, default):
    for k in keys:
        if k in cfg:
            return cfg[k]
    return default


def compare(name, got, ref, rtol):
    """Error of `got` (morphogen, float32) against `ref` (torch, float64),
    relative to the largest magnitude in ref, so tiny entries whose absolute
    float32 rounding error is large relative to themselves do not dominate."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return False, "%-18s shape %s, expected %s" % (name, got.shape, ref.shape)
    if not np.all(np.isfinite(got)):
        return False, "%-18s contains NaN/Inf" % name
    max_abs = float(np.max(np.abs(got - ref))) if got.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    ok = rel <= rtol
    return ok, "%-18s max|ref| %.3e  max abs err %.3e  rel err %.3e  %s" % (
        name, scale, max_abs, rel, "ok" if ok else "EXCEEDS %.1e" % rtol)


def check_grad(args):
    torch = _torch()
    overrides = parse_set(args.set)
    with open_run(args.run) as f:
        cfg = run_config(f)
        cfg.update(overrides)
        targets = np.asarray(dataset(f, "targets", args.run, ndim=4)[()], dtype=np.float64)
        params = {}
        for name in ("w1", "b1", "w2"):
            params[name] = np.asarray(dataset(f, "checkpoint/params/" + name, args.run)[()],
                                      dtype=np.float64)
        ck_attrs = f["checkpoint"].attrs
        seed = attr_scalar(ck_attrs["rng_seed"]) if "rng_seed" in ck_attrs else cfg.get("train.seed", 1)
    with open_h5(args.states) as f:
        states = np.asarray(dataset(f, "states", args.states, ndim=4)[()], dtype=np.float64)
        if "target_index" in f:
            tindex = np.asarray(dataset(f, "target_index", args.states, ndim=1)[()], dtype=np.int64)
        else:
            tindex = np.zeros(states.shape[0], dtype=np.int64)
    with open_h5(args.grad) as f:
        names = ["loss", "loss_per_sample", "final_states",
                 "grad/w1", "grad/b1", "grad/w2", "grad/states"]
        got = {n: np.asarray(dataset(f, n, args.grad)[()]) for n in names}

    b, h, w, c = states.shape
    if targets.shape[1:3] != (h, w):
        raise MgError("%s: states are %dx%d but the run's targets are %dx%d"
                      % (args.states, h, w, targets.shape[1], targets.shape[2]))
    if len(tindex) != b or np.any(tindex < 0) or np.any(tindex >= targets.shape[0]):
        raise MgError("%s: /target_index must hold %d indices in 0..%d"
                      % (args.states, b, targets.shape[0] - 1))
    if params["w1"].shape != (3 * c, params["b1"].shape[0]) or params["w2"].shape != (params["b1"].shape[0], c):
        raise MgError("%s: parameter shapes w1 %s, b1 %s, w2 %s do not fit %d channels"
                      % (args.run, params["w1"].shape, params["b1"].shape, params["w2"].shape, c))

    fire_rate = float(cfg_value(cfg, ["model.fire_rate"], 0.5))
    alive_threshold = float(cfg_value(cfg, ["model.alive_threshold"], 0.1))
    pin = int(cfg_value(cfg, ["seed.pin_seed", "seed.pin"], 0))
    pin_cell = None
    if pin:
        sx = int(cfg_value(cfg, ["seed.seed_x", "seed.x"], -1))
        sy = int(cfg_value(cfg, ["seed.seed_y", "seed.y"], -1))
        # -1 means the centre cell (integer division, as for an even grid's
        # lower-right centre cell).
        pin_cell = (h // 2 if sy < 0 else sy, w // 2 if sx < 0 else sx)

    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    s0 = torch.tensor(states, dtype=dtype, requires_grad=True)
    tw = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in params.items()}
    tgt = torch.tensor(targets[tindex], dtype=dtype)
    # Activations of one step take about b*h*w*(4c + 2*hidden) values; keep
    # them all only when that is comfortably small.
    act_bytes = args.steps * b * h * w * (4 * c + 2 * params["b1"].shape[0]) * 8
    low_memory = act_bytes > (1 << 30)
    final = rollout(s0, tw["w1"], tw["b1"], tw["w2"], args.steps, fire_rate=fire_rate,
                    alive_threshold=alive_threshold, seed=seed, iteration=0,
                    pin_cell=pin_cell, first_step=args.first_step, low_memory=low_memory)
    per_sample = loss_per_sample(final, tgt)
    total = per_sample.mean()
    total.backward()

    print("check-grad: %d sample(s) of %dx%dx%d, %d steps, fire_rate %g, alive_threshold %g, "
          "seed %d%s, reference %s, rtol %g"
          % (b, h, w, c, args.steps, fire_rate, alive_threshold, seed,
             ", pinned seed cell %s" % (pin_cell,) if pin_cell else "", args.dtype, args.rtol))
    ref = {
        "loss": total.detach().numpy(),
        "loss_per_sample": per_sample.detach().numpy(),
        "final_states": final.detach().numpy(),
        "grad/w1": tw["w1"].grad.numpy(),
        "grad/b1": tw["b1"].grad.numpy(),
        "grad/w2": tw["w2"].grad.numpy(),
        "grad/states": s0.grad.numpy(),
    }
    all_ok = True
    for n in names:
        ok, line = compare(n, got[n], ref[n], args.rtol)
        print("  " + line)
        all_ok &= ok
    if not all_ok:
        hint = ""
        if fire_rate < 1.0:
            hint = " (fire_rate < 1: the fire masks must match too; try --set model.fire_rate=1 " \
                   "on both sides to separate RNG from arithmetic)"
        print("check-grad: FAILED%s" % hint)
        return 1
    print("check-grad: all tensors agree within rtol %g" % args.rtol)
    return 0


def main():
    ap = argparse.ArgumentParser(description="PyTorch reference of the morphogen NCA.")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("selftest", help="Philox known answers, layout checks and gradcheck")
    cg = sub.add_parser("check-grad", help="compare a `morphogen grad` output with torch autograd")
    cg.add_argument("run", metavar="RUN.h5")
    cg.add_argument("states", metavar="STATES.h5")
    cg.add_argument("grad", metavar="GRAD.h5")
    cg.add_argument("--steps", type=int, required=True, metavar="N")
    # morphogen computes in float32 while this reference is float64. Rounding
    # of a float32 dot product of length K is ~sqrt(K)*6e-8 relative, and it
    # compounds over the N steps of the rollout and again in backpropagation;
    # for the sizes used in checks (K = 3C = 48, N <= ~100) that stays below
    # ~1e-5 of each tensor's largest magnitude. 1e-4 leaves headroom for that
    # while any real bug (wrong kernel orientation, sign, mask, off-by-one
    # step) gives errors of order 1e-2..1 relative.
    cg.add_argument("--rtol", type=float, default=1e-4, metavar="R",
                    help="max error relative to each tensor's max |value| (default 1e-4)")
    cg.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="the same config overrides given to `morphogen grad`")
    cg.add_argument("--first-step", type=int, default=0, metavar="T",
                    help="step counter of the first update in the fire-mask RNG (default 0)")
    cg.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                    help="precision of the reference (default float64)")
    args = ap.parse_args()
    if args.command == "selftest":
        return selftest()
    if args.steps < 0:
        raise MgError("--steps %d: must be >= 0" % args.steps)
    if not args.rtol > 0:
        raise MgError("--rtol %g: must be positive" % args.rtol)
    return check_grad(args)


if __name__ == "__main__":
    run_main(main)
