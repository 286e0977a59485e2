/* Targets: PNG reading/writing in every colour type, the area resize, the
 * padded square grid, emoji rendering, and the error messages users see. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "morphogen/target.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char work[4096];

static int mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

static int setup_work(void **state)
{
    (void)state;
    const char *w = getenv("MG_WORK");
    snprintf(work, sizeof work, "%s", w && w[0] ? w : "/tmp/mg_test_target");
    return mkdir_p(work);
}

static const char *work_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", work, name);
    return buf;
}

static const float *px(const mg_image *img, int y, int x)
{
    return img->rgba + ((size_t)y * img->width + x) * 4;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

/* Writes raw rows with libpng directly, so the reader is tested against
 * files it did not write itself. Test-only: libpng errors abort. */
static void write_raw_png(const char *path, int width, int height, int color_type, int bit_depth,
                          const unsigned char *data, const png_color *palette, int n_palette,
                          const unsigned char *trns, int n_trns)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bit_depth, color_type,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette)
        png_set_PLTE(png, info, palette, n_palette);
    if (trns)
        png_set_tRNS(png, info, trns, n_trns, NULL);
    png_write_info(png, info);
    int channels = color_type == PNG_COLOR_TYPE_RGBA         ? 4
                   : color_type == PNG_COLOR_TYPE_RGB        ? 3
                   : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                             : 1;
    size_t rowbytes = ((size_t)width * channels * bit_depth + 7) / 8;
    for (int y = 0; y < height; y++)
        png_write_row(png, data + rowbytes * y);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    assert_int_equal(fclose(fp), 0);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static mg_image new_image(int h, int w)
{
    mg_image img = {.height = h, .width = w};
    img.rgba = calloc((size_t)h * w * 4, sizeof(float));
    assert_non_null(img.rgba);
    return img;
}

/* Deterministic pseudo-random premultiplied pixels. */
static mg_image pattern_image(int h, int w, unsigned seed)
{
    mg_image img = new_image(h, w);
    for (int i = 0; i < h * w; i++) {
        float v[4];
        for (int c = 0; c < 4; c++) {
            seed = seed * 1103515245u + 12345u;
            v[c] = (float)((seed >> 16) & 0xFF) / 255.0f;
        }
        for (int c = 0; c < 3; c++)
            img.rgba[i * 4 + c] = v[c] * v[3];
        img.rgba[i * 4 + 3] = v[3];
    }
    return img;
}

static void channel_means(const mg_image *img, double mean[4])
{
    for (int c = 0; c < 4; c++)
        mean[c] = 0;
    for (int i = 0; i < img->height * img->width; i++)
        for (int c = 0; c < 4; c++)
            mean[c] += img->rgba[i * 4 + c];
    for (int c = 0; c < 4; c++)
        mean[c] /= (double)img->height * img->width;
}

/* ---- PNG round trip and colour types ---- */

static void test_png_roundtrip_rgba(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "roundtrip.png");
    /* Straight colours and alphas on the 8-bit grid survive exactly. */
    mg_image img = new_image(5, 7);
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 7; x++) {
            float *p = img.rgba + ((size_t)y * 7 + x) * 4;
            float a = (float)((y * 7 + x) * 7 % 256) / 255.0f;
            if (x == 0)
                a = 0.0f;
            if (x == 6)
                a = 1.0f;
            p[0] = (float)(x * 40) / 255.0f * a;
            p[1] = (float)(y * 60) / 255.0f * a;
            p[2] = (float)((x + y) * 20) / 255.0f * a;
            p[3] = a;
        }
    mg_error err;
    assert_int_equal(mg_png_write(path, &img, 0, &err), 0);
    mg_image back = {0};
    assert_int_equal(mg_png_read(path, &back, &err), 0);
    assert_int_equal(back.height, 5);
    assert_int_equal(back.width, 7);
    for (int i = 0; i < 5 * 7 * 4; i++)
        assert_float_equal(back.rgba[i], img.rgba[i], 1e-5);

    /* On white: opaque, colour = premultiplied + (1 - alpha). */
    work_path(path, sizeof path, "roundtrip_white.png");
    assert_int_equal(mg_png_write(path, &img, 1, &err), 0);
    mg_image white = {0};
    assert_int_equal(mg_png_read(path, &white, &err), 0);
    for (int i = 0; i < 5 * 7; i++) {
        assert_float_equal(white.rgba[i * 4 + 3], 1.0f, 1e-6);
        for (int c = 0; c < 3; c++)
            assert_float_equal(white.rgba[i * 4 + c], img.rgba[i * 4 + c] + 1.0f - img.rgba[i * 4 + 3],
                               0.5 / 255 + 1e-5);
    }
    /* A fully transparent pixel is white, not black. */
    assert_float_equal(px(&white, 2, 0)[0], 1.0f, 1e-6);
    mg_image_free(&white);
    mg_image_free(&back);
    mg_image_free(&img);
    assert_null(img.rgba);
}

