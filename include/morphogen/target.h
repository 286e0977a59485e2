/* Targets: what an organism should grow into. A target is a premultiplied
 * RGBA image in [0,1], row-major [height][width][4], already resized and
 * padded to the training grid. */
#ifndef MORPHOGEN_TARGET_H
#define MORPHOGEN_TARGET_H

#include "morphogen/error.h"

typedef struct mg_image {
    int height, width;
    float *rgba; /* [height][width][4], premultiplied, row 0 at the top */
} mg_image;

void mg_image_free(mg_image *img);

/* Load a target from `spec`:
 *   "emoji:🦎"        first code point of the UTF-8 text after "emoji:"
 *   "emoji:U+1F98E"   a code point in hex
 *   anything else     a PNG file path (any colour type/bit depth libpng reads)
 * The image is resized so that its longer side is `size` pixels (area
 * averaging of premultiplied RGBA, aspect kept, centred), then padded with a
 * transparent margin of `padding` pixels on every side, giving a square
 * (size + 2*padding) grid. Errors name the file (or spec) and the problem:
 * missing, unreadable, truncated, not a PNG, missing font (name the Debian
 * package fonts-noto-color-emoji), glyph not in the font. */
int mg_target_load(const char *spec, int size, int padding, mg_image *out, mg_error *err);

/* Render an emoji code point through FreeType at the font's bitmap strike
 * into a premultiplied RGBA image (tight, not resized). */
int mg_emoji_render(unsigned codepoint, const char *font_path, mg_image *out, mg_error *err);

/* Default font, overridable with the environment variable MORPHOGEN_EMOJI_FONT. */
const char *mg_emoji_font_path(void);

/* Area-averaging resize of premultiplied RGBA to exactly out_h x out_w. */
int mg_image_resize_area(const mg_image *in, int out_h, int out_w, mg_image *out, mg_error *err);

/* Read any PNG into premultiplied float RGBA. */
int mg_png_read(const char *path, mg_image *out, mg_error *err);

/* Write premultiplied float RGBA as an 8-bit RGBA PNG (un-premultiplied,
 * values clamped to [0,1]). If `on_white` is nonzero, composite on white and
 * write opaque RGB instead. */
int mg_png_write(const char *path, const mg_image *img, int on_white, mg_error *err);

#endif
