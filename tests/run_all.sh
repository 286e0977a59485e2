#!/usr/bin/env bash
# README command 2 (and what CI runs): set up a fresh Debian machine, build
# morphogen twice -- optimised, and with AddressSanitizer + UBSan -- and run
# the whole suite through ctest in both (the sanitizer build skips the tests
# labelled slow, which only repeat fast ones at larger sizes).
set -euo pipefail
cd "$(dirname "$0")/.."

bash jobs/setup_debian.sh --tests
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" >/dev/null
ctest --test-dir build --output-on-failure -j"$jobs"

# The CUDA backend is built (and its host side tested) in the release build
# above; sanitizers do not instrument device code, and the CUDA runtime needs
# special ASan options (protect_shadow_gap=0), so this build leaves it out.
# It is also the portable build (generic x86-64, no AVX-512), so the vector
# kernels' other code path runs the tests too.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMORPHOGEN_SANITIZE=ON -DMORPHOGEN_CUDA=OFF -DMORPHOGEN_PORTABLE=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
# Open MPI's own allocations outlive MPI_Finalize by design; tests/lsan.supp
# names only its libraries (full unwinding, so the suppressions match).
# print_suppressions=0: LeakSanitizer's table of what it suppressed would
# reach every rank's stderr, which tests that read stderr would see.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow
