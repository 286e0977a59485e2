#define _POSIX_C_SOURCE 200809L

#include "h5_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "morphogen/runfile.h"

#define MG_H5_MAX_RANK 8

void mg_h5_quiet_begin(mg_h5_quiet *q)
{
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void mg_h5_quiet_end(const mg_h5_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* ---- failure causes ---- */

hid_t mg_h5_errors_save(int failed)
{
    return failed ? H5Eget_current_stack() : H5I_INVALID_HID;
}

void mg_h5_errors_restore(hid_t saved)
{
    if (saved >= 0)
        H5Eset_current_stack(saved);
}

typedef struct cause_search {
    int sys_errno;           /* first "errno = N" found, 0 if none */
    char innermost[256];     /* description of the innermost error */
} cause_search;

static herr_t collect_cause(unsigned n, const H5E_error2_t *e, void *client)
{
    cause_search *cs = client;
    if (n == 0 && e->desc)
        snprintf(cs->innermost, sizeof cs->innermost, "%s", e->desc);
    /* The sec2 driver words system failures as "..., errno = 28, error
     * message = 'No space left on device', ...": the errno is the cause the
     * user can act on. */
    const char *p = e->desc ? strstr(e->desc, "errno = ") : NULL;
    if (p && cs->sys_errno == 0)
        cs->sys_errno = atoi(p + strlen("errno = "));
    return 0;
}

void mg_h5_failure_cause(char *buf, size_t len)
{
    cause_search cs = { 0, "" };
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_cause, &cs);
    if (cs.sys_errno > 0)
        snprintf(buf, len, "%s", strerror(cs.sys_errno));
    else if (cs.innermost[0])
        snprintf(buf, len, "HDF5: %s", cs.innermost);
    else
        snprintf(buf, len, "HDF5 library error");
}

/* ---- files and paths ---- */

int mg_h5_probe_existing(const char *path, int writable, mg_error *err)
{
    /* open(2) first: HDF5's own open failure does not tell a missing file
     * from an unreadable or foreign one. */
    int fd = open(path, writable ? O_RDWR : O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT)
            return mg_fail(err, "%s: no such file", path);
        return mg_fail(err, "%s: cannot open: %s", path, strerror(errno));
    }
    close(fd);
    htri_t is_hdf5 = H5Fis_hdf5(path);
    if (is_hdf5 == 0)
        return mg_fail(err, "%s: not an HDF5 file", path);
    if (is_hdf5 < 0) {
        char cause[300];
        mg_h5_failure_cause(cause, sizeof cause);
        return mg_fail(err, "%s: cannot open HDF5 file: %s", path, cause);
    }
    return 0;
}

hid_t mg_h5_open_probed(const char *path, int writable, hid_t fapl, mg_error *err)
{
    hid_t file = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
    if (file < 0) {
        char cause[300];
        mg_h5_failure_cause(cause, sizeof cause);
        return mg_fail(err, "%s: cannot open HDF5 file: %s", path, cause);
    }
    return file;
}

hid_t mg_h5_open_existing(const char *path, int writable, mg_error *err)
{
    if (mg_h5_probe_existing(path, writable, err) < 0)
        return H5I_INVALID_HID;
    return mg_h5_open_probed(path, writable, H5P_DEFAULT, err);
}

int mg_h5_exists(hid_t file, const char *object_path)
{
    char prefix[512];
    size_t len = strlen(object_path);
    if (len == 0 || len >= sizeof prefix)
        return 0;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && object_path[i] != '/')
            continue;
        memcpy(prefix, object_path, i);
        prefix[i] = '\0';
        if (strcmp(prefix, "/") == 0)
            continue;
        if (H5Lexists(file, prefix, H5P_DEFAULT) <= 0)
            return 0;
    }
    return 1;
}

/* ---- strings ---- */

static hid_t utf8_vlen_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

