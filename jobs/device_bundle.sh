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
out="build-bundle" # quoted: unquoted, shellcheck reads the dash as arithmetic (SC2100)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMORPHOGEN_CUDA=ON -DMORPHOGEN_CUDA_ARCHITECTURES=90 \
    -DMORPHOGEN_PORTABLE=ON >/dev/null
gpu_tests=(test_cuda_parity test_cuda_train test_cuda_nccl)
cmake --build "$build" -j"${MG_BUILD_JOBS:-$(nproc)}" --target morphogen "${gpu_tests[@]}" >/dev/null
rm -rf "$out"
mkdir -p "$out/lib"
cp "$build/morphogen" "${gpu_tests[@]/#/$build/tests/}" "$out/"
# Every library ldd resolves, minus glibc's own (the GPU machine's glibc must
# be at least as new as this one's, 2.36).
glibc='(libc|libm|libpthread|libdl|librt|ld-linux-x86-64)\.so'
for bin in "$out/morphogen" "${gpu_tests[@]/#/$out/}"; do
    ldd "$bin" | awk '/=> \// {print $3}'
done | sort -u | grep -vE "/$glibc" | while read -r lib; do
    cp -L "$lib" "$out/lib/"
done

# Open MPI's launcher, for the device check's 2-rank stage: morphogen alone
# needs no MPI runtime on 1 rank (it skips MPI_Init), but mpirun -np 2 needs
# orterun, the MCA plugins it and the ranks load, PMIx (the launcher is the
# PMIx server, each rank a client) and their help and parameter files. All
# of it goes under $out/openmpi and $out/pmix, found there through the
# environment variables build-bundle/mpirun sets (OPAL_* and PMIX_*: both
# libraries read their install paths from these), so the bundle works
# wherever it is copied. Single node only: no orted, no ssh.
ompi_lib=/usr/lib/x86_64-linux-gnu/openmpi/lib
pmix_dir=/usr/lib/x86_64-linux-gnu/pmix2
mkdir -p "$out/openmpi/bin" "$out/openmpi/lib/openmpi3" "$out/openmpi/share" "$out/openmpi/etc" \
    "$out/pmix/lib/pmix" "$out/pmix/share"
cp -L "$(command -v orterun)" "$out/openmpi/bin/orterun"
cp -r /usr/share/openmpi "$out/openmpi/share/"
cp /etc/openmpi/openmpi-mca-params.conf /etc/openmpi/openmpi-default-hostfile "$out/openmpi/etc/"
cp "$pmix_dir"/lib/pmix/*.so "$out/pmix/lib/pmix/"
cp -r "$pmix_dir/share/pmix" "$out/pmix/share/"
# The plugins whose libraries are all in $out/lib or small and listed here
# (PMIx and munge for the PMIx client plugin; Open MPI's common code for
# shared memory, MPI-IO (ompio: parallel HDF5 writes the run file through
# it) and monitoring). The rest need InfiniBand, UCX, libfabric, PSM or
# OpenSHMEM, which a single-node run does not use: leaving them out saves
# megabytes and copying nothing that could not load there.
extra='libpmix|libmunge|libmca_common_(sm|ompio|monitoring)'
for plugin in "$ompi_lib"/openmpi3/mca_*.so; do
    ok=1
    while read -r name path; do
        [ -e "$out/lib/$name" ] && continue
        if [[ "$name" =~ ^($extra)\.so ]]; then
            cp -L "$path" "$out/lib/"
        else
            ok=0
        fi
    done < <(LD_LIBRARY_PATH="$pmix_dir/lib:$ompi_lib" ldd "$plugin" | awk '/=> \// {print $1, $3}' |
             grep -vE "^$glibc")
    [ "$ok" = 1 ] && cp "$plugin" "$out/openmpi/lib/openmpi3/"
done
# What the added libraries load in turn (none today: libpmix's munge is a
# plugin's direct dependency too); grep finding nothing is no error.
LD_LIBRARY_PATH="$PWD/$out/lib" ldd "$out/openmpi/bin/orterun" "$out"/openmpi/lib/openmpi3/*.so "$out"/lib/*.so* |
    awk '/=> \// {print $3}' | sort -u |
    { grep -vE "^$PWD/$out/|/$glibc" || true; } |
    while read -r lib; do cp -L "$lib" "$out/lib/"; done
if LD_LIBRARY_PATH="$PWD/$out/lib" ldd "$out/openmpi/bin/orterun" "$out"/openmpi/lib/openmpi3/*.so | grep -q 'not found'; then
    echo "device_bundle: a bundled Open MPI plugin lacks a library" >&2
    exit 1
fi
cat >"$out/mpirun" <<'SH'
#!/bin/sh
# mpirun from this bundle (jobs/device_bundle.sh): Open MPI 4.1's orterun and
# PMIx 4.2 relocated here through their install-path variables (PMIx's
# plugin folder also by name: Debian's PMIx sets it by absolute path in its
# parameter file). Flags: root is allowed (the device machine runs commands
# as root); one node, launched without ssh or orted (plm isolated: neither
# is bundled); more ranks than cores and no binding (ranks share one GPU,
# tests oversubscribe); shared memory only, without the single-copy
# mechanism (CMA needs ptrace rights that containers often withhold).
here=$(cd "$(dirname "$0")" && pwd)
o="$here/openmpi"
export OPAL_PREFIX="$o" OPAL_EXEC_PREFIX="$o" OPAL_BINDIR="$o/bin" OPAL_LIBDIR="$here/lib" \
    OPAL_PKGLIBDIR="$o/lib/openmpi3" OPAL_DATAROOTDIR="$o/share" OPAL_DATADIR="$o/share" \
    OPAL_PKGDATADIR="$o/share/openmpi" OPAL_SYSCONFDIR="$o/etc"
export PMIX_PREFIX="$here/pmix" PMIX_EXEC_PREFIX="$here/pmix" PMIX_LIBDIR="$here/lib" \
    PMIX_PKGLIBDIR="$here/pmix/lib/pmix" PMIX_DATAROOTDIR="$here/pmix/share" PMIX_DATADIR="$here/pmix/share" \
    PMIX_PKGDATADIR="$here/pmix/share/pmix" PMIX_SYSCONFDIR="$here/pmix/share" \
    PMIX_MCA_mca_base_component_path="$here/pmix/lib/pmix"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$o/bin/orterun" --allow-run-as-root --oversubscribe --bind-to none --mca plm isolated --mca btl self,vader \
    --mca btl_vader_single_copy_mechanism none "$@"
SH
chmod +x "$out/mpirun"
du -sh "$out"
echo "bundle in $out/: copy it to the GPU machine and run MG_DEVICE_BUNDLE=$out bash jobs/device_check.sh"
