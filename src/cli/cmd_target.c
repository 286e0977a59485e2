/* `morphogen target`: render a target spec to a PNG exactly as training will
 * see it, so a user can check an emoji or image before spending compute. */
#include "morphogen/error.h"
#include "morphogen/target.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Declared here, not in a header of ours: the dispatcher in main.c declares
 * it alongside the other subcommands. */
int mg_cmd_target(int argc, char **argv);

#define DEFAULT_SIZE 40
#define DEFAULT_PADDING 16

static const char usage[] =
    "usage: morphogen target SPEC --out FILE.png [--size N] [--padding N] [--on-white]\n"
    "\n"
    "Render a training target to a PNG, resized and padded as training uses it.\n"
    "\n"
    "SPEC is one of:\n"
    "  emoji:🦎           the first character of the text after \"emoji:\"\n"
    "  emoji:U+1F98E      a Unicode code point in hexadecimal\n"
    "  PATH.png           any PNG image\n"
    "\n"
    "options:\n"
    "  --out FILE.png     where to write the image (required)\n"
    "  --size N           longer side of the image in cells (default 40)\n"
    "  --padding N        transparent cells added on every side (default 16)\n"
    "  --on-white         composite on white and write RGB instead of RGBA\n"
    "  -h, --help         show this help\n"
    "\n"
    "The emoji font defaults to /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf\n"
    "(Debian package fonts-noto-color-emoji); set MORPHOGEN_EMOJI_FONT to use another.\n";

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "morphogen target: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, " (see morphogen target --help)\n");
    return MG_EXIT_USAGE;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* If argv[*i] is `name VALUE` or `name=VALUE`, stores VALUE and returns 1;
 * returns -1 when the value is missing, 0 when argv[*i] is another flag. */
static int flag_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

int mg_cmd_target(int argc, char **argv)
{
    const char *spec = NULL, *out_path = NULL, *value;
    int size = DEFAULT_SIZE, padding = DEFAULT_PADDING, on_white = 0, flags_done = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (flags_done || a[0] != '-' || a[1] == '\0') {
            if (spec)
                return usage_error("more than one SPEC given (second: %s)", a);
            spec = a;
        } else if (strcmp(a, "--") == 0) {
            flags_done = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return MG_EXIT_OK;
        } else if (strcmp(a, "--on-white") == 0) {
            on_white = 1;
        } else if ((r = flag_value(argc, argv, &i, "--out", &value)) != 0) {
            if (r < 0 || value[0] == '\0')
                return usage_error("%s needs a file name", "--out");
            out_path = value;
        } else if ((r = flag_value(argc, argv, &i, "--size", &value)) != 0) {
            if (r < 0 || parse_int(value, 1, 4096, &size) != 0)
                return usage_error("--size needs an integer from 1 to 4096, got '%s'",
                                   r < 0 ? "" : value);
        } else if ((r = flag_value(argc, argv, &i, "--padding", &value)) != 0) {
            if (r < 0 || parse_int(value, 0, 4096, &padding) != 0)
                return usage_error("--padding needs an integer from 0 to 4096, got '%s'",
                                   r < 0 ? "" : value);
        } else {
            return usage_error("unknown option %s", a);
        }
    }
    if (!spec)
        return usage_error("%s", "missing SPEC (a PNG path, emoji:🦎 or emoji:U+1F98E)");
    if (!out_path)
        return usage_error("%s", "missing --out FILE.png");

    mg_error err;
    mg_image img = {0};
    if (mg_target_load(spec, size, padding, &img, &err) != 0 ||
        mg_png_write(out_path, &img, on_white, &err) != 0) {
        mg_image_free(&img);
        fprintf(stderr, "morphogen: %s\n", err.msg);
        return MG_EXIT_ERROR;
    }
    printf("%s: %dx%d target from %s\n", out_path, img.width, img.height, spec);
    mg_image_free(&img);
    return MG_EXIT_OK;
}