static int write_string_object(hid_t loc, const char *name, const char *text, int as_attr)
{
    hid_t type = utf8_vlen_type();
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t obj = H5I_INVALID_HID;
    int rc = -1;
    if (type < 0 || space < 0)
        goto done;
    obj = as_attr ? H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT)
                  : H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (obj < 0)
        goto done;
    const char *ptrs[1] = { text ? text : "" };
    if ((as_attr ? H5Awrite(obj, type, ptrs) : H5Dwrite(obj, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs)) < 0)
        goto done;
    rc = 0;
done:;
    hid_t errs = mg_h5_errors_save(rc < 0);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    /* Last, as closing a dataset may flush (see mg_h5_write_dataset). */
    if (obj >= 0 && as_attr && H5Aclose(obj) < 0)
        rc = -1;
    else if (obj >= 0 && !as_attr && H5Dclose(obj) < 0)
        rc = -1;
    mg_h5_errors_restore(errs);
    return rc;
}

/* Reads a scalar string whether stored variable-length (what morphogen
 * writes) or fixed-length (what other tools may write). */
static int read_string_object(hid_t obj, int as_attr, char **text)
{
    hid_t stored = as_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t space = as_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    hid_t mem = H5I_INVALID_HID;
    int rc = -1;
    *text = NULL;
    if (stored < 0 || space < 0 || H5Tget_class(stored) != H5T_STRING ||
        H5Sget_simple_extent_npoints(space) != 1)
        goto done;
    htri_t vlen = H5Tis_variable_str(stored);
    if (vlen < 0)
        goto done;
    if (vlen) {
        mem = utf8_vlen_type();
        char *ptrs[1] = { NULL };
        if (mem < 0 || (as_attr ? H5Aread(obj, mem, ptrs)
                                : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs)) < 0)
            goto done;
        *text = strdup(ptrs[0] ? ptrs[0] : "");
        H5Dvlen_reclaim(mem, space, H5P_DEFAULT, ptrs);
    } else {
        size_t size = H5Tget_size(stored);
        mem = H5Tcopy(stored);
        char *buf = calloc(size + 1, 1);
        if (mem < 0 || !buf || H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 ||
            H5Tset_size(mem, size + 1) < 0 ||
            (as_attr ? H5Aread(obj, mem, buf)
                     : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf)) < 0) {
            free(buf);
            goto done;
        }
        *text = buf;
    }
    rc = *text ? 0 : -1;
done:;
    hid_t errs = mg_h5_errors_save(rc < 0);
    if (mem >= 0)
        H5Tclose(mem);
    if (space >= 0)
        H5Sclose(space);
    if (stored >= 0)
        H5Tclose(stored);
    mg_h5_errors_restore(errs);
    return rc;
}

int mg_h5_write_string_dataset(hid_t loc, const char *name, const char *text)
{
    return write_string_object(loc, name, text, 0);
}

int mg_h5_write_string_attr(hid_t obj, const char *name, const char *value)
{
    return write_string_object(obj, name, value, 1);
}

int mg_h5_read_string_dataset(hid_t loc, const char *name, char **text)
{
    *text = NULL;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0)
        return -1;
    int rc = read_string_object(d, 0, text);
    H5Dclose(d);
    return rc;
}

int mg_h5_read_string_attr(hid_t obj, const char *name, char **value)
{
    *value = NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    int rc = read_string_object(a, 1, value);
    H5Aclose(a);
    return rc;
}

int mg_h5_write_string_list_attr(hid_t obj, const char *name, const char *const *values, int n)
{
    hid_t type = utf8_vlen_type();
    hsize_t dim = (hsize_t)n;
    hid_t space = H5Screate_simple(1, &dim, NULL);
    hid_t attr = H5I_INVALID_HID;
    int rc = -1;
    if (type >= 0 && space >= 0)
        attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0 && (n == 0 || H5Awrite(attr, type, values) >= 0))
        rc = 0;
    hid_t errs = mg_h5_errors_save(rc < 0);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    mg_h5_errors_restore(errs);
    return rc;
}

