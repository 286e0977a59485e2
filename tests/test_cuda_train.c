/* The cuda backend's training operations (mg_train_ops, kernels/train_cuda.c
 * and train_kernels.cu) against the CPU reference (src/train_host.c). Built
 * only with CUDA, skipped without a device; also run on the CUDA emulator
 * (tests/cuda_emulator).
 *
 * Kernel by kernel, on the same inputs:
 *  - the gradient tree sum and 1/B scale are bitwise the CPU's (one thread
 *    per element walks mg_tree_sum's pairs: float additions in the same
 *    order round alike everywhere);
 *  - the tensor norms sum squares in double in another order: relative 1e-12
 *    (double rounding over ~1e3 terms is ~1e-13);
 *  - Adam (with and without normalisation) evaluates the same float
 *    expressions, but the compilers may contract different products into
 *    FMAs (or none, on a CPU without them): each parameter and moment
 *    within 4 FLT_EPSILON of the magnitudes of its expression's terms (see
 *    adam_tolerance), a bound that every legal evaluation is checked to
 *    meet;
 *  - reseeding copies the seed state and damage zeroes exactly the masked
 *    cells, each only in the samples whose action it is;
 *  - gathering rows out of a pool and scattering them back moves exactly
 *    the named rows, bit for bit.
 * Then four iterations of the whole sequence (gather, rollouts with keep,
 * reseed and damage, exchange, reduce, apply, sync) on both backends from
 * the same state, rollouts of 6, 5, 6 and 5 steps (so that the CUDA graphs
 * of iterations 1 and 2 are replayed with new iterations, samples and
 * weights; iteration 2 fires every cell and pins the seed cell, so the
 * graph of 5 steps must be captured again for iteration 4): losses 1e-5 relative, norms 1e-4, parameters, moments
 * and the pool 1e-4 of each array's largest magnitude (the rollouts'
 * gradients differ by float rounding, see test_cuda_parity.c; Adam's first
 * steps then move every weight by about lr, far above that). Host copies
 * of GPU results are poisoned with NaN before each call, so an element the
 * GPU never writes fails. A third backend with CUDA graphs switched off
 * (MORPHOGEN_CUDA_GRAPHS=0) gives the same bits as the one with graphs. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "cuda_fixture.h"
#include "mg_cuda_train.h"
#include "morphogen/backend.h"
#include "morphogen/config.h"
#include "morphogen/optimizer.h"
#include "morphogen/pool.h"

#define NAME "test_cuda_train"

static void *device_copy(const void *host, size_t bytes)
{
    void *d = NULL;
    assert_int_equal(cudaMalloc(&d, bytes ? bytes : 1), cudaSuccess);
    if (host)
        assert_int_equal(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
    return d;
}

static void download(void *host, const void *d, size_t bytes)
{
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    assert_int_equal(cudaMemcpy(host, d, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
}

static void test_tree_sum_bitwise(void **state)
{
    (void)state;
    require_device(NAME);
    const int64_t len = 1000;
    for (int n = 1; n <= 9; n++) {
        float *g = alloc_floats((size_t)n * len), *gpu = alloc_floats((size_t)n * len);
        for (int64_t i = 0; i < n * len; i++)
            g[i] = (float)fixture_uniform(500u + (uint32_t)n, (uint32_t)i, -1, 1) *
                   (float)pow(10.0, fixture_uniform(600u + (uint32_t)n, (uint32_t)i, -6, 2));
        float *d = device_copy(g, sizeof(float) * (size_t)n * len);
        assert_int_equal(mg_cuda_tree_sum_scale(n, len, 1.0f / (float)n, d, 0), cudaSuccess);
        poison(gpu, (size_t)len);
        download(gpu, d, sizeof(float) * (size_t)len);
        mg_tree_sum(g, n, len);
        for (int64_t i = 0; i < len; i++)
            g[i] *= 1.0f / (float)n;
        assert_memory_equal(gpu, g, sizeof(float) * (size_t)len);
        cudaFree(d);
        free(g), free(gpu);
    }
}

/* The layout of a small model, as the optimizer kernels see it. */
static mg_cuda_tensors layout(const mg_nca_dims *dims, mg_tensor_desc *t, int64_t *P)
{
    *P = mg_param_layout(dims, t);
    mg_cuda_tensors ct;
    memset(&ct, 0, sizeof ct);
    ct.n = 3;
    for (int k = 0; k < 3; k++) {
        ct.offset[k] = t[k].offset;
        ct.size[k] = t[k].size;
    }
    return ct;
}

