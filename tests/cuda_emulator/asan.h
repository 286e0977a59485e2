/* Whether the emulator is built with AddressSanitizer (CUEMU_ASAN): gcc
 * says so with __SANITIZE_ADDRESS__, clang with __has_feature. The fibers
 * tell it about their stacks, and dynamic shared memory poisons the gap in
 * front of its base. */
#ifndef CUEMU_ASAN_H
#define CUEMU_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define CUEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUEMU_ASAN 1
#endif
#endif

#endif
