#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build, run and test
# morphogen. Idempotent: packages already present are left alone.
# Usage: bash jobs/setup_debian.sh [--tests]   (--tests adds PyTorch for the
# autograd cross-check, and Slurm with munge for the job-script test)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libcmocka-dev libinih-dev libpng-dev libfreetype-dev fonts-noto-color-emoji
  python3-h5py python3-numpy python3-matplotlib python3-pil
  util-linux
)
if [[ "${1:-}" == "--tests" ]]; then
  packages+=(python3-torch slurm-wlm munge)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