static void test_norms(void **state)
{
    (void)state;
    require_device(NAME);
    const mg_nca_dims dims = {4, 4, 16, 128}; /* Distill's 18 k parameters: every norm block busy */
    mg_tensor_desc t[3];
    int64_t P;
    const mg_cuda_tensors ct = layout(&dims, t, &P);
    float *g = alloc_floats((size_t)P);
    for (int64_t i = 0; i < P; i++)
        g[i] = (float)fixture_uniform(700, (uint32_t)i, -1, 1) * (float)(1 + i % 3);
    float *d = device_copy(g, sizeof(float) * (size_t)P);
    double *d_partial = device_copy(NULL, sizeof(double) * 3 * MG_CUDA_NORM_BLOCKS);
    double *d_norms = device_copy(NULL, sizeof(double) * 3);
    double gpu[3] = {NAN, NAN, NAN}, cpu[3];
    assert_int_equal(mg_cuda_tensor_norms(d, &ct, d_partial, d_norms, 0), cudaSuccess);
    download(gpu, d_norms, sizeof gpu);
    mg_grad_norms(g, t, 3, cpu);
    for (int k = 0; k < 3; k++)
        expect_close_scalar(NAME, t[k].name, gpu[k], cpu[k], 1e-12);
    cudaFree(d), cudaFree(d_partial), cudaFree(d_norms);
    free(g);
}

/* Adam's update of one element, evaluated as a compiler may legally evaluate
 * mg_adam_update's expressions: each sum of two products with both rounded
 * on their own (a CPU without FMA, as the portable build) or with the first
 * or the second contracted into an FMA, p - decay p and the denominator
 * sqrt(v) c + eps each fused or not; every combination of those choices
 * (ADAM_WAYS; in nvcc 13's PTX for sm_90 the second product of m and of v
 * and the denominator are FMAs, and ptxas may still fuse p - decay p). The
 * volatile stores keep
 * -ffp-contract=fast from fusing the rounded forms. */
#define ADAM_WAYS 36
typedef struct adam_elem {
    float p, m, v;
} adam_elem;

static float rounded_product(float a, float b)
{
    volatile float r = a * b;
    return r;
}

/* a b + c, fused or not. */
static float multiply_add(int fused, float a, float b, float c)
{
    if (fused)
        return fmaf(a, b, c);
    volatile float r = rounded_product(a, b) + c;
    return r;
}

/* a b + c d: way 0 rounds both products, 1 fuses the first, 2 the second. */
static float sum_of_products(int way, float a, float b, float c, float d)
{
    return way == 2 ? multiply_add(1, c, d, rounded_product(a, b)) : multiply_add(way, a, b, rounded_product(c, d));
}

static adam_elem adam_contracted(int way, const mg_adam_coef *a, adam_elem x, float g)
{
    adam_elem y;
    y.m = sum_of_products(way % 3, a->b1, x.m, 1 - a->b1, g);
    y.v = sum_of_products(way / 3 % 3, a->b2, x.v, rounded_product(1 - a->b2, g), g);
    const float kept = multiply_add(way / 9 % 2, -a->decay, x.p, x.p);
    y.p = kept - a->step_size * y.m / multiply_add(way / 18, sqrtf(y.v), a->inv_sqrt_c2, a->eps);
    return y;
}

