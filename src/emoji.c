/* Rendering one emoji through FreeType. Noto Color Emoji is a bitmap-only
 * (CBDT) font with a single 136x128 strike, so we select that strike instead
 * of asking for a pixel size, and load with FT_LOAD_COLOR to get its BGRA
 * bitmap, which FreeType documents as premultiplied already. */
#define _POSIX_C_SOURCE 200809L
#include "morphogen/target.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ft2build.h>
#include FT_FREETYPE_H

#define MG_DEFAULT_EMOJI_FONT "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
/* Scalable colour fonts (COLR, SVG) have no strike; render them this big. */
#define MG_SCALABLE_EMOJI_PIXELS 128

const char *mg_emoji_font_path(void)
{
    const char *env = getenv("MORPHOGEN_EMOJI_FONT");
    return env && env[0] ? env : MG_DEFAULT_EMOJI_FONT;
}

/* UTF-8 for the code point, so error messages show the character the user
 * typed. `buf` holds at least 5 bytes. */
static void utf8_encode(unsigned cp, char *buf)
{
    if (cp < 0x80) {
        buf[0] = (char)cp;
        buf[1] = 0;
    } else if (cp < 0x800) {
        buf[0] = (char)(0xC0 | (cp >> 6));
        buf[1] = (char)(0x80 | (cp & 0x3F));
        buf[2] = 0;
    } else if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | (cp >> 12));
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        buf[3] = 0;
    } else {
        buf[0] = (char)(0xF0 | (cp >> 18));
        buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[3] = (char)(0x80 | (cp & 0x3F));
        buf[4] = 0;
    }
}

static const char *ft_problem(FT_Error e)
{
    const char *s = FT_Error_String(e); /* NULL unless FreeType kept its strings */
    return s ? s : "FreeType error";
}

/* Copies the glyph bitmap, top row first, into premultiplied float RGBA. */
static int bitmap_to_rgba(const FT_Bitmap *bm, float *rgba)
{
    int rows = (int)bm->rows, width = (int)bm->width;
    int pitch = bm->pitch, abs_pitch = pitch < 0 ? -pitch : pitch;
    for (int y = 0; y < rows; y++) {
        /* A negative pitch means rows are stored bottom-up from `buffer`. */
        const unsigned char *src = bm->buffer + (size_t)(pitch < 0 ? rows - 1 - y : y) * abs_pitch;
        float *dst = rgba + (size_t)y * width * 4;
        for (int x = 0; x < width; x++, dst += 4) {
            switch (bm->pixel_mode) {
            case FT_PIXEL_MODE_BGRA: /* premultiplied B, G, R, A */
                dst[0] = src[x * 4 + 2] / 255.0f;
                dst[1] = src[x * 4 + 1] / 255.0f;
                dst[2] = src[x * 4 + 0] / 255.0f;
                dst[3] = src[x * 4 + 3] / 255.0f;
                break;
            case FT_PIXEL_MODE_GRAY: /* coverage of a black glyph */
                dst[0] = dst[1] = dst[2] = 0.0f;
                dst[3] = src[x] / (float)(bm->num_grays - 1);
                break;
            case FT_PIXEL_MODE_MONO:
                dst[0] = dst[1] = dst[2] = 0.0f;
                dst[3] = (src[x >> 3] >> (7 - (x & 7))) & 1 ? 1.0f : 0.0f;
                break;
            default:
                return -1;
            }
        }
    }
    return 0;
}

/* Crops `img` in place to the smallest box holding every pixel with alpha
 * above zero. Returns -1 if the whole image is transparent. */
static int crop_to_content(mg_image *img)
{
    int top = img->height, bottom = -1, left = img->width, right = -1;
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++)
            if (img->rgba[((size_t)y * img->width + x) * 4 + 3] > 0.0f) {
                top = y < top ? y : top;
                bottom = y > bottom ? y : bottom;
                left = x < left ? x : left;
                right = x > right ? x : right;
            }
    if (bottom < 0)
        return -1;
    int h = bottom - top + 1, w = right - left + 1;
    for (int y = 0; y < h; y++)
        memmove(img->rgba + (size_t)y * w * 4, img->rgba + ((size_t)(top + y) * img->width + left) * 4,
                sizeof(float) * 4 * (size_t)w);
    img->height = h;
    img->width = w;
    return 0;
}

