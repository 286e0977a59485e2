/* Fibers: the stacks on which the emulated GPU threads of a block run, and
 * the switches between them and the scheduler (launch.cc). Internal to the
 * CUDA emulator. */
#ifndef CUEMU_FIBER_H
#define CUEMU_FIBER_H

#include <stddef.h>

struct cuemu_fiber {
    char *stack; /* lowest usable byte; a guard page lies below */
    size_t size;
    void *context; /* where the fiber continues (see fiber.cc) */
    void (*entry)(void *);
    void *arg;
};

/* Gives f a stack of `bytes` (rounded up to pages). */
void cuemu_fiber_create(cuemu_fiber *f, size_t bytes);

/* Makes f start entry(arg) on its stack at the next cuemu_fiber_resume;
 * whatever f ran before is abandoned. */
void cuemu_fiber_start(cuemu_fiber *f, void (*entry)(void *), void *arg);

/* From the scheduler: run f until it yields or exits. */
void cuemu_fiber_resume(cuemu_fiber *f);

/* From inside f: back to the scheduler; returns at f's next resume. */
void cuemu_fiber_yield(cuemu_fiber *f);

/* From inside f: back to the scheduler for good (f may be started again). */
[[noreturn]] void cuemu_fiber_exit(cuemu_fiber *f);

#endif
