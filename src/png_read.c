/* Reading any PNG (every colour type and bit depth libpng knows) into
 * premultiplied float RGBA. libpng reports errors by longjmp, so the decoding
 * runs in its own function and keeps every allocation in a struct owned by
 * the caller, which frees it whichever way decoding ends. */
#define _POSIX_C_SOURCE 200809L
#include "morphogen/target.h"

#include <errno.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_reader {
    FILE *fp;
    char problem[256];    /* libpng's message when decoding fails */
    unsigned char *pixels; /* [height][rowbytes] after the transforms */
    png_bytep *rows;
    png_uint_32 width, height;
    int bit_depth; /* 8 or 16 after the transforms */
} png_reader;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_reader *r = png_get_error_ptr(png);
    snprintf(r->problem, sizeof r->problem, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    /* Ancillary-chunk trouble does not affect the pixels; stay quiet. */
    (void)png;
    (void)msg;
}

/* Our own read callback so a short file says so in words (libpng's default
 * only says "Read Error"). */
static void read_bytes(png_structp png, png_bytep data, size_t length)
{
    png_reader *r = png_get_io_ptr(png);
    if (fread(data, 1, length, r->fp) != length) {
        if (ferror(r->fp))
            png_error(png, strerror(errno));
        png_error(png, "unexpected end of file");
    }
}

/* Decodes everything after the 8 signature bytes. Returns 0, or -1 with
 * r->problem set. Only r (the caller's object) changes after setjmp, so no
 * local here needs to be volatile. */
static int decode(png_structp png, png_infop info, png_reader *r)
{
    if (setjmp(png_jmpbuf(png)))
        return -1;

    png_set_read_fn(png, r, read_bytes);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);

    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (has_trns)
        png_set_tRNS_to_alpha(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    if (!(color_type & PNG_COLOR_MASK_ALPHA) && !has_trns)
        png_set_filler(png, 0xffff, PNG_FILLER_AFTER); /* opaque alpha */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    r->width = png_get_image_width(png, info);
    r->height = png_get_image_height(png, info);
    r->bit_depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_channels(png, info) != 4 || (r->bit_depth != 8 && r->bit_depth != 16) ||
        rowbytes != (size_t)r->width * 4 * (size_t)(r->bit_depth / 8))
        png_error(png, "unexpected pixel layout after conversion to RGBA");
    if (r->height > SIZE_MAX / rowbytes)
        png_error(png, "image too large");

    r->pixels = malloc(rowbytes * r->height);
    r->rows = malloc(sizeof *r->rows * r->height);
    if (!r->pixels || !r->rows)
        png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < r->height; y++)
        r->rows[y] = r->pixels + rowbytes * y;
    png_read_image(png, r->rows);
    png_read_end(png, NULL);
    return 0;
}

static int to_premultiplied_float(const png_reader *r, const char *path, mg_image *out, mg_error *err)
{
    size_t n = (size_t)r->width * r->height;
    float *rgba = malloc(sizeof *rgba * n * 4);
    if (!rgba)
        return mg_fail(err, "%s: out of memory for a %ux%u image", path, (unsigned)r->width,
                       (unsigned)r->height);
    for (size_t i = 0; i < n; i++) {
        float v[4];
        for (int c = 0; c < 4; c++) {
            if (r->bit_depth == 16) {
                const unsigned char *p = r->pixels + (i * 4 + c) * 2; /* big-endian */
                v[c] = (float)((p[0] << 8) | p[1]) / 65535.0f;
            } else {
                v[c] = (float)r->pixels[i * 4 + c] / 255.0f;
            }
        }
        rgba[i * 4 + 0] = v[0] * v[3];
        rgba[i * 4 + 1] = v[1] * v[3];
        rgba[i * 4 + 2] = v[2] * v[3];
        rgba[i * 4 + 3] = v[3];
    }
    out->width = (int)r->width;
    out->height = (int)r->height;
    out->rgba = rgba;
    return 0;
}

int mg_png_read(const char *path, mg_image *out, mg_error *err)
{
    png_reader r = {0};
    r.fp = fopen(path, "rb");
    if (!r.fp) {
        if (errno == ENOENT)
            return mg_fail(err, "%s: no such file", path);
        return mg_fail(err, "%s: cannot read: %s", path, strerror(errno));
    }

    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, r.fp);
    if (got < sizeof sig && ferror(r.fp)) { /* e.g. a directory: EISDIR */
        int e = errno;
        fclose(r.fp);
        return mg_fail(err, "%s: cannot read: %s", path, strerror(e));
    }
    if (got == 0) {
        fclose(r.fp);
        return mg_fail(err, "%s: not a PNG file (the file is empty)", path);
    }
    if (png_sig_cmp(sig, 0, got) != 0) {
        fclose(r.fp);
        return mg_fail(err, "%s: not a PNG file", path);
    }
    if (got < sizeof sig) {
        fclose(r.fp);
        return mg_fail(err, "%s: truncated or corrupt PNG (file ends inside the signature)", path);
    }

    int rc = -1;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info)
        mg_fail(err, "%s: out of memory starting libpng", path);
    else if (decode(png, info, &r) != 0)
        mg_fail(err, "%s: truncated or corrupt PNG (%s)", path, r.problem);
    else
        rc = to_premultiplied_float(&r, path, out, err);

    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    free(r.rows);
    free(r.pixels);
    fclose(r.fp);
    return rc;
}