/* How far two legal evaluations of one element may differ. A sum of two
 * products rounds at most three times (each product, then the sum; an FMA
 * one product fewer), each time by at most FLT_EPSILON / 2 of the sum of
 * the terms' magnitudes, so one evaluation is within 1.5 FLT_EPSILON of
 * the exact value and two are within 3 FLT_EPSILON of each other. (The
 * scaled gradient is the same float on both sides: one rounded product of
 * the same scale.) That bound, not one relative to the result, holds
 * where b1 m and (1 - b1) g nearly cancel (a relative 1e-6 failed there,
 * 2.3e-6, between nvcc's contraction and a CPU without FMA). The
 * parameter's bound is 4 FLT_EPSILON of its own terms (p, decay p and the
 * update) plus the update's share of m's bound (step_size / denominator
 * times it); v reaches the parameter only through the denominator, and v's
 * terms are both positive, so v differs by about FLT_EPSILON relative at
 * most, and the denominator by about that: within the update's 4
 * FLT_EPSILON. Hence 4 rather than 3 everywhere; do not tighten m's share
 * without adding v's. (1.3 million random inputs, with decay 0, v down to
 * 1e-24 where eps dominates, and near-cancelling m, came within 0.5 of
 * this bound for every pair of the ADAM_WAYS evaluations.) */
static adam_elem adam_tolerance(const mg_adam_coef *a, adam_elem x, float g, adam_elem y)
{
    const float e = 4 * FLT_EPSILON;
    adam_elem t;
    t.m = e * (fabsf(a->b1 * x.m) + fabsf((1 - a->b1) * g));
    t.v = e * (fabsf(a->b2 * x.v) + fabsf((1 - a->b2) * g * g));
    const float den = sqrtf(y.v) * a->inv_sqrt_c2 + a->eps, step = fabsf(a->step_size * y.m / den);
    t.p = e * (fabsf(x.p) + fabsf(a->decay * x.p) + step) + a->step_size * t.m / den + FLT_MIN;
    return t;
}

static int adam_within(const char *who, int normalize, int64_t step, int64_t i, adam_elem have, adam_elem want,
                       adam_elem tol)
{
    const float h[3] = {have.p, have.m, have.v}, w[3] = {want.p, want.m, want.v}, t[3] = {tol.p, tol.m, tol.v};
    const char *name[3] = {"parameter", "m", "v"};
    int ok = 1;
    for (int j = 0; j < 3; j++)
        if (!(fabsf(h[j] - w[j]) <= t[j])) {
            fprintf(stderr, "adam (normalize %d, step %lld): %s %s of element %lld: %.9e, cpu %.9e, tolerance %.3e\n",
                    normalize, (long long)step, who, name[j], (long long)i, (double)h[j], (double)w[j], (double)t[j]);
            ok = 0;
        }
    return ok;
}

