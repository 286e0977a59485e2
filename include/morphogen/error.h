/* Error reporting: every fallible function returns 0 on success or -1 on
 * failure and fills an mg_error with ONE line of the form "WHAT: problem",
 * where WHAT names the file (or key, or flag) at fault. The CLI prints that
 * line verbatim and exits non-zero, so messages must be complete sentences
 * fragments a user can act on, without a trailing newline. */
#ifndef MORPHOGEN_ERROR_H
#define MORPHOGEN_ERROR_H

#include <stddef.h>

#define MG_ERROR_LEN 1024

typedef struct mg_error {
    char msg[MG_ERROR_LEN];
} mg_error;

/* printf-style; always returns -1 so callers can `return mg_fail(err, ...)`.
 * err may be NULL (message dropped). */
int mg_fail(mg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Exit statuses of the morphogen executable (documented in the README). */
enum {
    MG_EXIT_OK = 0,
    MG_EXIT_ERROR = 1,       /* runtime error: I/O, bad run file, bad target */
    MG_EXIT_USAGE = 2,       /* bad flags or config */
    MG_EXIT_NONFINITE = 3,   /* loss became NaN/Inf; last good checkpoint kept */
    MG_EXIT_INTERRUPTED = 75 /* signal received; checkpoint written; resume */
};

#endif
