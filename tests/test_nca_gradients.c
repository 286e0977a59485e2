/* Finite-difference checks, in double precision, of the gradient of every op
 * of the NCA (perception, dense layers, loss, masking step) and of whole
 * multi-step rollouts with fire and alive masks active. The double build is
 * the same source as the float build that trains (src/nca is compiled
 * twice), so these checks cover the training code.
 *
 * Tolerance: central differences with h = 1e-6 have truncation error
 * O(h^2 * f''') ~ 1e-12 and rounding error ~ 1e-16 * |L| / h ~ 1e-10 for our
 * O(1) losses, so agreement to 1e-6 relative to the gradient's scale leaves a
 * wide margin while any real error (a missing term, a wrong index) is off by
 * O(1). The masks are piecewise constant; the fixtures keep alpha away from
 * the threshold so no perturbation flips one (asserted below). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MG_PRECISION_F64
#include "../src/nca/dense.h"
#include "../src/nca/perceive.h"
#include "nca_fixture.h"

#define FD_H 1e-6
#define FD_RTOL 1e-6

/* Compare analytic `an` with finite differences `fd` of n values: the error
 * must be below FD_RTOL times the largest gradient magnitude (plus a floor). */
static void assert_gradients_close(const char *what, const double *an, const double *fd, size_t n)
{
    double scale = 0, worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(an[i]));
    for (size_t i = 0; i < n; i++) {
        const double e = fabs(an[i] - fd[i]);
        if (e > worst) {
            worst = e;
            worst_i = i;
        }
    }
    if (!(worst <= FD_RTOL * scale + 1e-10)) {
        fprintf(stderr, "%s: max |analytic - fd| = %.3e at %zu (analytic %.9e, fd %.9e, scale %.3e)\n", what,
                worst, worst_i, an[worst_i], fd[worst_i], scale);
        fail();
    }
    assert_true(scale > 1e-6); /* a vanishing gradient would make the check empty */
}

static const mg_nca_dims DIMS = {7, 6, 6, 8}; /* not square, small, C > 4 */

/* ---- perception: L = sum(q * perceive(s)) ---- */
static double perception_objective(const double *s, const double *q)
{
    const int K = mg_perception_size(&DIMS);
    double p[7 * 6 * 18], sum = 0;
    mg_perceive_grid_f64(&DIMS, s, p);
    for (int i = 0; i < mg_cells(&DIMS) * K; i++)
        sum += q[i] * p[i];
    return sum;
}

static void test_perception_transpose(void **state)
{
    (void)state;
    const int n = mg_cells(&DIMS) * DIMS.channels, K = mg_perception_size(&DIMS);
    double s[7 * 6 * 6], q[7 * 6 * 18], an[7 * 6 * 6] = {0}, fd[7 * 6 * 6];
    fixture_state(&DIMS, 1, 0.7, s);
    for (int i = 0; i < mg_cells(&DIMS) * K; i++)
        q[i] = fixture_uniform(2, (uint32_t)i, -1, 1);
    for (int y = 0; y < DIMS.height; y++)
        for (int x = 0; x < DIMS.width; x++)
            perceive_cell_transpose(&DIMS, q + ((size_t)y * DIMS.width + x) * K, y, x, an);
    for (int i = 0; i < n; i++) {
        const double keep = s[i];
        s[i] = keep + FD_H;
        const double up = perception_objective(s, q);
        s[i] = keep - FD_H;
        const double down = perception_objective(s, q);
        s[i] = keep;
        fd[i] = (up - down) / (2 * FD_H);
    }
    assert_gradients_close("perception", an, fd, (size_t)n);
}

/* ---- dense layers: L = sum(q * u(p)) over a tile ---- */
enum { DN = 5, DK = 18, DH = 8, DC = 6 };

static double dense_objective(const double *p, const double *w, const double *q)
{
    double z[DN * DH], r[DN * DH], u[DN * DC], sum = 0;
    dense_hidden(DN, DK, DH, p, w, w + DK * DH, z);
    dense_output(DN, DH, DC, z, w + DK * DH + DH, r, u);
    for (int i = 0; i < DN * DC; i++)
        sum += q[i] * u[i];
    return sum;
}

