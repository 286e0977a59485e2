/* Atomic replacement of output files: a crash or a full disk at any moment
 * leaves either the old file or the complete new one. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "morphogen/fileio.h"

int mg_tmp_path(const char *path, char *buf, size_t len, mg_error *err)
{
    if ((size_t)snprintf(buf, len, "%s.tmp", path) >= len)
        return mg_fail(err, "%s: path too long", path);
    return 0;
}

static int fsync_file(const char *path, int flags)
{
    const int fd = open(path, flags);
    if (fd < 0)
        return -1;
    const int rc = fsync(fd);
    const int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int mg_replace_file(const char *tmp, const char *path)
{
    if (fsync_file(tmp, O_RDONLY) != 0 || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    /* The directory entry too, so the rename survives a power cut. */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (fsync_file(dir, O_RDONLY | O_DIRECTORY) != 0 && errno != EINVAL)
        return -1;
    return 0;
}

int mg_commit_tmp(const char *tmp, const char *path, mg_error *err)
{
    if (mg_replace_file(tmp, path) != 0)
        return mg_fail(err, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}