static void test_png_write_clamps_out_of_range(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "clamp.png");
    mg_image img = new_image(1, 3);
    const float v[12] = {2.0f, -1.0f, NAN, 1.5f, /* alpha > 1, colour > alpha */
                         0.3f, 0.3f, 0.3f, 0.0f, /* colour with zero alpha */
                         0.9f, 0.1f, 0.2f, 0.5f};
    memcpy(img.rgba, v, sizeof v);
    mg_error err;
    assert_int_equal(mg_png_write(path, &img, 0, &err), 0);
    mg_image back = {0};
    assert_int_equal(mg_png_read(path, &back, &err), 0);
    const float want[12] = {1, 0, 0, 1, 0, 0, 0, 0, 0.5f, 0.1f, 0.2f, 0.5f};
    for (int i = 0; i < 12; i++)
        assert_float_equal(back.rgba[i], want[i], 0.5 / 255 + 1e-5);
    mg_image_free(&back);
    mg_image_free(&img);
}

static void test_png_read_grey_and_grey_alpha(void **state)
{
    (void)state;
    char path[4200];
    const unsigned char grey[6] = {0, 51, 102, 153, 204, 255};
    mg_error err;
    mg_image img = {0};
    write_raw_png(work_path(path, sizeof path, "grey8.png"), 3, 2, PNG_COLOR_TYPE_GRAY, 8, grey, NULL, 0, NULL, 0);
    assert_int_equal(mg_png_read(path, &img, &err), 0);
    assert_int_equal(img.width, 3);
    assert_int_equal(img.height, 2);
    for (int i = 0; i < 6; i++) {
        for (int c = 0; c < 3; c++)
            assert_float_equal(img.rgba[i * 4 + c], grey[i] / 255.0f, 1e-6);
        assert_float_equal(img.rgba[i * 4 + 3], 1.0f, 1e-6);
    }
    mg_image_free(&img);

    /* 1-bit grey: bits expand to 0 and 1. */
    const unsigned char bits[1] = {0xA0}; /* 1 0 1 */
    write_raw_png(work_path(path, sizeof path, "grey1.png"), 3, 1, PNG_COLOR_TYPE_GRAY, 1, bits, NULL,
                  0, NULL, 0);
    assert_int_equal(mg_png_read(path, &img, &err), 0);
    assert_float_equal(px(&img, 0, 0)[0], 1.0f, 1e-6);
    assert_float_equal(px(&img, 0, 1)[1], 0.0f, 1e-6);
    assert_float_equal(px(&img, 0, 2)[2], 1.0f, 1e-6);
    mg_image_free(&img);

    /* Grey + alpha: colour comes back premultiplied. */
    const unsigned char ga[4] = {200, 128, 255, 0};
    write_raw_png(work_path(path, sizeof path, "grey_alpha.png"), 2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8,
                  ga, NULL, 0, NULL, 0);
    assert_int_equal(mg_png_read(path, &img, &err), 0);
    assert_float_equal(px(&img, 0, 0)[0], 200.0f / 255 * 128.0f / 255, 1e-6);
    assert_float_equal(px(&img, 0, 0)[3], 128.0f / 255, 1e-6);
    assert_float_equal(px(&img, 0, 1)[2], 0.0f, 1e-6);
    assert_float_equal(px(&img, 0, 1)[3], 0.0f, 1e-6);
    mg_image_free(&img);
}