static void test_adam(void **state)
{
    (void)state;
    require_device(NAME);
    const mg_nca_dims dims = {4, 4, 5, 7};
    mg_tensor_desc t[3];
    int64_t P;
    const mg_cuda_tensors ct = layout(&dims, t, &P);
    mg_config cfg;
    mg_config_defaults(&cfg);
    cfg.weight_decay = 0.01; /* every term of the update in play */
    for (int normalize = 0; normalize <= 1; normalize++)
        for (int64_t step = 1; step <= 3; step += 2) {
            float *p = alloc_floats((size_t)P), *m = alloc_floats((size_t)P), *v = alloc_floats((size_t)P);
            float *g = alloc_floats((size_t)P);
            float *out[3] = {alloc_floats((size_t)P), alloc_floats((size_t)P), alloc_floats((size_t)P)};
            adam_elem *before = malloc(sizeof(adam_elem) * (size_t)P);
            assert_non_null(before);
            for (int64_t i = 0; i < P; i++) {
                p[i] = (float)fixture_uniform(800, (uint32_t)i, -1, 1);
                m[i] = step > 1 ? (float)fixture_uniform(801, (uint32_t)i, -1e-2, 1e-2) : 0.0f;
                v[i] = step > 1 ? (float)fixture_uniform(802, (uint32_t)i, 0, 1e-4) : 0.0f;
                g[i] = (float)fixture_uniform(803, (uint32_t)i, -1, 1) * 1e-2f;
                before[i] = (adam_elem){p[i], m[i], v[i]};
            }
            float *dp = device_copy(p, sizeof(float) * (size_t)P), *dm = device_copy(m, sizeof(float) * (size_t)P);
            float *dv = device_copy(v, sizeof(float) * (size_t)P), *dg = device_copy(g, sizeof(float) * (size_t)P);
            double norms[3];
            mg_grad_norms(g, t, 3, norms);
            float scale[MG_CUDA_MAX_TENSORS];
            for (int k = 0; k < 3; k++)
                scale[k] = mg_grad_scale(norms[k]);
            const mg_adam_coef c = mg_adam_coefficients(&cfg, 2e-3, step);
            const mg_cuda_adam a = {c.b1, c.b2, c.step_size, c.inv_sqrt_c2, c.eps, c.decay};
            assert_int_equal(mg_cuda_adam_update(&ct, normalize, scale, &a, dg, dp, dm, dv, 0), cudaSuccess);
            if (normalize)
                mg_grad_scale_tensors(g, t, 3, norms);
            mg_adam_update(&cfg, 2e-3, step, p, m, v, g, P);
            float *have[3] = {dp, dm, dv};
            for (int j = 0; j < 3; j++) {
                poison(out[j], (size_t)P);
                download(out[j], have[j], sizeof(float) * (size_t)P);
            }
            int ok = 1;
            for (int64_t i = 0; i < P; i++) {
                const adam_elem want = {p[i], m[i], v[i]};
                const adam_elem tol = adam_tolerance(&c, before[i], g[i], want);
                ok &= adam_within("gpu", normalize, step, i, (adam_elem){out[0][i], out[1][i], out[2][i]}, want, tol);
                /* The tolerance itself: every legal evaluation passes it. */
                for (int way = 0; way < ADAM_WAYS; way++) {
                    char who[32];
                    snprintf(who, sizeof who, "evaluation %d", way);
                    ok &= adam_within(who, normalize, step, i, adam_contracted(way, &c, before[i], g[i]), want, tol);
                }
            }
            if (!ok)
                fail();
            cudaFree(dp), cudaFree(dm), cudaFree(dv), cudaFree(dg);
            free(p), free(m), free(v), free(g), free(out[0]), free(out[1]), free(out[2]), free(before);
        }
}

static void test_apply_actions(void **state)
{
    (void)state;
    require_device(NAME);
    const int n = 4, cells = 37, C = 5;
    const size_t len = (size_t)cells * C, all = (size_t)n * len;
    float *s = alloc_floats(all), *out = alloc_floats(all), *seed = alloc_floats(len);
    unsigned char mask[4 * 37];
    const unsigned char action[4] = {MG_TRAIN_DAMAGE, MG_TRAIN_KEEP, MG_TRAIN_RESEED, MG_TRAIN_DAMAGE};
    for (size_t i = 0; i < all; i++)
        s[i] = (float)fixture_uniform(900, (uint32_t)i, 0.5, 1);
    for (size_t i = 0; i < len; i++)
        seed[i] = (float)fixture_uniform(902, (uint32_t)i, -1, 1);
    for (int i = 0; i < n * cells; i++)
        mask[i] = (unsigned char)(fixture_uniform(901, (uint32_t)i, 0, 1) < 0.4);
    float *d = device_copy(s, sizeof(float) * all), *ds = device_copy(seed, sizeof(float) * len);
    unsigned char *dm = device_copy(mask, sizeof mask), *da = device_copy(action, sizeof action);
    assert_int_equal(mg_cuda_apply_actions(n, cells, C, da, dm, ds, d, 0), cudaSuccess);
    poison(out, all);
    download(out, d, sizeof(float) * all);
    const mg_nca_dims dims = {1, cells, C, 1};
    for (int b = 0; b < n; b++)
        if (action[b] == MG_TRAIN_RESEED)
            memcpy(s + (size_t)b * len, seed, sizeof(float) * len);
        else if (action[b] == MG_TRAIN_DAMAGE)
            mg_zero_cells(&dims, mask + (size_t)b * cells, s + (size_t)b * len);
    assert_memory_equal(out, s, sizeof(float) * all);
    cudaFree(d), cudaFree(ds), cudaFree(dm), cudaFree(da);
    free(s), free(out), free(seed);
}

