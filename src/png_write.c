/* Writing premultiplied float RGBA as an 8-bit PNG: straight-alpha RGBA, or
 * opaque RGB composited on white (for viewing). Every write, the final flush
 * and fclose are checked, so a full disk is an error and not a short file. */
#define _POSIX_C_SOURCE 200809L
#include "morphogen/target.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct png_writer {
    FILE *fp;
    char problem[256];
} png_writer;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_writer *w = png_get_error_ptr(png);
    snprintf(w->problem, sizeof w->problem, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void write_bytes(png_structp png, png_bytep data, size_t length)
{
    png_writer *w = png_get_io_ptr(png);
    if (fwrite(data, 1, length, w->fp) != length)
        png_error(png, strerror(errno));
}

static void flush_bytes(png_structp png)
{
    png_writer *w = png_get_io_ptr(png);
    if (fflush(w->fp) != 0)
        png_error(png, strerror(errno));
}

/* NaN and negatives become 0. */
static float clamp01(float v)
{
    if (!(v > 0.0f))
        return 0.0f;
    return v > 1.0f ? 1.0f : v;
}

static unsigned char to_byte(float v)
{
    return (unsigned char)(clamp01(v) * 255.0f + 0.5f);
}

/* Converts one row of premultiplied floats to 8-bit RGBA or RGB. */
static void convert_row(const float *src, int width, int on_white, unsigned char *dst)
{
    for (int x = 0; x < width; x++, src += 4) {
        float a = clamp01(src[3]);
        if (on_white) {
            /* "over" with premultiplied colour: c + (1 - a) * white */
            for (int c = 0; c < 3; c++)
                *dst++ = to_byte(src[c] + (1.0f - a));
        } else {
            for (int c = 0; c < 3; c++)
                *dst++ = a > 0.0f ? to_byte(src[c] / a) : 0;
            *dst++ = to_byte(a);
        }
    }
}

/* Everything libpng does, behind its setjmp. `row` is allocated by the
 * caller so nothing here can leak when libpng longjmps. */
static int encode(png_structp png, png_infop info, png_writer *w, const mg_image *img, int on_white,
                  unsigned char *row)
{
    if (setjmp(png_jmpbuf(png)))
        return -1;
    png_set_write_fn(png, w, write_bytes, flush_bytes);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 on_white ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < img->height; y++) {
        convert_row(img->rgba + (size_t)y * img->width * 4, img->width, on_white, row);
        png_write_row(png, row);
    }
    png_write_end(png, info);
    return 0;
}

int mg_png_write(const char *path, const mg_image *img, int on_white, mg_error *err)
{
    if (!img || !img->rgba || img->height < 1 || img->width < 1)
        return mg_fail(err, "%s: cannot write an empty image", path);

    png_writer w = {0};
    w.fp = fopen(path, "wb");
    if (!w.fp)
        return mg_fail(err, "%s: cannot create: %s", path, strerror(errno));

    unsigned char *row = malloc((size_t)img->width * 4);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!row || !png || !info)
        mg_fail(err, "%s: out of memory starting libpng", path);
    else if (encode(png, info, &w, img, on_white, row) != 0)
        mg_fail(err, "%s: cannot write: %s", path, w.problem);
    else
        rc = 0;
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    free(row);

    /* A full disk may only show up when the last buffer is flushed. */
    if (rc == 0 && fflush(w.fp) != 0)
        rc = mg_fail(err, "%s: cannot write: %s", path, strerror(errno));
    struct stat st;
    int regular = fstat(fileno(w.fp), &st) == 0 && S_ISREG(st.st_mode);
    if (fclose(w.fp) != 0 && rc == 0)
        rc = mg_fail(err, "%s: cannot write: %s", path, strerror(errno));
    /* Leave no half-written PNG behind; never remove devices or pipes. */
    if (rc != 0 && regular)
        remove(path);
    return rc;
}
