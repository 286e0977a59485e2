#!/usr/bin/env bash
# Build morphogen with the CUDA backend HERE and pack what a GPU machine
# without this project's build dependencies (HDF5, Open MPI, libinih, libpng,
# FreeType, cmocka) needs to run it: the executable, the GPU tests and every
# shared library they load except the C library itself, into build-bundle/
# (ignored by git). Then, on the GPU machine:
#   MG_DEVICE_BUNDLE=build-bundle bash jobs/device_check.sh
# Usage: bash jobs/device_bundle.sh [BUILD_DIR]   (default build-bundle-obj; portable x86-64 code)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bundle-obj}
out=build-bundle
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMORPHOGEN_CUDA=ON -DMORPHOGEN_CUDA_ARCHITECTURES=90 \
    -DMORPHOGEN_PORTABLE=ON >/dev/null
cmake --build "$build" -j"${MG_BUILD_JOBS:-$(nproc)}" --target morphogen test_cuda_parity test_cuda_train >/dev/null
rm -rf "$out"
mkdir -p "$out/lib"
cp "$build/morphogen" "$build/tests/test_cuda_parity" "$build/tests/test_cuda_train" "$out/"
# Every library ldd resolves, minus glibc's own (the GPU machine's glibc must
# be at least as new as this one's, 2.36).
for bin in "$out/morphogen" "$out/test_cuda_parity" "$out/test_cuda_train"; do
    ldd "$bin" | awk '/=> \// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux-x86-64)\.so' | while read -r lib; do
    cp -L "$lib" "$out/lib/"
done
du -sh "$out"
echo "bundle in $out/: copy it to the GPU machine and run MG_DEVICE_BUNDLE=$out bash jobs/device_check.sh"