/* Everything that needs the open face; the caller owns library and face. */
static int render_with_face(FT_Face face, unsigned codepoint, const char *font_path, mg_image *out,
                            mg_error *err)
{
    char ch[5];
    utf8_encode(codepoint, ch);

    FT_Error e;
    if (face->num_fixed_sizes > 0)
        e = FT_Select_Size(face, 0);
    else
        e = FT_Set_Pixel_Sizes(face, 0, MG_SCALABLE_EMOJI_PIXELS);
    if (e)
        return mg_fail(err, "%s: cannot select a glyph size (%s)", font_path, ft_problem(e));

    FT_UInt index = FT_Get_Char_Index(face, codepoint);
    if (index == 0)
        return mg_fail(err, "emoji:%s (U+%04X): no glyph for this character in %s", ch, codepoint,
                       font_path);
    e = FT_Load_Glyph(face, index, FT_LOAD_COLOR);
    if (!e && face->glyph->format != FT_GLYPH_FORMAT_BITMAP)
        e = FT_Render_Glyph(face->glyph, FT_RENDER_MODE_NORMAL);
    if (e)
        return mg_fail(err, "emoji:%s (U+%04X): cannot render the glyph from %s (%s)", ch, codepoint,
                       font_path, ft_problem(e));

    const FT_Bitmap *bm = &face->glyph->bitmap;
    if (bm->rows == 0 || bm->width == 0)
        return mg_fail(err, "emoji:%s (U+%04X): the glyph in %s is empty", ch, codepoint, font_path);
    mg_image img = {.height = (int)bm->rows, .width = (int)bm->width};
    img.rgba = malloc(sizeof *img.rgba * (size_t)img.height * (size_t)img.width * 4);
    if (!img.rgba)
        return mg_fail(err, "emoji:%s (U+%04X): out of memory", ch, codepoint);
    if (bitmap_to_rgba(bm, img.rgba) != 0) {
        mg_image_free(&img);
        return mg_fail(err, "emoji:%s (U+%04X): %s gave a bitmap in an unsupported pixel mode %d", ch,
                       codepoint, font_path, (int)bm->pixel_mode);
    }
    if (crop_to_content(&img) != 0) {
        mg_image_free(&img);
        return mg_fail(err, "emoji:%s (U+%04X): the glyph in %s is fully transparent", ch, codepoint,
                       font_path);
    }
    *out = img;
    return 0;
}

int mg_emoji_render(unsigned codepoint, const char *font_path, mg_image *out, mg_error *err)
{
    if (codepoint > 0x10FFFF || (codepoint >= 0xD800 && codepoint <= 0xDFFF))
        return mg_fail(err, "U+%04X: not a Unicode character (code points are U+0000..U+10FFFF, "
                            "excluding surrogates)", codepoint);

    /* Check the file ourselves: FreeType's "cannot open resource" does not
     * tell the user what to install. */
    FILE *fp = fopen(font_path, "rb");
    if (!fp) {
        if (errno == ENOENT)
            return mg_fail(err, "%s: emoji font not found; install the Debian package "
                                "fonts-noto-color-emoji (or set MORPHOGEN_EMOJI_FONT)", font_path);
        return mg_fail(err, "%s: cannot read the emoji font: %s", font_path, strerror(errno));
    }
    fclose(fp);

    FT_Library lib;
    FT_Error e = FT_Init_FreeType(&lib);
    if (e)
        return mg_fail(err, "%s: cannot start FreeType (%s)", font_path, ft_problem(e));
    FT_Face face;
    e = FT_New_Face(lib, font_path, 0, &face);
    if (e) {
        FT_Done_FreeType(lib);
        return mg_fail(err, "%s: not a font FreeType can read (%s)", font_path, ft_problem(e));
    }
    int rc = render_with_face(face, codepoint, font_path, out, err);
    FT_Done_Face(face);
    FT_Done_FreeType(lib);
    return rc;
}
