#!/usr/bin/env bash
# README command 1: set up a fresh Debian machine, build morphogen, train the
# quickstart organism (a small lizard grown from one cell, ~2 minutes on 2
# cores), grow it, and plot its loss curve and growth strip.
# Outputs under runs/: quickstart.h5 (run file), quickstart_grow.h5 (frames),
# quickstart_loss.png, quickstart_strip.png.
set -euo pipefail
cd "$(dirname "$0")/.."

bash jobs/setup_debian.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

mkdir -p runs
./build/morphogen train configs/quickstart.ini --out runs/quickstart.h5
./build/morphogen grow runs/quickstart.h5 --out runs/quickstart_grow.h5 --strip runs/quickstart_grow_strip.png
PYTHON=${MORPHOGEN_PYTHON:-/usr/bin/python3}
"$PYTHON" analysis/loss_curve.py runs/quickstart.h5 --out runs/quickstart_loss.png
"$PYTHON" analysis/growth_strip.py runs/quickstart_grow.h5 --out runs/quickstart_strip.png
echo "quickstart: runs/quickstart_loss.png and runs/quickstart_strip.png written" >&2
