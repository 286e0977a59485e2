/* The NCCL library named by MORPHOGEN_NCCL, through morphogen's loader
 * (kernels/nccl_exchange.c), in a job of one rank. Built only with CUDA
 * (CMake names the toolkit's libnccl.so.2; the device check names the
 * GPU machine's); also run on the CUDA emulator with the emulated NCCL.
 *  - With a CUDA device: the communicator is created from a unique id
 *    passed by value, and the in-place all-gather of 1027 floats on a
 *    non-blocking stream (one rank: its own block is the result) leaves
 *    them bit for bit as they were. The only run of a real NCCL that one
 *    GPU allows: NCCL refuses two ranks on one GPU.
 *  - Without one (CI): the real library still loads, all seven functions
 *    resolve and ncclGetUniqueId makes an id, and then the communicator's
 *    creation fails (NCCL finds no driver) in one error that names it and
 *    says how to do without NCCL. A missing library or function would be a
 *    "not loaded" answer instead, and fails.
 * And on any machine: MORPHOGEN_NCCL=none chooses MPI without loading
 * anything, and a library without NCCL's functions is refused naming the
 * first one missing. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_cuda.h"
#include "nca_fixture.h"
#include "nccl_exchange.h"

#define NAME "test_cuda_nccl"

static mg_comm one_rank(void) { return (mg_comm){0, 1, 0, 1, NULL, 0, 0}; }

static void test_one_rank(void **state)
{
    (void)state;
    const char *library = getenv("MORPHOGEN_NCCL");
    if (!library || !*library || strcmp(library, "none") == 0) {
        printf("%s: skipped: MORPHOGEN_NCCL names no NCCL library (%s)\n", NAME,
               library && *library ? "none: NCCL is not to be used" : "none was found");
        skip();
    }
    char no_device[256];
    const int device = mg_cuda_device_available(no_device, sizeof no_device);
    mg_comm comm = one_rank();
    mg_nccl *x = NULL;
    char why[320] = "";
    mg_error err = {{0}};
    const int rc = mg_nccl_create(&comm, "test gpu", &x, why, sizeof why, &err);
    if (!device) {
        printf("%s: no CUDA device (%s): %s must load and fail at the communicator\n", NAME, no_device, library);
        if (rc == 0)
            fprintf(stderr, "%s: not loaded, or created without a device: %s\n", library, x ? "created" : why);
        assert_int_equal(rc, -1);
        assert_null(x);
        fprintf(stderr, "%s\n", err.msg);
        assert_non_null(strstr(err.msg, "creating the NCCL communicator (rank 0 of 1): "));
        assert_non_null(strstr(err.msg, "MORPHOGEN_NCCL=none exchanges the gradients through MPI instead"));
        assert_null(strchr(err.msg, '\n'));
        return;
    }
    if (rc != 0 || !x)
        fprintf(stderr, "%s: %s\n", library, rc ? err.msg : why);
    assert_int_equal(rc, 0);
    assert_non_null(x);

    enum { COUNT = 1027 }; /* not a multiple of any vector width */
    float host[COUNT], back[COUNT];
    for (int i = 0; i < COUNT; i++)
        host[i] = (float)fixture_uniform(900, (uint32_t)i, -1e3, 1e3);
    float *d = NULL;
    cudaStream_t stream = NULL;
    assert_int_equal(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    assert_int_equal(cudaMalloc((void **)&d, sizeof host), cudaSuccess);
    assert_int_equal(cudaMemcpy(d, host, sizeof host, cudaMemcpyHostToDevice), cudaSuccess);
    /* Written, not only staged, before another stream reads it. */
    assert_int_equal(cudaStreamSynchronize(0), cudaSuccess);
    if (mg_nccl_allgather(x, d, COUNT, stream, &err) != 0)
        fail_msg("%s", err.msg);
    for (int i = 0; i < COUNT; i++)
        back[i] = NAN; /* an element never copied back fails */
    assert_int_equal(cudaStreamSynchronize(stream), cudaSuccess);
    assert_int_equal(cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_memory_equal(back, host, sizeof host);
    mg_nccl_destroy(x);
    assert_int_equal(cudaFree(d), cudaSuccess);
    assert_int_equal(cudaStreamDestroy(stream), cudaSuccess);
}

/* mg_nccl_create on one rank with MORPHOGEN_NCCL set to `library` for the
 * call; a library that is not used must leave no communicator and say why. */
static void expect_not_used(const char *library, const char *expected_why)
{
    const char *was = getenv("MORPHOGEN_NCCL");
    char *saved = was ? strdup(was) : NULL;
    setenv("MORPHOGEN_NCCL", library, 1);
    mg_comm comm = one_rank();
    mg_nccl *x = NULL;
    char why[320] = "";
    mg_error err = {{0}};
    const int rc = mg_nccl_create(&comm, "test gpu", &x, why, sizeof why, &err);
    saved ? setenv("MORPHOGEN_NCCL", saved, 1) : unsetenv("MORPHOGEN_NCCL");
    free(saved);
    assert_int_equal(rc, 0);
    assert_null(x);
    assert_string_equal(why, expected_why);
}

/* Loads nothing, so no device is needed. */
static void test_none(void **state)
{
    (void)state;
    expect_not_used("none", "MORPHOGEN_NCCL=none");
}

/* libm is a shared library on every glibc system, and has none of NCCL's
 * functions. */
static void test_not_nccl(void **state)
{
    (void)state;
    expect_not_used("libm.so.6", "libm.so.6 is not an NCCL 2 library (it lacks ncclGetUniqueId)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_rank),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_not_nccl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
