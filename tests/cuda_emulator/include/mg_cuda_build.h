/* The emulated build's stand-in for the generated kernels/mg_cuda_build.h:
 * the emulated backend plays a build with the default architecture list,
 * whatever this build was configured with (the emulator runs any kernel;
 * MG_CUEMU_NO_KERNEL_IMAGE=1 plays a GPU the build has no code for). */
#ifndef MG_CUDA_BUILD_H
#define MG_CUDA_BUILD_H

#define MG_CUDA_ARCHITECTURES "80;90"

#endif
