#!/usr/bin/env python3
"""Lay out frames of a `morphogen grow` output side by side.

    growth_strip.py GROW.h5 --out strip.png [--steps 0,10,20,...] [--scale K]

Each frame's channels 0..3 are premultiplied RGBA; they are clamped to [0,1]
and composited on white (rgb_out = 1 - alpha + rgb), upscaled K times with
nearest neighbour (so single cells stay visible as squares) and labelled with
their step count below. Image size: width = n*W*K + (n-1)*GAP,
height = H*K + LABEL_HEIGHT."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgfiles import MgError, dataset, open_h5, run_main  # noqa: E402

GAP = 4             # white pixels between frames
LABEL_HEIGHT = 16   # band under the frames holding the step labels
DEFAULT_FRAMES = 8


def composite_on_white(frame):
    """Premultiplied RGBA [H][W][>=4] -> uint8 RGB [H][W][3] on white."""
    import numpy as np
    rgba = np.clip(frame[..., :4].astype(np.float64), 0.0, 1.0)
    rgb = np.clip(1.0 - rgba[..., 3:4] + rgba[..., :3], 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def choose_indices(steps, wanted):
    """Frame indices for the requested steps, or ~DEFAULT_FRAMES evenly spaced ones."""
    import numpy as np
    if wanted is None:
        n = len(steps)
        k = min(DEFAULT_FRAMES, n)
        # Always include the first (seed) and the last frame.
        return sorted(set(int(round(i)) for i in np.linspace(0, n - 1, k)))
    index = {int(s): i for i, s in enumerate(steps)}
    out = []
    for s in wanted:
        if s not in index:
            raise MgError("--steps %d: no frame at step %d; available steps: %s"
                          % (s, s, ",".join(str(int(x)) for x in steps)))
        out.append(index[s])
    return out


def parse_steps(text):
    try:
        values = [int(x) for x in text.split(",") if x.strip() != ""]
    except ValueError:
        raise MgError("--steps %s: expected a comma-separated list of integers" % text)
    if not values:
        raise MgError("--steps %s: no steps given" % text)
    return values


def main():
    ap = argparse.ArgumentParser(description="Side-by-side strip of frames from `morphogen grow`.")
    ap.add_argument("grow", metavar="GROW.h5")
    ap.add_argument("--out", required=True, metavar="PNG")
    ap.add_argument("--steps", default=None, metavar="S0,S1,...",
                    help="steps to show (default: about 8 evenly spaced frames)")
    ap.add_argument("--scale", type=int, default=4, metavar="K",
                    help="nearest-neighbour upscale factor (default 4)")
    args = ap.parse_args()
    if args.scale < 1 or args.scale > 64:
        raise MgError("--scale %d: must be in 1..64" % args.scale)
    wanted = parse_steps(args.steps) if args.steps is not None else None

    import numpy as np
    with open_h5(args.grow) as f:
        frames_ds = dataset(f, "frames", args.grow, ndim=4)
        steps = np.asarray(dataset(f, "steps", args.grow, ndim=1)[()])
        if frames_ds.shape[0] != len(steps):
            raise MgError("%s: /frames has %d frames but /steps has %d entries"
                          % (args.grow, frames_ds.shape[0], len(steps)))
        if frames_ds.shape[0] == 0:
            raise MgError("%s: no frames" % args.grow)
        if frames_ds.shape[3] < 4:
            raise MgError("%s: /frames has %d channels, need at least 4 (RGBA)"
                          % (args.grow, frames_ds.shape[3]))
        indices = choose_indices(steps, wanted)
        frames = [np.asarray(frames_ds[i]) for i in indices]

    from PIL import Image, ImageDraw, ImageFont
    h, w = frames[0].shape[0] * args.scale, frames[0].shape[1] * args.scale
    n = len(frames)
    canvas = Image.new("RGB", (n * w + (n - 1) * GAP, h + LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k, (i, frame) in enumerate(zip(indices, frames)):
        rgb = composite_on_white(frame)
        rgb = np.repeat(np.repeat(rgb, args.scale, axis=0), args.scale, axis=1)
        x0 = k * (w + GAP)
        canvas.paste(Image.fromarray(rgb, "RGB"), (x0, 0))
        label = str(int(steps[i]))
        tw = draw.textlength(label, font=font) if hasattr(draw, "textlength") else 6 * len(label)
        draw.text((x0 + max(0, (w - tw) / 2), h + 2), label, fill=(0, 0, 0), font=font)
    try:
        canvas.save(args.out, "PNG")
    except OSError as e:
        raise MgError("%s: cannot write (%s)" % (args.out, e.strerror or e))
    return 0


if __name__ == "__main__":
    run_main(main)