static void test_png_read_palette_with_trns(void **state)
{
    (void)state;
    char path[4200];
    const png_color palette[3] = {{255, 0, 0}, {0, 200, 0}, {10, 20, 250}};
    const unsigned char trns[2] = {0, 100}; /* entry 2 has no tRNS: opaque */
    const unsigned char idx[4] = {0, 1, 2, 1};
    write_raw_png(work_path(path, sizeof path, "palette.png"), 2, 2, PNG_COLOR_TYPE_PALETTE, 8, idx,
                  palette, 3, trns, 2);
    mg_error err;
    mg_image img = {0};
    assert_int_equal(mg_png_read(path, &img, &err), 0);
    assert_int_equal(img.width, 2);
    assert_int_equal(img.height, 2);
    const float *p0 = px(&img, 0, 0), *p1 = px(&img, 0, 1), *p2 = px(&img, 1, 0);
    assert_float_equal(p0[0], 0.0f, 1e-6); /* red, but fully transparent */
    assert_float_equal(p0[3], 0.0f, 1e-6);
    assert_float_equal(p1[1], 200.0f / 255 * 100.0f / 255, 1e-6);
    assert_float_equal(p1[3], 100.0f / 255, 1e-6);
    assert_float_equal(p2[0], 10.0f / 255, 1e-6);
    assert_float_equal(p2[2], 250.0f / 255, 1e-6);
    assert_float_equal(p2[3], 1.0f, 1e-6);
    mg_image_free(&img);
}

static void test_png_read_16bit(void **state)
{
    (void)state;
    char path[4200];
    /* RGBA, big-endian: values that 8 bits could not represent. */
    const unsigned short v[8] = {0x8000, 0x1234, 0xFFFF, 0x4000, 0x0001, 0x0000, 0xABCD, 0xFFFF};
    unsigned char data[16];
    for (int i = 0; i < 8; i++) {
        data[i * 2] = (unsigned char)(v[i] >> 8);
        data[i * 2 + 1] = (unsigned char)(v[i] & 0xFF);
    }
    write_raw_png(work_path(path, sizeof path, "rgba16.png"), 2, 1, PNG_COLOR_TYPE_RGBA, 16, data,
                  NULL, 0, NULL, 0);
    mg_error err;
    mg_image img = {0};
    assert_int_equal(mg_png_read(path, &img, &err), 0);
    double a0 = 0x4000 / 65535.0;
    assert_float_equal(px(&img, 0, 0)[0], 0x8000 / 65535.0 * a0, 1e-6);
    assert_float_equal(px(&img, 0, 0)[1], 0x1234 / 65535.0 * a0, 1e-6);
    assert_float_equal(px(&img, 0, 0)[3], a0, 1e-6);
    assert_float_equal(px(&img, 0, 1)[2], 0xABCD / 65535.0, 1e-6);
    assert_float_equal(px(&img, 0, 1)[3], 1.0, 1e-6);
    mg_image_free(&img);

    /* 16-bit grey without alpha gets opaque alpha. */
    write_raw_png(work_path(path, sizeof path, "grey16.png"), 2, 1, PNG_COLOR_TYPE_GRAY, 16, data, NULL,
                  0, NULL, 0);
    assert_int_equal(mg_png_read(path, &img, &err), 0);
    assert_float_equal(px(&img, 0, 1)[1], 0x1234 / 65535.0, 1e-6);
    assert_float_equal(px(&img, 0, 0)[0], 0x8000 / 65535.0, 1e-6);
    assert_float_equal(px(&img, 0, 0)[3], 1.0, 1e-6);
    mg_image_free(&img);
}

/* ---- PNG errors ---- */

static void expect_read_error(const char *path, const char *problem)
{
    mg_error err = {{0}};
    mg_image img = {0};
    assert_int_equal(mg_png_read(path, &img, &err), -1);
    assert_null(img.rgba);
    assert_contains(err.msg, path);
    assert_contains(err.msg, problem);
}

static void test_png_read_errors(void **state)
{
    (void)state;
    char path[4200];
    expect_read_error(work_path(path, sizeof path, "missing.png"), "no such file");
    expect_read_error(work, "cannot read: Is a directory");

    const char text[] = "this is not an image\n";
    write_file(work_path(path, sizeof path, "text.png"), text, sizeof text - 1);
    expect_read_error(path, "not a PNG file");

    write_file(work_path(path, sizeof path, "empty.png"), "", 0);
    expect_read_error(path, "not a PNG file (the file is empty)");

    /* A valid PNG cut in half. */
    mg_image img = pattern_image(16, 16, 7u);
    mg_error err;
    assert_int_equal(mg_png_write(work_path(path, sizeof path, "whole.png"), &img, 0, &err), 0);
    mg_image_free(&img);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 100 && n < sizeof buf);
    write_file(work_path(path, sizeof path, "half.png"), buf, n / 2);
    expect_read_error(path, "truncated or corrupt PNG (");

    /* Just the first bytes of the signature. */
    write_file(work_path(path, sizeof path, "sig.png"), buf, 4);
    expect_read_error(path, "truncated or corrupt PNG");

    /* Corrupt pixel data: flip bytes inside IDAT (CRC no longer matches). */
    for (size_t i = n / 2; i < n / 2 + 8; i++)
        buf[i] ^= 0x5A;
    write_file(work_path(path, sizeof path, "corrupt.png"), buf, n);
    expect_read_error(path, "truncated or corrupt PNG (");
}

