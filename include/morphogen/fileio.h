/* Replacing a file atomically: write "<path>.tmp" next to it, then commit. */
#ifndef MORPHOGEN_FILEIO_H
#define MORPHOGEN_FILEIO_H

#include <stddef.h>

#include "morphogen/error.h"

/* "<path>.tmp" into buf; fails when it does not fit. */
int mg_tmp_path(const char *path, char *buf, size_t len, mg_error *err);

/* fsync tmp, rename it over path, fsync the directory. Returns 0, or -1
 * with errno set; if the rename did not happen, tmp is removed and path is
 * untouched. */
int mg_replace_file(const char *tmp, const char *path);

/* mg_replace_file with the error worded "PATH: cannot write: CAUSE". */
int mg_commit_tmp(const char *tmp, const char *path, mg_error *err);

#endif