/* Rows out of a pool in a scrambled order, then back into another. */
static void test_move_rows(void **state)
{
    (void)state;
    require_device(NAME);
    const int pool = 7, n = 4;
    const int64_t row = 1000; /* several blocks per row */
    const int32_t from[4] = {5, 0, 6, 2}, to[4] = {1, 3, 0, 6};
    float *p = alloc_floats((size_t)pool * row), *batch = alloc_floats((size_t)n * row),
          *want = alloc_floats((size_t)pool * row);
    for (int64_t i = 0; i < pool * row; i++)
        p[i] = (float)fixture_uniform(903, (uint32_t)i, -1, 1);
    float *dp = device_copy(p, sizeof(float) * (size_t)(pool * row)), *db = device_copy(NULL, sizeof(float) * (size_t)(n * row));
    int32_t *df = device_copy(from, sizeof from), *dt = device_copy(to, sizeof to);
    assert_int_equal(mg_cuda_gather_rows(n, row, df, dp, db, 0), cudaSuccess);
    poison(batch, (size_t)(n * row));
    download(batch, db, sizeof(float) * (size_t)(n * row));
    for (int i = 0; i < n; i++)
        assert_memory_equal(batch + row * i, p + row * from[i], sizeof(float) * (size_t)row);
    /* Scatter the gathered rows, each scaled by a row-specific sign, back. */
    for (int64_t i = 0; i < n * row; i++)
        batch[i] = -batch[i] - (float)(i / row);
    assert_int_equal(cudaMemcpy(db, batch, sizeof(float) * (size_t)(n * row), cudaMemcpyHostToDevice), cudaSuccess);
    assert_int_equal(mg_cuda_scatter_rows(n, row, dt, db, dp, 0), cudaSuccess);
    memcpy(want, p, sizeof(float) * (size_t)(pool * row));
    for (int i = 0; i < n; i++)
        memcpy(want + row * to[i], batch + row * i, sizeof(float) * (size_t)row);
    poison(p, (size_t)(pool * row));
    download(p, dp, sizeof(float) * (size_t)(pool * row));
    assert_memory_equal(p, want, sizeof(float) * (size_t)(pool * row));
    cudaFree(dp), cudaFree(db), cudaFree(df), cudaFree(dt);
    free(p), free(batch), free(want);
}

/* One backend's copy of a training state. */
typedef struct train_copy {
    float *params, *m, *v, *pool;
} train_copy;

