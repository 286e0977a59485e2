/* Turning a target spec ("emoji:🦎", "emoji:U+1F98E" or a PNG path) into the
 * padded square image the organism is trained to grow. */
#include "morphogen/target.h"

#include <stdlib.h>
#include <string.h>

#define EMOJI_PREFIX "emoji:"
/* Keeps (size + 2*padding)^2 * 4 floats far from any overflow. */
#define MG_TARGET_MAX_SIDE 16384

/* Decodes the first code point of UTF-8 `s`, strictly: no overlong forms,
 * no surrogates, nothing above U+10FFFF, no truncated sequences. */
static int utf8_first(const char *s, unsigned *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0], min;
    int extra;
    if (c < 0x80) {
        *cp = c;
        return 0;
    } else if ((c & 0xE0) == 0xC0) {
        extra = 1, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        extra = 2, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        extra = 3, min = 0x10000, c &= 0x07;
    } else {
        return -1; /* a continuation byte or 0xF8..0xFF cannot start a character */
    }
    for (int i = 1; i <= extra; i++) {
        if ((p[i] & 0xC0) != 0x80) /* also stops at the terminating NUL */
            return -1;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return -1;
    *cp = c;
    return 0;
}

/* "U+1F98E" / "u+1f98e": 1 to 6 hex digits and nothing else. */
static int parse_hex_codepoint(const char *hex, unsigned *cp)
{
    size_t n = strlen(hex);
    if (n < 1 || n > 6)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = hex[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        v = v * 16 + d;
    }
    *cp = v;
    return 0;
}

static int load_emoji(const char *spec, mg_image *out, mg_error *err)
{
    const char *text = spec + strlen(EMOJI_PREFIX);
    unsigned cp;
    if (text[0] == '\0')
        return mg_fail(err, "%s: no character after \"emoji:\" (write e.g. emoji:🦎 or emoji:U+1F98E)",
                       spec);
    if ((text[0] == 'U' || text[0] == 'u') && text[1] == '+') {
        if (parse_hex_codepoint(text + 2, &cp) != 0)
            return mg_fail(err, "%s: expected 1 to 6 hexadecimal digits after \"U+\"", spec);
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return mg_fail(err, "%s: not a Unicode character (code points are U+0000..U+10FFFF, "
                                "excluding surrogates)", spec);
    } else if (utf8_first(text, &cp) != 0) {
        return mg_fail(err, "%s: the text after \"emoji:\" is not valid UTF-8", spec);
    }
    return mg_emoji_render(cp, mg_emoji_font_path(), out, err);
}

int mg_target_load(const char *spec, int size, int padding, mg_image *out, mg_error *err)
{
    if (!spec || spec[0] == '\0')
        return mg_fail(err, "target: empty spec (give a PNG path, emoji:🦎 or emoji:U+1F98E)");
    if (size < 1 || padding < 0 || size > MG_TARGET_MAX_SIDE || padding > MG_TARGET_MAX_SIDE ||
        size + 2 * padding > MG_TARGET_MAX_SIDE)
        return mg_fail(err, "%s: target size %d with padding %d is out of range (size >= 1, "
                            "padding >= 0, size + 2*padding <= %d)", spec, size, padding,
                       MG_TARGET_MAX_SIDE);

    mg_image src = {0};
    int rc = strncmp(spec, EMOJI_PREFIX, strlen(EMOJI_PREFIX)) == 0 ? load_emoji(spec, &src, err)
                                                                     : mg_png_read(spec, &src, err);
    if (rc != 0)
        return -1;

    /* The longer side becomes `size`; the shorter keeps the aspect ratio. */
    int h, w;
    if (src.width >= src.height) {
        w = size;
        h = (int)((double)src.height * size / src.width + 0.5);
    } else {
        h = size;
        w = (int)((double)src.width * size / src.height + 0.5);
    }
    h = h < 1 ? 1 : h;
    w = w < 1 ? 1 : w;

    mg_image small = {0};
    rc = mg_image_resize_area(&src, h, w, &small, err);
    mg_image_free(&src);
    if (rc != 0)
        return -1;

    int side = size + 2 * padding;
    float *grid = calloc((size_t)side * side * 4, sizeof *grid); /* transparent */
    if (!grid) {
        mg_image_free(&small);
        return mg_fail(err, "%s: out of memory for a %dx%d target", spec, side, side);
    }
    int top = padding + (size - h) / 2, left = padding + (size - w) / 2;
    for (int y = 0; y < h; y++)
        memcpy(grid + ((size_t)(top + y) * side + left) * 4, small.rgba + (size_t)y * w * 4,
               sizeof *grid * 4 * (size_t)w);
    mg_image_free(&small);

    out->height = side;
    out->width = side;
    out->rgba = grid;
    return 0;
}