static void test_png_write_errors(void **state)
{
    (void)state;
    char path[4200];
    mg_image img = pattern_image(4, 4, 3u);
    mg_error err = {{0}};
    work_path(path, sizeof path, "no/such/dir/out.png");
    assert_int_equal(mg_png_write(path, &img, 0, &err), -1);
    assert_contains(err.msg, path);
    assert_contains(err.msg, "No such file or directory");

    /* /dev/full fails every write with ENOSPC, like a full disk. */
    struct stat st;
    if (stat("/dev/full", &st) == 0) {
        assert_int_equal(mg_png_write("/dev/full", &img, 0, &err), -1);
        assert_contains(err.msg, "/dev/full: cannot write: ");
        assert_contains(err.msg, "No space left on device");
        assert_int_equal(stat("/dev/full", &st), 0); /* a device is never removed */
    }

    mg_image empty = {0};
    assert_int_equal(mg_png_write(work_path(path, sizeof path, "empty_out.png"), &empty, 0, &err), -1);
    assert_contains(err.msg, "empty image");
    mg_image_free(&img);
}

/* ---- resize ---- */

static void check_resize_keeps_means(int in_h, int in_w, int out_h, int out_w)
{
    mg_image in = pattern_image(in_h, in_w, (unsigned)(in_h * 31 + in_w));
    mg_image out = {0};
    mg_error err;
    assert_int_equal(mg_image_resize_area(&in, out_h, out_w, &out, &err), 0);
    assert_int_equal(out.height, out_h);
    assert_int_equal(out.width, out_w);
    double m_in[4], m_out[4];
    channel_means(&in, m_in);
    channel_means(&out, m_out);
    for (int c = 0; c < 4; c++)
        assert_float_equal(m_out[c], m_in[c], 1e-5);
    /* An average of premultiplied pixels is still premultiplied. */
    for (int i = 0; i < out_h * out_w; i++)
        for (int c = 0; c < 3; c++)
            assert_true(out.rgba[i * 4 + c] <= out.rgba[i * 4 + 3] + 1e-5f);
    mg_image_free(&in);
    mg_image_free(&out);
}

static void test_resize_preserves_means(void **state)
{
    (void)state;
    check_resize_keeps_means(10, 10, 5, 5);   /* integer shrink */
    check_resize_keeps_means(7, 5, 3, 2);     /* non-integer shrink */
    check_resize_keeps_means(128, 136, 38, 40); /* the emoji strike */
    check_resize_keeps_means(3, 2, 13, 11);   /* non-integer enlarge */
    check_resize_keeps_means(5, 9, 5, 4);     /* one axis only */
    check_resize_keeps_means(1, 1, 4, 3);
    check_resize_keeps_means(6, 4, 4, 6);     /* shrink one axis, enlarge the other */
}

static void test_resize_exact_values(void **state)
{
    (void)state;
    mg_error err;
    mg_image out = {0};
    /* 4x4 -> 2x2: each output is the mean of a 2x2 block. */
    mg_image in = pattern_image(4, 4, 11u);
    assert_int_equal(mg_image_resize_area(&in, 2, 2, &out, &err), 0);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++)
            for (int c = 0; c < 4; c++) {
                float want = (px(&in, 2 * y, 2 * x)[c] + px(&in, 2 * y, 2 * x + 1)[c] +
                              px(&in, 2 * y + 1, 2 * x)[c] + px(&in, 2 * y + 1, 2 * x + 1)[c]) / 4;
                assert_float_equal(px(&out, y, x)[c], want, 1e-6);
            }
    mg_image_free(&out);

    /* 1x3 -> 1x2: output 0 covers pixel 0 and half of pixel 1. */
    mg_image row = new_image(1, 3);
    for (int x = 0; x < 3; x++)
        row.rgba[x * 4 + 3] = (float)(x + 1) / 4; /* alphas 0.25 0.5 0.75 */
    assert_int_equal(mg_image_resize_area(&row, 1, 2, &out, &err), 0);
    assert_float_equal(px(&out, 0, 0)[3], (0.25 + 0.5 * 0.5) / 1.5, 1e-6);
    assert_float_equal(px(&out, 0, 1)[3], (0.5 * 0.5 + 0.75) / 1.5, 1e-6);
    mg_image_free(&out);

    /* 2x enlargement replicates each pixel into a 2x2 block. */
    assert_int_equal(mg_image_resize_area(&in, 8, 8, &out, &err), 0);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            for (int c = 0; c < 4; c++)
                assert_float_equal(px(&out, y, x)[c], px(&in, y / 2, x / 2)[c], 1e-6);
    mg_image_free(&out);

    assert_int_equal(mg_image_resize_area(&in, 0, 3, &out, &err), -1);
    assert_contains(err.msg, "not positive");
    mg_image_free(&in);
    mg_image_free(&row);
}