static void test_train_ops_parity(void **state)
{
    (void)state;
    require_device(NAME);
    const mg_nca_dims dims = {12, 10, 6, 9};
    const int B = 3, pool_count = 5, n_targets = 2, steps = 6, iterations = 4;
    const int cells = mg_cells(&dims);
    const size_t n_state = (size_t)cells * dims.channels;
    mg_tensor_desc t[3];
    const int64_t P = mg_param_layout(&dims, t);
    mg_config cfg;
    mg_config_defaults(&cfg);
    cfg.checkpoint_steps = 4; /* a recomputed segment on the GPU */
    cfg.weight_decay = 0.001;
    mg_comm comm = {0, 1, 0, 1, NULL, 0, 0};
    mg_error err = {{0}};
    mg_backend *be[3] = {mg_backend_cpu_create(&cfg, &dims, steps, &err),
                         mg_backend_cuda_create(&cfg, &dims, steps, &comm, &err),
                         mg_backend_cuda_create(&cfg, &dims, steps, &comm, &err)};
    if (!be[0] || !be[1] || !be[2]) {
        fprintf(stderr, "%s\n", err.msg);
        fail();
    }

    float *targets = alloc_floats((size_t)cells * 4 * n_targets);
    for (int i = 0; i < cells * 4 * n_targets; i++)
        targets[i] = (float)fixture_uniform(60, (uint32_t)i, 0, 1);
    double *sd = malloc(sizeof(double) * n_state);
    assert_non_null(sd);
    train_copy copy[3];
    for (int j = 0; j < 3; j++) {
        copy[j] = (train_copy){alloc_floats((size_t)P), alloc_floats((size_t)P), alloc_floats((size_t)P),
                               alloc_floats(n_state * pool_count)};
        random_params(&dims, copy[j].params);
        memset(copy[j].m, 0, sizeof(float) * (size_t)P);
        memset(copy[j].v, 0, sizeof(float) * (size_t)P);
        for (int i = 0; i < pool_count; i++) {
            fixture_state(&dims, 40u + (uint32_t)i, 0.6, sd);
            to_float(sd, copy[j].pool + n_state * i, n_state);
        }
        const mg_train_state s = {&cfg, dims, 3, t, P, copy[j].params, copy[j].m, copy[j].v, pool_count,
                                  copy[j].pool, n_targets, targets, B, 0, B, &comm};
        if (j == 2)
            setenv("MORPHOGEN_CUDA_GRAPHS", "0", 1);
        const int attached = be[j]->ops->train->attach(be[j], &s, &err);
        unsetenv("MORPHOGEN_CUDA_GRAPHS");
        if (attached != 0) {
            fprintf(stderr, "%s attach: %s\n", be[j]->ops->name, err.msg);
            fail();
        }
    }
    /* Each iteration: which pool samples, and what happens to them. */
    const int32_t local[4][3] = {{0, 2, 4}, {3, 1, 0}, {4, 1, 2}, {2, 0, 3}};
    const unsigned char action[4][3] = {{MG_TRAIN_KEEP, MG_TRAIN_RESEED, MG_TRAIN_DAMAGE},
                                        {MG_TRAIN_DAMAGE, MG_TRAIN_KEEP, MG_TRAIN_DAMAGE},
                                        {MG_TRAIN_KEEP, MG_TRAIN_KEEP, MG_TRAIN_RESEED},
                                        {MG_TRAIN_DAMAGE, MG_TRAIN_KEEP, MG_TRAIN_KEEP}};
    unsigned char *damage = malloc((size_t)cells * B);
    assert_non_null(damage);
    for (int it = 0; it < iterations; it++) {
        uint32_t sample[3];
        int32_t target[3];
        for (int i = 0; i < B; i++) {
            sample[i] = (uint32_t)(local[it][i] * 7 + 1);
            target[i] = (local[it][i] + i) % n_targets;
            mg_damage_mask(&cfg, &dims, it + 1, (int32_t)sample[i], damage + (size_t)cells * i);
        }
        const mg_train_batch b = {(uint32_t)(it + 1), steps - it % 2,
                                  {mg_fire_threshold(it == 1 ? 1.0 : 0.5), 0.1, it == 1 ? mg_seed_cell(&cfg, &dims) : -1, NULL},
                                  local[it], sample, target, action[it], damage};
        double pre[3][3], post[3][3], norms[3][3];
        for (int j = 0; j < 3; j++) {
            const mg_train_ops *ops = be[j]->ops->train;
            for (int i = 0; i < 3; i++)
                pre[j][i] = post[j][i] = norms[j][i] = NAN;
            if (ops->gather(be[j], &b, pre[j], &err) != 0 || ops->rollouts(be[j], &b, post[j], &err) != 0 ||
                ops->exchange(be[j], &err) != 0 || ops->reduce(be[j], norms[j], &err) != 0 ||
                ops->apply(be[j], &b, norms[j], 2e-3, it + 1, &err) != 0) {
                fprintf(stderr, "%s iteration %d: %s\n", be[j]->ops->name, it + 1, err.msg);
                fail();
            }
        }
        char what[256];
        for (int i = 0; i < B; i++) {
            snprintf(what, sizeof what, "iteration %d, loss before, position %d", it + 1, i);
            expect_close_scalar(NAME, what, pre[1][i], pre[0][i], 1e-5);
            snprintf(what, sizeof what, "iteration %d, loss after, position %d", it + 1, i);
            expect_close_scalar(NAME, what, post[1][i], post[0][i], 1e-5);
        }
        for (int k = 0; k < 3; k++) {
            snprintf(what, sizeof what, "iteration %d, norm of %s", it + 1, t[k].name);
            expect_close_scalar(NAME, what, norms[1][k], norms[0][k], 1e-4);
        }
        assert_memory_equal(pre[2], pre[1], sizeof pre[1]);
        assert_memory_equal(post[2], post[1], sizeof post[1]);
        assert_memory_equal(norms[2], norms[1], sizeof norms[1]);
    }
    /* Returning a batch to the pool needs one writer per pool sample. */
    const int32_t twice[3] = {1, 4, 1};
    const mg_train_batch dup = {.local_index = twice};
    const double unit[3] = {1, 1, 1};
    assert_int_equal(be[1]->ops->train->apply(be[1], &dup, unit, 2e-3, 5, &err), -1);
    assert_non_null(strstr(err.msg, "batch positions 0 and 2 name the same pool sample 1"));
    /* sync must write every element of the host copy. */
    poison(copy[1].params, (size_t)P), poison(copy[1].m, (size_t)P), poison(copy[1].v, (size_t)P);
    poison(copy[1].pool, n_state * pool_count);
    for (int j = 0; j < 3; j++)
        assert_int_equal(be[j]->ops->train->sync(be[j], 1, &err), 0);
    for (int k = 0; k < 3; k++) {
        expect_close(NAME, t[k].name, -1, copy[1].params + t[k].offset, copy[0].params + t[k].offset,
                     (size_t)t[k].size, 1e-4);
        expect_close(NAME, "adam_m", k, copy[1].m + t[k].offset, copy[0].m + t[k].offset, (size_t)t[k].size, 1e-4);
        expect_close(NAME, "adam_v", k, copy[1].v + t[k].offset, copy[0].v + t[k].offset, (size_t)t[k].size, 1e-4);
    }
    for (int i = 0; i < pool_count; i++)
        expect_close(NAME, "pool sample", i, copy[1].pool + n_state * i, copy[0].pool + n_state * i, n_state, 1e-4);
    assert_memory_equal(copy[2].params, copy[1].params, sizeof(float) * (size_t)P);
    assert_memory_equal(copy[2].m, copy[1].m, sizeof(float) * (size_t)P);
    assert_memory_equal(copy[2].v, copy[1].v, sizeof(float) * (size_t)P);
    assert_memory_equal(copy[2].pool, copy[1].pool, sizeof(float) * n_state * pool_count);
    /* The pool moved: sample 1 was reseeded then rolled out, not its start. */
    fixture_state(&dims, 41u, 0.6, sd);
    float *start = alloc_floats(n_state);
    to_float(sd, start, n_state);
    assert_true(memcmp(start, copy[0].pool + n_state, sizeof(float) * n_state) != 0);

    free(start), free(damage), free(sd), free(targets);
    for (int j = 0; j < 3; j++) {
        free(copy[j].params), free(copy[j].m), free(copy[j].v), free(copy[j].pool);
        mg_backend_destroy(be[j]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_sum_bitwise), cmocka_unit_test(test_norms),
        cmocka_unit_test(test_adam),             cmocka_unit_test(test_apply_actions),
        cmocka_unit_test(test_move_rows),
        cmocka_unit_test(test_train_ops_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
