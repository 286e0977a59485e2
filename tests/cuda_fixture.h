/* Shared by the CUDA tests (test_cuda_*.c, also run on the CUDA emulator):
 * skipping without a device, NaN poisoning, random weights and the
 * tolerance comparison against the CPU reference. Include after cmocka.h. */
#ifndef MORPHOGEN_TEST_CUDA_FIXTURE_H
#define MORPHOGEN_TEST_CUDA_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mg_cuda.h"
#include "nca_fixture.h"

/* Skip the calling test, saying why once, when no CUDA device is usable. */
static void require_device(const char *test_name)
{
    static int have_device = -1;
    static char why[256];
    if (have_device < 0) {
        have_device = mg_cuda_device_available(why, sizeof why);
        if (!have_device)
            printf("%s: skipped: no usable CUDA device (%s)\n", test_name, why);
    }
    if (!have_device)
        skip();
}

static float *alloc_floats(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    return p;
}

static void poison(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
}

/* Weights with O(1) activations for any C and H: w1 ~ U(+-1.7/sqrt(3C)),
 * b1 ~ U(+-0.2), w2 ~ U(+-0.5/sqrt(H)). */
static void random_params(const mg_nca_dims *d, float *p)
{
    mg_tensor_desc t[3];
    mg_param_layout(d, t);
    const double scale[3] = {1.7 / sqrt(3.0 * d->channels), 0.2, 0.5 / sqrt((double)d->hidden)};
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < t[k].size; i++)
            p[t[k].offset + i] = (float)fixture_uniform(300u + (uint32_t)k, (uint32_t)i, -scale[k], scale[k]);
}

/* Largest |a - b| must be within rtol of max |b| (b = CPU reference).
 * MG_PARITY_REPORT=1 prints every comparison's measured ratio as a line
 * "ratio CASE WHAT SAMPLE VALUE" (scalars: "ratio CASE WHAT VALUE"), from
 * which the tolerances' margins are read (the device check records them). */
static void expect_close(const char *case_name, const char *what, int sample, const float *a, const float *b,
                         size_t n, double rtol)
{
    double scale = 0, worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= worst)) { /* NaN (an unwritten, poisoned element) lands here */
            worst = isnan(e) ? INFINITY : e;
            worst_i = i;
        }
    }
    if (getenv("MG_PARITY_REPORT"))
        fprintf(stderr, "ratio %s %s %d %.3e\n", case_name, what, sample, scale > 0 ? worst / scale : worst);
    if (!(worst <= rtol * scale)) {
        fprintf(stderr, "%s: %s (sample %d): max |gpu - cpu| = %.3e at %zu (gpu %.9e, cpu %.9e), scale %.3e\n",
                case_name, what, sample, worst, worst_i, (double)a[worst_i], (double)b[worst_i], scale);
        fail();
    }
}

/* |a - b| within rtol of |b|, for scalars such as losses and norms. */
static void expect_close_scalar(const char *case_name, const char *what, double a, double b, double rtol)
{
    if (getenv("MG_PARITY_REPORT"))
        fprintf(stderr, "ratio %s %s %.3e\n", case_name, what, fabs(a - b) / fabs(b));
    if (!(fabs(a - b) <= rtol * fabs(b))) {
        fprintf(stderr, "%s: %s: gpu %.12e cpu %.12e\n", case_name, what, a, b);
        fail();
    }
}

#endif