/* ---- target grid ---- */

static void write_opaque_png(const char *path, int h, int w)
{
    mg_image img = new_image(h, w);
    for (int i = 0; i < h * w; i++) {
        img.rgba[i * 4 + 0] = 1.0f;
        img.rgba[i * 4 + 3] = 1.0f;
    }
    mg_error err;
    assert_int_equal(mg_png_write(path, &img, 0, &err), 0);
    mg_image_free(&img);
}

/* Asserts that exactly the box [top, top+h) x [left, left+w) is opaque red. */
static void expect_box(const mg_image *img, int top, int left, int h, int w)
{
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++) {
            int inside = y >= top && y < top + h && x >= left && x < left + w;
            assert_float_equal(px(img, y, x)[3], inside ? 1.0f : 0.0f, 1e-6);
            assert_float_equal(px(img, y, x)[0], inside ? 1.0f : 0.0f, 1e-6);
        }
}

static void test_target_keeps_aspect_and_centres(void **state)
{
    (void)state;
    char path[4200];
    mg_error err;
    mg_image t = {0};

    /* 20 wide x 10 tall -> 8 x 4, centred vertically in 8x8, padded by 2. */
    write_opaque_png(work_path(path, sizeof path, "wide.png"), 10, 20);
    assert_int_equal(mg_target_load(path, 8, 2, &t, &err), 0);
    assert_int_equal(t.height, 12);
    assert_int_equal(t.width, 12);
    expect_box(&t, 2 + 2, 2, 4, 8);
    mg_image_free(&t);

    /* 9 wide x 30 tall -> round(9*10/30) = 3 wide x 10 tall, centred horizontally. */
    write_opaque_png(work_path(path, sizeof path, "tall.png"), 30, 9);
    assert_int_equal(mg_target_load(path, 10, 0, &t, &err), 0);
    assert_int_equal(t.height, 10);
    assert_int_equal(t.width, 10);
    expect_box(&t, 0, (10 - 3) / 2, 10, 3);
    mg_image_free(&t);

    /* A sliver keeps at least one pixel on its short side. */
    write_opaque_png(work_path(path, sizeof path, "sliver.png"), 1, 100);
    assert_int_equal(mg_target_load(path, 10, 1, &t, &err), 0);
    assert_int_equal(t.height, 12);
    double alpha = 0;
    for (int i = 0; i < 12 * 12; i++)
        alpha += t.rgba[i * 4 + 3];
    assert_float_equal(alpha, 10 * 1.0, 1e-4); /* a 10x1 row of full coverage */
    mg_image_free(&t);

    /* Enlarging a small image. */
    write_opaque_png(work_path(path, sizeof path, "small.png"), 2, 2);
    assert_int_equal(mg_target_load(path, 40, 16, &t, &err), 0);
    assert_int_equal(t.height, 72);
    expect_box(&t, 16, 16, 40, 40);
    mg_image_free(&t);
}