static void test_dense_layers(void **state)
{
    (void)state;
    enum { NW = DK * DH + DH + DH * DC };
    double p[DN * DK], w[NW], q[DN * DC], z[DN * DH], r[DN * DH], gz[DN * DH], gp[DN * DK];
    double w1t[DH * DK], w2t[DC * DH], gw1t[DH * DK] = {0}, g[NW] = {0}, fd[NW], fdp[DN * DK];
    for (int i = 0; i < DN * DK; i++)
        p[i] = fixture_uniform(3, (uint32_t)i, -1, 1);
    fixture_params(&DIMS, 4, w);
    for (int i = 0; i < DN * DC; i++)
        q[i] = fixture_uniform(5, (uint32_t)i, -1, 1);
    for (int h = 0; h < DH; h++) {
        for (int k = 0; k < DK; k++)
            w1t[h * DK + k] = w[k * DH + h];
        for (int c = 0; c < DC; c++)
            w2t[c * DH + h] = w[DK * DH + DH + h * DC + c];
    }
    dense_hidden(DN, DK, DH, p, w, w + DK * DH, z);
    dense_backward(DN, DK, DH, DC, p, z, q, w1t, w2t, r, gz, gp, gw1t, g + DK * DH, g + DK * DH + DH);
    for (int h = 0; h < DH; h++) /* the w1 gradient comes transposed */
        for (int k = 0; k < DK; k++)
            g[k * DH + h] = gw1t[h * DK + k];
    for (int i = 0; i < NW; i++) {
        const double keep = w[i];
        w[i] = keep + FD_H;
        const double up = dense_objective(p, w, q);
        w[i] = keep - FD_H;
        const double down = dense_objective(p, w, q);
        w[i] = keep;
        fd[i] = (up - down) / (2 * FD_H);
    }
    assert_gradients_close("dense weights", g, fd, NW);
    for (int i = 0; i < DN * DK; i++) {
        const double keep = p[i];
        p[i] = keep + FD_H;
        const double up = dense_objective(p, w, q);
        p[i] = keep - FD_H;
        const double down = dense_objective(p, w, q);
        p[i] = keep;
        fdp[i] = (up - down) / (2 * FD_H);
    }
    assert_gradients_close("dense inputs", gp, fdp, DN * DK);
}

/* ---- loss ---- */
static void test_loss_gradient(void **state)
{
    (void)state;
    const int n = mg_cells(&DIMS) * DIMS.channels;
    double s[7 * 6 * 6], g[7 * 6 * 6], fd[7 * 6 * 6];
    float target[7 * 6 * 4];
    fixture_state(&DIMS, 6, 0.6, s);
    for (int i = 0; i < mg_cells(&DIMS) * 4; i++)
        target[i] = (float)fixture_uniform(7, (uint32_t)i, 0, 1);
    mg_loss_f64(&DIMS, s, target, g, 1.0);
    for (int i = 0; i < n; i++) {
        const double keep = s[i];
        s[i] = keep + FD_H;
        const double up = mg_loss_f64(&DIMS, s, target, NULL, 1.0);
        s[i] = keep - FD_H;
        const double down = mg_loss_f64(&DIMS, s, target, NULL, 1.0);
        s[i] = keep;
        fd[i] = (up - down) / (2 * FD_H);
    }
    assert_gradients_close("loss", g, fd, (size_t)n);
}

/* ---- whole rollouts: L = loss(rollout(s0, params)) ---- */
typedef struct rollout_case {
    int steps, checkpoint_steps, pin_cell;
    double fire_rate;
    const unsigned char *freeze;
    const mg_nca_dims *dims; /* NULL: RDIMS */
} rollout_case;

/* Larger than DIMS so that a sparse start keeps dead regions for several steps. */
static const mg_nca_dims RDIMS = {11, 9, 6, 8};

static double rollout_loss(const mg_nca_dims *d, mg_tape *tape, const mg_step_rules *r, const double *params,
                           const double *s0, const float *target, int steps, double *s_final)
{
    const mg_rollout_key key = {42, 7, 3};
    assert_int_equal(mg_rollout_forward_f64(tape, r, &key, params, steps, s0, s_final), 0);
    return mg_loss_f64(d, s_final, target, NULL, 1.0);
}

