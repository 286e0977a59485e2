#!/usr/bin/env bash
# Every kernel compiles without register spills for every GPU architecture
# morphogen is meant to run on, not only the ones this build targets: a
# spill (a thread's values parked in local memory, read back in the inner
# loops) is a slowdown no test on the CPU would see, and which architecture
# ptxas spills on changes with every edit of a kernel.
#
# Each kernels/*.cu is compiled as a Release build compiles it (-O3), once
# per architecture, with ptxas's -warn-spills made an error. A failure names
# the architecture, the file and ptxas's line (the kernel and its bytes), or
# nvcc's exit status. Architectures this nvcc does not know (CUDA 12.0..12.7
# predate sm_100 and sm_120) are left out and named; with none left the test
# skips (exit 77). Needs only nvcc, no GPU.
#
# Env: NVCC (default nvcc), MG_SOURCE_DIR (default: this repository),
#      MG_SPILL_ARCHS (default "75 80 86 89 90 100 103 110 120 121": T4;
#      A100; A10, A40, RTX 30; L4, L40S, RTX 40; H100, H200; B200; B300;
#      Thor; RTX 50; DGX Spark).
set -euo pipefail
shopt -s nullglob
src=${MG_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
nvcc=${NVCC:-nvcc}
archs=${MG_SPILL_ARCHS-75 80 86 89 90 100 103 110 120 121}
command -v "$nvcc" >/dev/null || { echo "cuda_kernels_spill_free: NVCC=$nvcc: not found" >&2; exit 1; }
[ -n "${archs// /}" ] || { echo "cuda_kernels_spill_free: MG_SPILL_ARCHS is empty" >&2; exit 2; }
kernels=("$src"/kernels/*.cu)
[ ${#kernels[@]} -gt 0 ] || { echo "cuda_kernels_spill_free: no kernels in $src/kernels" >&2; exit 1; }
known=$("$nvcc" --list-gpu-arch) || { echo "cuda_kernels_spill_free: $nvcc --list-gpu-arch failed" >&2; exit 1; }
known=" $(echo $known) " # one line, spaces around each name

jobs=()
checked=()
unknown=()
for arch in $archs; do
    [[ $arch =~ ^[0-9]+$ ]] || { echo "cuda_kernels_spill_free: MG_SPILL_ARCHS: '$arch' is not a number" >&2; exit 2; }
    if [[ $known != *" compute_$arch "* ]]; then
        unknown+=("sm_$arch")
        continue
    fi
    checked+=("sm_$arch")
    for cu in "${kernels[@]}"; do
        jobs+=("$arch $cu")
    done
done
[ ${#unknown[@]} -eq 0 ] || echo "cuda_kernels_spill_free: not known to $nvcc, left out: ${unknown[*]}"
[ ${#jobs[@]} -gt 0 ] || { echo "cuda_kernels_spill_free: SKIPPED: no architecture left to check"; exit 77; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One compilation; on failure its diagnostics and exit status, prefixed,
# into $work/<arch>_<file>.log.
compile() {
    local arch=${1%% *} cu=${1#* } name rc=0
    name="${arch}_$(basename "$cu" .cu)"
    "$nvcc" -arch="sm_$arch" -O3 -DNDEBUG -std=c++17 --fmad=true -I"$src/include" -I"$src/kernels" \
        -Xptxas -warn-spills --Werror=all-warnings -cubin -o "$work/$name.cubin" "$cu" >"$work/$name.out" 2>&1 ||
        rc=$?
    if [ "$rc" != 0 ]; then
        { cat "$work/$name.out"; echo "nvcc exited $rc"; } | sed "s|^|sm_$arch kernels/$(basename "$cu"): |" \
            >"$work/$name.log"
    fi
    rm -f "$work/$name.out"
}
export -f compile
export nvcc src work
printf '%s\n' "${jobs[@]}" | xargs -d '\n' -n 1 -P "$(nproc)" bash -c 'compile "$0"'

logs=("$work"/*.log)
if [ ${#logs[@]} -gt 0 ]; then
    cat "${logs[@]}"
    echo "cuda_kernels_spill_free: FAILED: see the lines above (spills, or a compilation that failed)" >&2
    exit 1
fi
echo "cuda_kernels_spill_free: ${#jobs[@]} compilations (kernels/*.cu for ${checked[*]}): no spills"
