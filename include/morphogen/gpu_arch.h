/* Which GPUs a CUDA build can run on, from the architectures it was
 * compiled for (MORPHOGEN_CUDA_ARCHITECTURES, CMake's CUDA_ARCHITECTURES
 * form). The driver decides whether a GPU has code; these rules only word
 * the cuda backend's refusal when it has none (another list, or another
 * toolkit). Plain host C: the rules are tested in every build, with or
 * without CUDA. */
#ifndef MORPHOGEN_GPU_ARCH_H
#define MORPHOGEN_GPU_ARCH_H

/* Whether a GPU of compute capability major.minor can run code built for
 * `archs`, entries separated by ';' or ',': "80" (machine code and PTX for
 * compute capability 8.0), "80-real" (machine code only), "80-virtual" (PTX
 * only), "90a" (sm_90a's architecture-specific code). Machine code runs on
 * GPUs of its major version and at least its minor; PTX is compiled by the
 * driver for any GPU at least its version; "a" code runs on its own
 * version only. 1: it can; 0: it cannot; -1: no entry runs, but the list
 * has one these rules cannot judge ("native", "all", "100f", anything
 * else), so the CUDA runtime has to tell. */
int mg_gpu_arch_runs(const char *archs, int major, int minor);

#endif
