/* Replacing a file atomically: write "<path>.tmp" next to it, then commit. */
#ifndef MORPHOGEN_FILEIO_H
#define MORPHOGEN_FILEIO_H

#include <stddef.h>

#include "morphogen/error.h"

/* "<path>.tmp" into buf; fails when it does not fit. */
int mg_tmp_path(const char *path, char *buf, size_t len, mg_error *err);

/* fsync tmp, rename it over path, fsync the directory. On failure tmp is
 * removed, path is untouched, and the error names path. */
int mg_commit_tmp(const char *tmp, const char *path, mg_error *err);

#endif