static void test_target_errors(void **state)
{
    (void)state;
    char path[4200];
    mg_error err = {{0}};
    mg_image t = {0};
    assert_int_equal(mg_target_load("", 40, 16, &t, &err), -1);
    assert_contains(err.msg, "empty spec");
    assert_int_equal(mg_target_load(work_path(path, sizeof path, "nope.png"), 40, 16, &t, &err), -1);
    assert_contains(err.msg, path);
    assert_contains(err.msg, "no such file");
    assert_int_equal(mg_target_load("emoji:🦎", 0, 16, &t, &err), -1);
    assert_contains(err.msg, "out of range");
    assert_int_equal(mg_target_load("emoji:🦎", 40, -1, &t, &err), -1);
    assert_contains(err.msg, "out of range");

    const char *bad_specs[][2] = {
        {"emoji:", "no character after"},
        {"emoji:U+", "hexadecimal digits"},
        {"emoji:U+XYZ", "hexadecimal digits"},
        {"emoji:U+1234567", "hexadecimal digits"},
        {"emoji:U+110000", "not a Unicode character"},
        {"emoji:U+D800", "not a Unicode character"},
        {"emoji:\xff", "not valid UTF-8"},
        {"emoji:\x80", "not valid UTF-8"},         /* lone continuation byte */
        {"emoji:\xc0\xaf", "not valid UTF-8"},     /* overlong '/' */
        {"emoji:\xe0\x80\xaf", "not valid UTF-8"}, /* overlong '/' */
        {"emoji:\xed\xa0\x80", "not valid UTF-8"}, /* surrogate U+D800 */
        {"emoji:\xf4\x90\x80\x80", "not valid UTF-8"}, /* U+110000 */
        {"emoji:\xf0\x9f\xa6", "not valid UTF-8"}, /* 🦎 cut short */
    };
    for (size_t i = 0; i < sizeof bad_specs / sizeof bad_specs[0]; i++) {
        err.msg[0] = '\0';
        assert_int_equal(mg_target_load(bad_specs[i][0], 40, 16, &t, &err), -1);
        assert_null(t.rgba);
        assert_contains(err.msg, bad_specs[i][0]);
        assert_contains(err.msg, bad_specs[i][1]);
    }
}

/* ---- emoji ---- */

static void expect_sensible_emoji(const mg_image *img)
{
    /* The font's one strike is 136x128; cropped to content it stays large. */
    assert_in_range(img->width, 64, 136);
    assert_in_range(img->height, 64, 136);
    double alpha = 0, max_alpha = 0;
    for (int i = 0; i < img->height * img->width; i++) {
        const float *p = img->rgba + i * 4;
        alpha += p[3];
        max_alpha = p[3] > max_alpha ? p[3] : max_alpha;
        for (int c = 0; c < 3; c++)
            assert_true(p[c] >= 0.0f && p[c] <= p[3] + 1e-6f); /* premultiplied */
    }
    assert_float_equal(max_alpha, 1.0, 1e-6);
    assert_true(alpha > 0.2 * img->height * img->width); /* not a speck */
    /* Cropped: every edge has a visible pixel. */
    int top = 0, bottom = 0, left = 0, right = 0;
    for (int x = 0; x < img->width; x++) {
        top |= px(img, 0, x)[3] > 0;
        bottom |= px(img, img->height - 1, x)[3] > 0;
    }
    for (int y = 0; y < img->height; y++) {
        left |= px(img, y, 0)[3] > 0;
        right |= px(img, y, img->width - 1)[3] > 0;
    }
    assert_true(top && bottom && left && right);
}

static void test_emoji_render(void **state)
{
    (void)state;
    mg_error err = {{0}};
    mg_image lizard = {0}, rose = {0};
    if (mg_emoji_render(0x1F98E, mg_emoji_font_path(), &lizard, &err) != 0)
        fail_msg("%s", err.msg);
    expect_sensible_emoji(&lizard);
    assert_int_equal(mg_emoji_render(0x1F339, mg_emoji_font_path(), &rose, &err), 0);
    expect_sensible_emoji(&rose);
    /* A lizard is mostly green, a rose mostly red. */
    double m_lizard[4], m_rose[4];
    channel_means(&lizard, m_lizard);
    channel_means(&rose, m_rose);
    assert_true(m_lizard[1] > m_lizard[0]);
    assert_true(m_rose[0] > m_rose[1]);
    mg_image_free(&lizard);
    mg_image_free(&rose);
}

