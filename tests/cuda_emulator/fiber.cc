/* Fibers for the emulated GPU threads (fiber.h).
 *
 * A fiber runs until its thread reaches __syncthreads or returns, so one
 * parity test switches tens of millions of times. glibc's swapcontext makes
 * a system call per switch (it saves the signal mask), which made the test
 * several times slower; on x86-64 the switch is therefore the few
 * instructions below (callee-saved registers, x87 and SSE control words, the
 * stack pointer). Other architectures, or -DCUEMU_FIBER_UCONTEXT, use
 * ucontext. AddressSanitizer is told about every switch, so that it knows
 * which stack is in use (and does not take a fiber's frames for the main
 * stack's). */
#include "fiber.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "asan.h"
#include "cuemu.h"

#ifdef CUEMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

/* The scheduler's stack (where cuemu_launch runs), as AddressSanitizer
 * reports it when the first fiber starts. */
const void *sched_bottom;
size_t sched_size;

void asan_start_switch(void **fake_stack, const void *bottom, size_t size)
{
#ifdef CUEMU_ASAN
    __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#else
    (void)fake_stack, (void)bottom, (void)size;
#endif
}

void asan_finish_switch(void *fake_stack, const void **old_bottom, size_t *old_size)
{
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, old_bottom, old_size);
#else
    (void)fake_stack, (void)old_bottom, (void)old_size;
#endif
}

/* First code on a fiber's stack. */
[[noreturn]] void fiber_main(cuemu_fiber *f)
{
    asan_finish_switch(nullptr, &sched_bottom, &sched_size);
    f->entry(f->arg);
    cuemu_fatal("a fiber's entry function returned instead of calling cuemu_fiber_exit");
}

} // namespace

#if defined(__x86_64__) && !defined(CUEMU_FIBER_UCONTEXT)

/* cuemu_switch_stack(save, load): push the callee-saved registers and the
 * control words, store the stack pointer in *save, continue on the stack
 * `load` (saved the same way, or prepared by cuemu_fiber_start), pop and
 * return there. cuemu_fiber_trampoline is where a new fiber's first
 * "return" lands: it calls fiber_main(f) with r12 = f and r13 = fiber_main,
 * at a 16-byte aligned stack as the ABI wants; CFI marks it as the
 * outermost frame for debuggers. */
extern "C" void cuemu_switch_stack(void **save, void *load);
extern "C" void cuemu_fiber_trampoline(void);
asm(R"(
    .text
    .p2align 4
    .globl cuemu_switch_stack
    .hidden cuemu_switch_stack
    .type cuemu_switch_stack, @function
cuemu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    fnstcw (%rsp)
    stmxcsr 8(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    fldcw (%rsp)
    ldmxcsr 8(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuemu_switch_stack, .-cuemu_switch_stack

    .p2align 4
    .globl cuemu_fiber_trampoline
    .hidden cuemu_fiber_trampoline
    .type cuemu_fiber_trampoline, @function
cuemu_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size cuemu_fiber_trampoline, .-cuemu_fiber_trampoline
)");

namespace {
void *sched_sp;
}

void cuemu_fiber_start(cuemu_fiber *f, void (*entry)(void *), void *arg)
{
    f->entry = entry;
    f->arg = arg;
    /* The frame cuemu_switch_stack pops: control words, r15, r14, r13, r12,
     * rbx, rbp, return address; 88 bytes below a 16-byte aligned top leave
     * the trampoline's call aligned. */
    const uintptr_t top = (uintptr_t)(f->stack + f->size) & ~(uintptr_t)15;
    uint64_t *sp = reinterpret_cast<uint64_t *>(top - 88);
    uint16_t fpucw;
    uint32_t mxcsr;
    asm volatile("fnstcw %0" : "=m"(fpucw));
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    sp[0] = fpucw;
    sp[1] = mxcsr;
    sp[2] = sp[3] = 0;                                 /* r15, r14 */
    sp[4] = reinterpret_cast<uintptr_t>(&fiber_main);  /* r13 */
    sp[5] = reinterpret_cast<uintptr_t>(f);            /* r12 */
    sp[6] = sp[7] = 0;                                 /* rbx, rbp (0 ends frame-pointer walks) */
    sp[8] = reinterpret_cast<uintptr_t>(&cuemu_fiber_trampoline);
    f->context = sp;
}

static void switch_to_fiber(cuemu_fiber *f) { cuemu_switch_stack(&sched_sp, f->context); }
static void switch_to_scheduler(cuemu_fiber *f) { cuemu_switch_stack(&f->context, sched_sp); }

#else /* ucontext */

#include <ucontext.h>

namespace {
ucontext_t sched_context;
cuemu_fiber *resuming; /* makecontext passes no pointers portably */
void ucontext_main(void) { fiber_main(resuming); }
} // namespace

void cuemu_fiber_start(cuemu_fiber *f, void (*entry)(void *), void *arg)
{
    f->entry = entry;
    f->arg = arg;
    ucontext_t *uc = static_cast<ucontext_t *>(f->context);
    if (getcontext(uc) != 0)
        cuemu_fatal("getcontext failed");
    uc->uc_stack.ss_sp = f->stack;
    uc->uc_stack.ss_size = f->size;
    uc->uc_link = nullptr;
    makecontext(uc, ucontext_main, 0);
}

static void switch_to_fiber(cuemu_fiber *f)
{
    resuming = f;
    swapcontext(&sched_context, static_cast<ucontext_t *>(f->context));
}
static void switch_to_scheduler(cuemu_fiber *f) { swapcontext(static_cast<ucontext_t *>(f->context), &sched_context); }

#endif

void cuemu_fiber_create(cuemu_fiber *f, size_t bytes)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    bytes = (bytes + page - 1) / page * page;
    void *base = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    if (base == MAP_FAILED || mprotect(base, page, PROT_NONE) != 0)
        cuemu_fatal("cannot map a fiber stack of %zu bytes", bytes);
    f->stack = static_cast<char *>(base) + page;
    f->size = bytes;
#if defined(__x86_64__) && !defined(CUEMU_FIBER_UCONTEXT)
    f->context = nullptr;
#else
    f->context = calloc(1, sizeof(ucontext_t));
    if (!f->context)
        cuemu_fatal("out of memory");
#endif
}

void cuemu_fiber_resume(cuemu_fiber *f)
{
    void *fake_stack = nullptr;
    asan_start_switch(&fake_stack, f->stack, f->size);
    switch_to_fiber(f);
    asan_finish_switch(fake_stack, nullptr, nullptr);
}

void cuemu_fiber_yield(cuemu_fiber *f)
{
    void *fake_stack = nullptr;
    asan_start_switch(&fake_stack, sched_bottom, sched_size);
    switch_to_scheduler(f);
    asan_finish_switch(fake_stack, nullptr, nullptr);
}

void cuemu_fiber_exit(cuemu_fiber *f)
{
    asan_start_switch(nullptr, sched_bottom, sched_size); /* null: this fiber's frames are done */
    switch_to_scheduler(f);
    __builtin_unreachable();
}