static void check_rollout_gradient(const rollout_case *rc)
{
    const mg_nca_dims *d = rc->dims ? rc->dims : &RDIMS;
    mg_tensor_desc t[3];
    const int64_t np = mg_param_layout(d, t);
    const int n = mg_cells(d) * d->channels;
    double *params = calloc((size_t)np, sizeof *params), *g = calloc((size_t)np, sizeof *g);
    double *fd = calloc((size_t)np, sizeof *fd), *s0 = calloc((size_t)n, sizeof *s0);
    double *s_final = calloc((size_t)n, sizeof *s_final), *g_final = calloc((size_t)n, sizeof *g_final);
    double *g_s0 = calloc((size_t)n, sizeof *g_s0), *fd_s0 = calloc((size_t)n, sizeof *fd_s0);
    float *target = malloc(sizeof(float) * (size_t)mg_cells(d) * 4);
    fixture_params(d, 10, params);
    fixture_state(d, 11, 0.12, s0);
    for (int i = 0; i < mg_cells(d) * 4; i++)
        target[i] = (float)fixture_uniform(12, (uint32_t)i, 0, 1);
    const mg_step_rules rules = {mg_fire_threshold(rc->fire_rate), 0.1, rc->pin_cell, rc->freeze};
    mg_tape *tape = mg_tape_create_f64(d, rc->steps, rc->checkpoint_steps);
    assert_non_null(tape);

    rollout_loss(d, tape, &rules, params, s0, target, rc->steps, s_final);
    /* The rollout must exercise the masks: some cells dead, some alive. */
    int alive = 0;
    for (int cell = 0; cell < mg_cells(d); cell++)
        alive += s_final[(size_t)cell * d->channels + 3] != 0;
    if (!(alive > 0 && alive < mg_cells(d)))
        fprintf(stderr, "alive cells after %d steps: %d of %d\n", rc->steps, alive, mg_cells(d));
    assert_true(alive > 0 && alive < mg_cells(d));
    mg_loss_f64(d, s_final, target, g_final, 1.0);
    mg_rollout_backward_f64(tape, &rules, &(mg_rollout_key){42, 7, 3}, params, g_final, g_s0, g);

    for (int64_t i = 0; i < np; i++) {
        const double keep = params[i];
        params[i] = keep + FD_H;
        const double up = rollout_loss(d, tape, &rules, params, s0, target, rc->steps, s_final);
        params[i] = keep - FD_H;
        const double down = rollout_loss(d, tape, &rules, params, s0, target, rc->steps, s_final);
        params[i] = keep;
        fd[i] = (up - down) / (2 * FD_H);
    }
    for (int k = 0; k < 3; k++)
        assert_gradients_close(t[k].name, g + t[k].offset, fd + t[k].offset, (size_t)t[k].size);
    for (int i = 0; i < n; i++) {
        const double keep = s0[i];
        s0[i] = keep + FD_H;
        const double up = rollout_loss(d, tape, &rules, params, s0, target, rc->steps, s_final);
        s0[i] = keep - FD_H;
        const double down = rollout_loss(d, tape, &rules, params, s0, target, rc->steps, s_final);
        s0[i] = keep;
        fd_s0[i] = (up - down) / (2 * FD_H);
    }
    assert_gradients_close("initial state", g_s0, fd_s0, (size_t)n);
    mg_tape_destroy_f64(tape);
    free(params), free(g), free(fd), free(s0), free(s_final), free(g_final), free(g_s0), free(fd_s0), free(target);
}

static void test_single_step(void **state)
{
    (void)state;
    check_rollout_gradient(&(rollout_case){1, 0, -1, 0.5, NULL, NULL});
}

static void test_rollout_fire_and_alive_masks(void **state)
{
    (void)state;
    check_rollout_gradient(&(rollout_case){6, 0, -1, 0.5, NULL, NULL});
}

static void test_rollout_checkpointed(void **state)
{
    (void)state;
    check_rollout_gradient(&(rollout_case){7, 3, -1, 0.5, NULL, NULL});
}

static void test_rollout_all_fire_pinned_seed(void **state)
{
    (void)state;
    check_rollout_gradient(&(rollout_case){5, 0, 20, 1.0, NULL, NULL});
}

/* Channel and hidden counts that are multiples of the vector width, so the
 * register-blocked kernels (not their scalar fallbacks) are the code checked. */
static void test_rollout_vector_kernels(void **state)
{
    (void)state;
    static const mg_nca_dims vdims = {10, 9, 8, 16};
    check_rollout_gradient(&(rollout_case){5, 0, -1, 0.5, NULL, &vdims});
}

static void test_rollout_frozen_cells(void **state)
{
    (void)state;
    unsigned char freeze[11 * 9];
    for (int cell = 0; cell < 11 * 9; cell++)
        freeze[cell] = (unsigned char)(cell % 5 == 0 ? MG_CELL_FROZEN : cell % 5 == 1 ? MG_CELL_FROZEN_RGBA : 0);
    check_rollout_gradient(&(rollout_case){4, 0, -1, 0.5, freeze, NULL});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perception_transpose),
        cmocka_unit_test(test_dense_layers),
        cmocka_unit_test(test_loss_gradient),
        cmocka_unit_test(test_single_step),
        cmocka_unit_test(test_rollout_fire_and_alive_masks),
        cmocka_unit_test(test_rollout_checkpointed),
        cmocka_unit_test(test_rollout_all_fire_pinned_seed),
        cmocka_unit_test(test_rollout_frozen_cells),
        cmocka_unit_test(test_rollout_vector_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
