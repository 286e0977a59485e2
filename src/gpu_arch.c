/* Which GPUs a CUDA build can run on (see gpu_arch.h). The rules are
 * CUDA's binary and PTX compatibility ("CUDA C++ Programming Guide",
 * Binary Compatibility and PTX Compatibility). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "morphogen/gpu_arch.h"

/* One entry, trimmed, of length n: 1 runs, 0 does not, -1 not understood. */
static int entry_runs(const char *e, size_t n, int device)
{
    size_t digits = 0;
    while (digits < n && isdigit((unsigned char)e[digits]))
        digits++;
    if (digits < 2 || digits > 3)
        return -1;
    const int version = atoi(e); /* stops at the first non-digit */
    const char *rest = e + digits;
    size_t left = n - digits;
    const int specific = left > 0 && *rest == 'a'; /* sm_90a: this version only */
    if (specific) {
        rest++;
        left--;
    }
    int sass = 1, ptx = 1;
    if (left == 5 && strncmp(rest, "-real", 5) == 0)
        ptx = 0;
    else if (left == 8 && strncmp(rest, "-virtual", 8) == 0)
        sass = 0;
    else if (left != 0)
        return -1;
    if (specific)
        return device == version;
    const int same_major_newer = device / 10 == version / 10 && device % 10 >= version % 10;
    return (sass && same_major_newer) || (ptx && device >= version);
}

int mg_gpu_arch_runs(const char *archs, int major, int minor)
{
    const int device = major * 10 + minor;
    int unknown = 0, entries = 0;
    const char *at = archs ? archs : "";
    for (;;) {
        const size_t len = strcspn(at, ";,");
        size_t first = 0, end = len;
        while (first < end && isspace((unsigned char)at[first]))
            first++;
        while (end > first && isspace((unsigned char)at[end - 1]))
            end--;
        if (end > first) { /* empty entries ("80;;90", a trailing ';') say nothing */
            const int runs = entry_runs(at + first, end - first, device);
            if (runs == 1)
                return 1;
            unknown |= runs < 0;
            entries++;
        }
        if (at[len] == '\0')
            break;
        at += len + 1;
    }
    return unknown || entries == 0 ? -1 : 0;
}