static void test_emoji_target(void **state)
{
    (void)state;
    mg_error err = {{0}};
    mg_image a = {0}, b = {0}, c = {0};
    assert_int_equal(mg_target_load("emoji:🦎", 40, 16, &a, &err), 0);
    assert_int_equal(a.height, 72);
    assert_int_equal(a.width, 72);
    assert_int_equal(mg_target_load("emoji:U+1F98E", 40, 16, &b, &err), 0);
    assert_int_equal(mg_target_load("emoji:u+1f98e and more text", 40, 16, &c, &err), -1);
    assert_contains(err.msg, "hexadecimal digits");
    assert_int_equal(mg_target_load("emoji:u+1f98e", 40, 16, &c, &err), 0);
    assert_memory_equal(a.rgba, b.rgba, sizeof(float) * 72 * 72 * 4);
    assert_memory_equal(a.rgba, c.rgba, sizeof(float) * 72 * 72 * 4);
    /* Only the first code point counts (here a variation selector follows). */
    mg_image_free(&c);
    assert_int_equal(mg_target_load("emoji:🦎\xef\xb8\x8f", 40, 16, &c, &err), 0);
    assert_memory_equal(a.rgba, c.rgba, sizeof(float) * 72 * 72 * 4);

    /* The content spans 40 cells along its longer side, inside the margin. */
    int top = 72, bottom = -1, left = 72, right = -1;
    for (int y = 0; y < 72; y++)
        for (int x = 0; x < 72; x++)
            if (px(&a, y, x)[3] > 0) {
                top = y < top ? y : top;
                bottom = y > bottom ? y : bottom;
                left = x < left ? x : left;
                right = x > right ? x : right;
            }
    assert_true(top >= 16 && left >= 16 && bottom < 56 && right < 56);
    int span_h = bottom - top + 1, span_w = right - left + 1;
    assert_int_equal(span_h > span_w ? span_h : span_w, 40);
    mg_image_free(&a);
    mg_image_free(&b);
    mg_image_free(&c);
}

static void test_emoji_errors(void **state)
{
    (void)state;
    mg_error err = {{0}};
    mg_image img = {0};
    char want[8400];

    /* U+0378 is unassigned; U+E000 is private use. */
    assert_int_equal(mg_target_load("emoji:U+0378", 40, 16, &img, &err), -1);
    snprintf(want, sizeof want, "emoji:\xcd\xb8 (U+0378): no glyph for this character in %s",
             mg_emoji_font_path());
    assert_string_equal(err.msg, want);
    assert_int_equal(mg_target_load("emoji:\xee\x80\x80", 40, 16, &img, &err), -1);
    assert_contains(err.msg, "(U+E000): no glyph for this character in ");
    assert_null(img.rgba);

    assert_int_equal(mg_emoji_render(0x110000, mg_emoji_font_path(), &img, &err), -1);
    assert_contains(err.msg, "U+110000: not a Unicode character");

    /* A missing font names the Debian package. */
    char font[4200];
    work_path(font, sizeof font, "no-such-font.ttf");
    assert_int_equal(setenv("MORPHOGEN_EMOJI_FONT", font, 1), 0);
    assert_string_equal(mg_emoji_font_path(), font);
    int rc = mg_target_load("emoji:🦎", 40, 16, &img, &err);
    assert_int_equal(unsetenv("MORPHOGEN_EMOJI_FONT"), 0);
    assert_int_equal(rc, -1);
    snprintf(want, sizeof want, "%s: emoji font not found; install the Debian package "
                                "fonts-noto-color-emoji (or set MORPHOGEN_EMOJI_FONT)", font);
    assert_string_equal(err.msg, want);

    /* A file that is not a font. */
    work_path(font, sizeof font, "not-a-font.ttf");
    write_file(font, "hello", 5);
    assert_int_equal(mg_emoji_render(0x1F98E, font, &img, &err), -1);
    assert_contains(err.msg, font);
    assert_contains(err.msg, "not a font");
    assert_null(img.rgba);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_roundtrip_rgba),
        cmocka_unit_test(test_png_write_clamps_out_of_range),
        cmocka_unit_test(test_png_read_grey_and_grey_alpha),
        cmocka_unit_test(test_png_read_palette_with_trns),
        cmocka_unit_test(test_png_read_16bit),
        cmocka_unit_test(test_png_read_errors),
        cmocka_unit_test(test_png_write_errors),
        cmocka_unit_test(test_resize_preserves_means),
        cmocka_unit_test(test_resize_exact_values),
        cmocka_unit_test(test_target_keeps_aspect_and_centres),
        cmocka_unit_test(test_target_errors),
        cmocka_unit_test(test_emoji_render),
        cmocka_unit_test(test_emoji_target),
        cmocka_unit_test(test_emoji_errors),
    };
    return cmocka_run_group_tests(tests, setup_work, NULL);
}
