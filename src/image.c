/* Image memory and the area-averaging (box filter) resize used to bring
 * targets to the training grid. */
#include "morphogen/target.h"

#include <stdint.h>
#include <stdlib.h>

void mg_image_free(mg_image *img)
{
    if (!img)
        return;
    free(img->rgba);
    img->rgba = NULL;
    img->height = 0;
    img->width = 0;
}

/* One output sample along an axis: the source samples it covers and how much
 * of each. Weights are computed in integer units (source sample j spans
 * [j*n_out, (j+1)*n_out), output sample i spans [i*n_in, (i+1)*n_in)) so the
 * coverage is exact and every source sample contributes a total weight of
 * exactly n_out/n_in: the per-channel mean is preserved for any ratio,
 * shrinking or enlarging. */
typedef struct axis_weights {
    int *first; /* [n_out] first source index */
    int *count; /* [n_out] number of source indices */
    float *w;   /* [n_out][stride] weights, each row summing to 1 */
    int stride;
} axis_weights;

static void axis_weights_free(axis_weights *a)
{
    free(a->first);
    free(a->count);
    free(a->w);
}

static int axis_weights_build(int n_in, int n_out, axis_weights *a)
{
    /* An output sample of length n_in/n_out source samples touches at most
     * ceil(n_in/n_out) + 1 of them. */
    a->stride = n_in / n_out + 2;
    a->first = malloc(sizeof *a->first * (size_t)n_out);
    a->count = malloc(sizeof *a->count * (size_t)n_out);
    a->w = malloc(sizeof *a->w * (size_t)n_out * (size_t)a->stride);
    if (!a->first || !a->count || !a->w)
        return -1; /* the caller frees whatever was allocated */
    for (int i = 0; i < n_out; i++) {
        int64_t lo = (int64_t)i * n_in, hi = (int64_t)(i + 1) * n_in;
        int j0 = (int)(lo / n_out), j1 = (int)((hi - 1) / n_out);
        a->first[i] = j0;
        a->count[i] = j1 - j0 + 1;
        for (int j = j0; j <= j1; j++) {
            int64_t s = (int64_t)j * n_out, e = (int64_t)(j + 1) * n_out;
            int64_t overlap = (e < hi ? e : hi) - (s > lo ? s : lo);
            a->w[(size_t)i * a->stride + (j - j0)] = (float)((double)overlap / (double)n_in);
        }
    }
    return 0;
}

int mg_image_resize_area(const mg_image *in, int out_h, int out_w, mg_image *out, mg_error *err)
{
    if (!in || !in->rgba || in->height < 1 || in->width < 1)
        return mg_fail(err, "resize: the source image is empty");
    if (out_h < 1 || out_w < 1)
        return mg_fail(err, "resize: the requested size %dx%d is not positive", out_w, out_h);

    axis_weights wy = {0}, wx = {0};
    float *tmp = NULL, *dst = NULL;
    if (axis_weights_build(in->height, out_h, &wy) || axis_weights_build(in->width, out_w, &wx))
        goto oom;
    tmp = malloc(sizeof *tmp * (size_t)in->height * (size_t)out_w * 4);
    dst = calloc((size_t)out_h * (size_t)out_w * 4, sizeof *dst);
    if (!tmp || !dst)
        goto oom;

    /* Separable: horizontal pass into tmp[in_h][out_w], then vertical. */
    for (int y = 0; y < in->height; y++) {
        const float *src_row = in->rgba + (size_t)y * in->width * 4;
        for (int ox = 0; ox < out_w; ox++) {
            float acc[4] = {0, 0, 0, 0};
            const float *w = wx.w + (size_t)ox * wx.stride;
            for (int k = 0; k < wx.count[ox]; k++) {
                const float *p = src_row + (size_t)(wx.first[ox] + k) * 4;
                for (int c = 0; c < 4; c++)
                    acc[c] += w[k] * p[c];
            }
            for (int c = 0; c < 4; c++)
                tmp[((size_t)y * out_w + ox) * 4 + c] = acc[c];
        }
    }
    for (int oy = 0; oy < out_h; oy++) {
        const float *w = wy.w + (size_t)oy * wy.stride;
        float *dst_row = dst + (size_t)oy * out_w * 4;
        for (int k = 0; k < wy.count[oy]; k++) {
            const float *src_row = tmp + (size_t)(wy.first[oy] + k) * out_w * 4;
            for (int i = 0; i < out_w * 4; i++)
                dst_row[i] += w[k] * src_row[i];
        }
    }

    free(tmp);
    axis_weights_free(&wy);
    axis_weights_free(&wx);
    out->height = out_h;
    out->width = out_w;
    out->rgba = dst;
    return 0;

oom:
    free(tmp);
    free(dst);
    axis_weights_free(&wy);
    axis_weights_free(&wx);
    return mg_fail(err, "resize: out of memory for a %dx%d image", out_w, out_h);
}
