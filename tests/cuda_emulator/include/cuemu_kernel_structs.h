/* The device pointers inside the struct parameters of morphogen's kernels
 * (kernels/mg_cuda.h), for the emulator's launch check (cuemu.h,
 * cuemu_pointer_fields): each must be null or point into a live device
 * allocation at every launch and every replay of a captured one, as the
 * pointer parameters must. A new pointer field belongs here too. */
#ifndef CUEMU_KERNEL_STRUCTS_H
#define CUEMU_KERNEL_STRUCTS_H

#include "cuemu.h"
#include "mg_cuda.h"

static inline void cuemu_pointer_fields(const mg_cuda_step &a, const cuemu_field_visitor &visit)
{
    visit("d_iteration", a.d_iteration);
    visit("d_sample_index", a.d_sample_index);
    visit("d_freeze", a.d_freeze);
    visit("d_params", a.d_params);
}

static inline void cuemu_pointer_fields(const mg_cuda_work &w, const cuemu_field_visitor &visit)
{
    visit("d_pre", w.d_pre);
    visit("d_flag", w.d_flag);
    visit("d_flag_count", w.d_flag_count);
    visit("d_active", w.d_active);
    visit("d_count", w.d_count);
    visit("d_gp", w.d_gp);
    visit("d_partial", w.d_partial);
}

/* A field added to either struct changes its size and stops the build here,
 * so that a new pointer field cannot go unchecked: add it above (if it is a
 * device pointer), then update the size. */
static_assert(sizeof(mg_cuda_work) == 7 * sizeof(void *), "mg_cuda_work changed: update cuemu_pointer_fields");
static_assert(sizeof(mg_cuda_step) == 88, "mg_cuda_step changed: update cuemu_pointer_fields");

#endif