int mg_h5_read_string_list_attr(hid_t obj, const char *name, char *names, size_t name_len,
                                int max, int *n)
{
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t space = attr >= 0 ? H5Aget_space(attr) : H5I_INVALID_HID;
    hid_t stored = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    hid_t type = utf8_vlen_type();
    char **ptrs = NULL;
    int rc = -1;
    *n = 0;
    if (space < 0 || stored < 0 || type < 0 || H5Sget_simple_extent_ndims(space) != 1 ||
        H5Tget_class(stored) != H5T_STRING || H5Tis_variable_str(stored) <= 0)
        goto done;
    hssize_t count = H5Sget_simple_extent_npoints(space);
    if (count < 0 || count > max)
        goto done;
    ptrs = calloc(count ? (size_t)count : 1, sizeof *ptrs);
    if (!ptrs || (count > 0 && H5Aread(attr, type, ptrs) < 0)) {
        free(ptrs);
        ptrs = NULL;
        goto done;
    }
    rc = 0;
    for (hssize_t i = 0; i < count; i++) {
        if (!ptrs[i] || strlen(ptrs[i]) >= name_len)
            rc = -1;
        else
            memcpy(names + (size_t)i * name_len, ptrs[i], strlen(ptrs[i]) + 1);
    }
    if (count > 0)
        H5Dvlen_reclaim(type, space, H5P_DEFAULT, ptrs);
    if (rc == 0)
        *n = (int)count;
done:
    free(ptrs);
    if (type >= 0)
        H5Tclose(type);
    if (stored >= 0)
        H5Tclose(stored);
    if (space >= 0)
        H5Sclose(space);
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}

/* ---- numbers ---- */

int mg_h5_write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                            const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = space >= 0 ? H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)
                            : H5I_INVALID_HID;
    int rc = (attr >= 0 && H5Awrite(attr, mem_type, value) >= 0) ? 0 : -1;
    hid_t errs = mg_h5_errors_save(rc < 0);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    mg_h5_errors_restore(errs);
    return rc;
}

int mg_h5_read_scalar_attr(hid_t obj, const char *name, hid_t mem_type, void *value)
{
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0)
        return -1;
    hid_t space = H5Aget_space(attr);
    int rc = (space >= 0 && H5Sget_simple_extent_npoints(space) == 1 &&
              H5Aread(attr, mem_type, value) >= 0) ? 0 : -1;
    if (space >= 0)
        H5Sclose(space);
    H5Aclose(attr);
    return rc;
}

int mg_h5_dataset_dims(hid_t loc, const char *name, int max_rank, int *rank, int64_t *dims)
{
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t space = H5Dget_space(d);
    hsize_t h[MG_H5_MAX_RANK];
    int r = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    int rc = -1;
    if (r >= 0 && r <= max_rank && r <= MG_H5_MAX_RANK &&
        H5Sget_simple_extent_dims(space, h, NULL) >= 0) {
        *rank = r;
        for (int i = 0; i < r; i++)
            dims[i] = (int64_t)h[i];
        rc = 0;
    }
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(d);
    return rc;
}

