/* Small flag-parsing helpers shared by the subcommands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "morphogen/error.h"

int mg_cli_int(const char *cmd, const char *flag, const char *text, int min, int max, int *out)
{
    char *end;
    errno = 0;
    const long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "morphogen %s: %s: '%s' is not an integer in %d..%d\n", cmd, flag, text, min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

const char *mg_cli_value(const char *cmd, const char *flag, int argc, char **argv, int *i, int *missing)
{
    const char *arg = argv[*i];
    const size_t n = strlen(flag);
    if (strncmp(arg, flag, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "morphogen %s: %s needs a value\n", cmd, flag);
        *missing = 1;
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

int mg_cli_positional(const char *cmd, const char *arg, const char **slot)
{
    if (arg[0] == '-') {
        fprintf(stderr, "morphogen %s: unknown flag '%s' (see morphogen %s --help)\n", cmd, arg, cmd);
        return MG_EXIT_USAGE;
    }
    if (*slot) {
        fprintf(stderr, "morphogen %s: unexpected argument '%s' (see morphogen %s --help)\n", cmd, arg, cmd);
        return MG_EXIT_USAGE;
    }
    *slot = arg;
    return 0;
}
