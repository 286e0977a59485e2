#!/usr/bin/env bash
# Every kernel compiles without register spills for every GPU architecture
# morphogen is meant to run on, not only the ones this build targets: a
# spill (a thread's values parked in local memory, read back in the inner
# loops) is a slowdown no test on the CPU would see, and which architecture
# ptxas spills on changes with every edit of a kernel.
#
# Each kernels/*.cu is compiled as a Release build compiles it (-O3), once
# per architecture, with ptxas's -warn-spills made an error. A failure names
# the architecture, the file and ptxas's line (the kernel and its bytes).
# Needs only nvcc, no GPU.
#
# Env: NVCC (default nvcc), MG_SOURCE_DIR (default: this repository),
#      MG_SPILL_ARCHS (default "75 80 86 89 90 100 120": T4; A100; A10,
#      A40, RTX 30; L4, L40S, RTX 40; H100, H200; B200; RTX 50).
set -euo pipefail
src=${MG_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
nvcc=${NVCC:-nvcc}
archs=${MG_SPILL_ARCHS:-75 80 86 89 90 100 120}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v "$nvcc" >/dev/null || { echo "cuda_kernels_spill_free: NVCC=$nvcc: not found" >&2; exit 1; }

jobs=()
for arch in $archs; do
    [[ $arch =~ ^[0-9]+$ ]] || { echo "cuda_kernels_spill_free: MG_SPILL_ARCHS: '$arch' is not a number" >&2; exit 2; }
    for cu in "$src"/kernels/*.cu; do
        jobs+=("$arch $cu")
    done
done
[ ${#jobs[@]} -gt 0 ] || { echo "cuda_kernels_spill_free: no kernels in $src/kernels" >&2; exit 1; }

# One compilation: its diagnostics into $work/<arch>_<file>.log, prefixed.
compile() {
    local arch=${1%% *} cu=${1#* } log
    log="$work/${arch}_$(basename "$cu" .cu).log"
    if ! "$nvcc" -arch="sm_$arch" -O3 -DNDEBUG -std=c++17 --fmad=true -I"$src/include" -I"$src/kernels" \
        -Xptxas -warn-spills --Werror=all-warnings -cubin -o "$work/${arch}_$(basename "$cu" .cu).cubin" \
        "$cu" >"$log.raw" 2>&1; then
        sed "s|^|sm_$arch kernels/$(basename "$cu"): |" "$log.raw" >"$log"
    fi
    rm -f "$log.raw"
}
export -f compile
export nvcc src work
printf '%s\n' "${jobs[@]}" | xargs -d '\n' -n 1 -P "$(nproc)" bash -c 'compile "$0"'

failed=$(cat "$work"/*.log 2>/dev/null || true)
if [ -n "$failed" ]; then
    echo "$failed"
    echo "cuda_kernels_spill_free: FAILED: see the lines above (spills, or a compilation that failed)" >&2
    exit 1
fi
echo "cuda_kernels_spill_free: ${#jobs[@]} compilations (kernels/*.cu for sm_${archs// /, sm_}): no spills"