int mg_h5_write_dataset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank,
                        const int64_t *dims, const void *data)
{
    hsize_t h[MG_H5_MAX_RANK];
    if (rank < 0 || rank > MG_H5_MAX_RANK)
        return -1;
    hssize_t count = 1;
    for (int i = 0; i < rank; i++) {
        h[i] = (hsize_t)dims[i];
        count *= (hssize_t)dims[i];
    }
    hid_t space = H5Screate_simple(rank, h, NULL);
    /* Missing groups on the way are created: callers name datasets by path. */
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t d = H5I_INVALID_HID;
    if (space >= 0 && lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        d = H5Dcreate2(loc, name, file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = -1;
    if (d >= 0 && (count == 0 || H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0))
        rc = 0;
    hid_t errs = mg_h5_errors_save(rc < 0);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (space >= 0)
        H5Sclose(space);
    /* Last: closing may flush, so a full disk can show up here, and no
     * later call may clear its error stack. */
    if (d >= 0 && H5Dclose(d) < 0 && rc == 0)
        rc = -1;
    mg_h5_errors_restore(errs);
    return rc;
}

int mg_h5_read_dataset(hid_t loc, const char *name, hid_t mem_type, void *data)
{
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t space = H5Dget_space(d);
    int rc = -1;
    if (space >= 0 && (H5Sget_simple_extent_npoints(space) == 0 ||
                       H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0))
        rc = 0;
    hid_t errs = mg_h5_errors_save(rc < 0);
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(d);
    mg_h5_errors_restore(errs);
    return rc;
}

/* ---- public float32 helpers for `grow` and `grad` outputs ---- */

int mg_h5_write_floats(const char *path, int create, const char *name, int rank,
                       const int64_t *dims, const float *data, mg_error *err)
{
    if (rank < 1 || rank > MG_H5_MAX_RANK)
        return mg_fail(err, "%s: cannot write %s: rank %d outside 1..%d", path, name, rank,
                       MG_H5_MAX_RANK);
    mg_h5_quiet quiet;
    mg_h5_quiet_begin(&quiet);
    int rc = -1;
    hid_t file = create ? H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)
                        : mg_h5_open_existing(path, 1, err);
    char cause[300];
    if (file < 0) {
        if (create) {
            mg_h5_failure_cause(cause, sizeof cause);
            mg_fail(err, "%s: cannot create: %s", path, cause);
        }
        goto done;
    }
    /* Replace rather than fail: rewriting an output file is the normal case. */
    if (!create && mg_h5_exists(file, name) && H5Ldelete(file, name, H5P_DEFAULT) < 0) {
        mg_h5_failure_cause(cause, sizeof cause);
        mg_fail(err, "%s: cannot replace %s: %s", path, name, cause);
        goto done;
    }
    if (mg_h5_write_dataset(file, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rank, dims, data) < 0) {
        mg_h5_failure_cause(cause, sizeof cause);
        mg_fail(err, "%s: cannot write %s: %s", path, name, cause);
        goto done;
    }
    rc = 0;
done:
    if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
        mg_h5_failure_cause(cause, sizeof cause);
        rc = mg_fail(err, "%s: cannot write %s: %s", path, name, cause);
    }
    mg_h5_quiet_end(&quiet);
    return rc;
}

int mg_h5_read_floats(const char *path, const char *name, int *rank, int64_t *dims,
                      float **data, mg_error *err)
{
    *data = NULL;
    mg_h5_quiet quiet;
    mg_h5_quiet_begin(&quiet);
    int rc = -1;
    hid_t file = mg_h5_open_existing(path, 0, err);
    if (file < 0)
        goto done;
    if (!mg_h5_exists(file, name)) {
        mg_fail(err, "%s: no dataset %s", path, name);
        goto done;
    }
    if (mg_h5_dataset_dims(file, name, MG_H5_MAX_RANK, rank, dims) < 0) {
        mg_fail(err, "%s: %s is not a dataset of rank 0..%d", path, name, MG_H5_MAX_RANK);
        goto done;
    }
    size_t count = 1;
    for (int i = 0; i < *rank; i++)
        count *= (size_t)dims[i];
    *data = malloc((count ? count : 1) * sizeof **data);
    if (!*data) {
        mg_fail(err, "%s: out of memory reading %s (%zu floats)", path, name, count);
        goto done;
    }
    if (mg_h5_read_dataset(file, name, H5T_NATIVE_FLOAT, *data) < 0) {
        char cause[300];
        mg_h5_failure_cause(cause, sizeof cause);
        mg_fail(err, "%s: cannot read %s as float32: %s", path, name, cause);
        free(*data);
        *data = NULL;
        goto done;
    }
    rc = 0;
done:
    if (file >= 0)
        H5Fclose(file);
    mg_h5_quiet_end(&quiet);
    return rc;
}
