/* `morphogen target`: render a target spec to a PNG exactly as training will
 * see it, so a user can check an emoji or image before spending compute. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "morphogen/error.h"
#include "morphogen/target.h"


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

int mg_cmd_target(int argc, char **argv)
{
    const char *spec = NULL, *out_path = NULL, *value;
    int size = DEFAULT_SIZE, padding = DEFAULT_PADDING, on_white = 0, flags_done = 0, missing = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
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
        } else if ((value = mg_cli_value("target", "--out", argc, argv, &i, &missing))) {
            if (value[0] == '\0')
                return usage_error("%s needs a file name", "--out");
            out_path = value;
        } else if ((value = mg_cli_value("target", "--size", argc, argv, &i, &missing))) {
            if (mg_cli_int("target", "--size", value, 1, 4096, &size) != 0)
                return MG_EXIT_USAGE;
        } else if ((value = mg_cli_value("target", "--padding", argc, argv, &i, &missing))) {
            if (mg_cli_int("target", "--padding", value, 0, 4096, &padding) != 0)
                return MG_EXIT_USAGE;
        } else if (missing) {
            return MG_EXIT_USAGE;
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
