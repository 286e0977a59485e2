/* Writing a run file crash-safely: everything goes into "<path>.tmp", which
 * is flushed, closed, fsync'ed and then rename()d over <path>; the
 * directory is fsync'ed so the rename itself survives a power cut. A crash
 * or a full disk at any moment leaves the previous file at <path> whole.
 * The steps (runfile_steps.h) are shared with the multi-rank writer in
 * runfile_mpi.c, which fills the pool through MPI-IO in between. */
#define _POSIX_C_SOURCE 200809L

#include "morphogen/fileio.h"
#include "morphogen/runfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "h5_util.h"
#include "runfile_layout.h"
#include "runfile_steps.h"

#ifndef MORPHOGEN_VERSION
#define MORPHOGEN_VERSION "unknown"
#endif

int mg_rf_fail_h5(mg_rf_writer *w)
{
    if (!w->failed)
        mg_h5_failure_cause(w->cause, sizeof w->cause);
    w->failed = 1;
    return -1;
}

int mg_rf_fail_errno(mg_rf_writer *w, int e)
{
    if (!w->failed)
        snprintf(w->cause, sizeof w->cause, "%s", strerror(e));
    w->failed = 1;
    return -1;
}

int mg_rf_fail_msg(mg_rf_writer *w, const char *fmt, ...)
{
    if (!w->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->cause, sizeof w->cause, fmt, ap);
        va_end(ap);
    }
    w->failed = 1;
    return -1;
}

int mg_rf_check_snapshot(mg_rf_writer *w, const mg_run_snapshot *s, int64_t pool_count)
{
    if (!s->config_text)
        return mg_rf_fail_msg(w, "invalid snapshot: no config text");
    if (s->n_targets < 1 || s->height < 1 || s->width < 1 || !s->targets)
        return mg_rf_fail_msg(w, "invalid snapshot: no targets");
    if (s->n_tensors < 1 || s->n_tensors > MG_MAX_TENSORS)
        return mg_rf_fail_msg(w, "invalid snapshot: %d parameter tensors, expected 1..%d",
                        s->n_tensors, MG_MAX_TENSORS);
    int64_t offset = 0;
    for (int i = 0; i < s->n_tensors; i++) {
        const mg_tensor_desc *t = &s->tensors[i];
        int64_t size = t->rank == 1 ? t->dims[0] : t->dims[0] * t->dims[1];
        /* The file stores no offsets: the reader recomputes them as the
         * running sum of sizes, so the flat vector must be packed in order. */
        if (t->name[0] == '\0' || (t->rank != 1 && t->rank != 2) || size != t->size ||
            t->offset != offset)
            return mg_rf_fail_msg(w, "invalid snapshot: tensor %d (\"%s\") has an inconsistent shape "
                            "or offset", i, t->name);
        offset += size;
    }
    if (offset != s->n_params || !s->params || !s->adam_m || !s->adam_v)
        return mg_rf_fail_msg(w, "invalid snapshot: tensor sizes do not add up to %" PRId64 " parameters",
                        s->n_params);
    if (s->pool_size < 1 || s->channels < 1 ||
        (pool_count > 0 && (!s->pool_states || !s->pool_loss || !s->pool_target)))
        return mg_rf_fail_msg(w, "invalid snapshot: empty pool");
    if (s->n_metrics < 0 || (s->n_metrics > 0 && !s->metrics))
        return mg_rf_fail_msg(w, "invalid snapshot: %" PRId64 " metrics rows", s->n_metrics);
    return 0;
}

static int write_root(mg_rf_writer *w, hid_t file)
{
    int32_t version = MG_RUNFILE_VERSION;
    if (mg_h5_write_string_attr(file, MG_RF_ATTR_FORMAT, MG_RF_FORMAT) < 0 ||
        mg_h5_write_scalar_attr(file, MG_RF_ATTR_VERSION, H5T_STD_I32LE, H5T_NATIVE_INT32,
                                &version) < 0 ||
        mg_h5_write_string_attr(file, MG_RF_ATTR_MORPHOGEN_VERSION, MORPHOGEN_VERSION) < 0)
        return mg_rf_fail_h5(w);
    return 0;
}

static int parse_bool(const char *text, int64_t *value)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return *value = 1, 0;
        if (strcasecmp(text, no[i]) == 0)
            return *value = 0, 0;
    }
    return -1;
}

/* One typed attribute per config key so that h5py users get numbers
 * without parsing INI text: f["config"].attrs["train.lr"]. */
static int write_config_attr(mg_rf_writer *w, hid_t dset, const mg_config *cfg, size_t i)
{
    const mg_config_key *key = mg_config_key_at(i);
    char name[128];
    char value[MG_MAX_TARGETS * (MG_SPEC_LEN + 1) + 64];
    snprintf(name, sizeof name, "%s.%s", key->section, key->name);
    mg_config_format_value(cfg, i, value, sizeof value);
    char *end = NULL;
    errno = 0;
    int rc = 0, bad = 0;
    switch (key->type) {
    case MG_KEY_INT: {
        int64_t v = strtoll(value, &end, 10);
        bad = errno != 0 || end == value || *end != '\0';
        if (!bad)
            rc = mg_h5_write_scalar_attr(dset, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
        break;
    }
    case MG_KEY_BOOL: {
        int64_t v = 0;
        bad = parse_bool(value, &v) < 0;
        if (!bad)
            rc = mg_h5_write_scalar_attr(dset, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
        break;
    }
    case MG_KEY_U64: {
        uint64_t v = strtoull(value, &end, 10);
        bad = errno != 0 || end == value || *end != '\0' || value[0] == '-';
        if (!bad)
            rc = mg_h5_write_scalar_attr(dset, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
        break;
    }
    case MG_KEY_DOUBLE: {
        double v = strtod(value, &end);
        bad = end == value || *end != '\0';
        if (!bad)
            rc = mg_h5_write_scalar_attr(dset, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
        break;
    }
    case MG_KEY_STRING:
    case MG_KEY_LIST:
        rc = mg_h5_write_string_attr(dset, name, value);
        break;
    }
    if (bad)
        return mg_rf_fail_msg(w, "config key %s has value \"%s\", which does not parse as its type",
                        name, value);
    return rc < 0 ? mg_rf_fail_h5(w) : 0;
}

static int write_config(mg_rf_writer *w, hid_t file, const mg_run_snapshot *s)
{
    if (mg_h5_write_string_dataset(file, MG_RF_CONFIG, s->config_text) < 0 ||
        mg_h5_write_string_dataset(file, MG_RF_CONFIG_SOURCE,
                                   s->config_source ? s->config_source : "") < 0)
        return mg_rf_fail_h5(w);
    hid_t dset = H5Dopen2(file, MG_RF_CONFIG, H5P_DEFAULT);
    if (dset < 0)
        return mg_rf_fail_h5(w);
    int rc = 0;
    for (size_t i = 0; i < mg_config_key_count() && rc == 0; i++)
        rc = write_config_attr(w, dset, &s->cfg, i);
    H5Dclose(dset);
    return rc;
}

static int write_targets(mg_rf_writer *w, hid_t file, const mg_run_snapshot *s)
{
    int64_t dims[4] = { s->n_targets, s->height, s->width, 4 };
    if (mg_h5_write_dataset(file, MG_RF_TARGETS, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims,
                            s->targets) < 0)
        return mg_rf_fail_h5(w);
    return 0;
}

/* Metrics datasets are chunked with an unlimited first dimension, also when
 * empty, so that tools (and a future in-place appender) can extend them. */
static int write_metrics_column(mg_rf_writer *w, hid_t file, const char *name, hid_t file_type,
                                hid_t mem_type, int64_t n, int cols, const void *data)
{
    int rank = cols > 0 ? 2 : 1;
    hsize_t dims[2] = { (hsize_t)n, (hsize_t)cols };
    hsize_t maxdims[2] = { H5S_UNLIMITED, (hsize_t)cols };
    hsize_t chunk[2] = { MG_RF_METRICS_CHUNK, (hsize_t)cols };
    hid_t space = H5Screate_simple(rank, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = H5I_INVALID_HID;
    int rc = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0)
        d = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0 && (n == 0 || H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0))
        rc = 0;
    hid_t errs = mg_h5_errors_save(rc < 0);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    /* Last: closing flushes, and a full disk shows up here; being the last
     * call keeps its error stack for fail_h5. */
    if (d >= 0 && H5Dclose(d) < 0 && rc == 0)
        rc = -1;
    mg_h5_errors_restore(errs);
    return rc < 0 ? mg_rf_fail_h5(w) : 0;
}

static int write_tensor_names(mg_rf_writer *w, hid_t file, const char *object, const mg_run_snapshot *s)
{
    const char *names[MG_MAX_TENSORS];
    for (int i = 0; i < s->n_tensors; i++)
        names[i] = s->tensors[i].name;
    hid_t obj = H5Oopen(file, object, H5P_DEFAULT);
    if (obj < 0)
        return mg_rf_fail_h5(w);
    int rc = mg_h5_write_string_list_attr(obj, MG_RF_ATTR_TENSOR_NAMES, names, s->n_tensors);
    hid_t errs = mg_h5_errors_save(rc < 0);
    H5Oclose(obj);
    mg_h5_errors_restore(errs);
    return rc < 0 ? mg_rf_fail_h5(w) : 0;
}

static int write_metrics(mg_rf_writer *w, hid_t file, const mg_run_snapshot *s)
{
    hid_t group = H5Gcreate2(file, MG_RF_METRICS, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (group < 0)
        return mg_rf_fail_h5(w);
    H5Gclose(group);

    /* Rows are stored column by column: one gather buffer reused per column. */
    int64_t n = s->n_metrics;
    size_t per_row = (size_t)s->n_tensors;
    double *col = malloc((n > 0 ? (size_t)n : 1) * per_row * sizeof *col);
    int64_t *iter = malloc((n > 0 ? (size_t)n : 1) * sizeof *iter);
    if (!col || !iter) {
        free(col);
        free(iter);
        return mg_rf_fail_errno(w, ENOMEM);
    }
    int rc = 0;
    for (int64_t r = 0; r < n; r++)
        iter[r] = s->metrics[r].iteration;
    rc = write_metrics_column(w, file, MG_RF_M_ITERATION, H5T_STD_I64LE, H5T_NATIVE_INT64, n, 0,
                              iter);

    const mg_rf_metric_column *scalars = MG_RF_METRIC_SCALARS;
    for (size_t c = 0; c < MG_RF_N_METRIC_SCALARS && rc == 0; c++) {
        for (int64_t r = 0; r < n; r++)
            memcpy(&col[r], (const char *)&s->metrics[r] + scalars[c].offset, sizeof(double));
        rc = write_metrics_column(w, file, scalars[c].name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n,
                                  0, col);
    }
    if (rc == 0) {
        for (int64_t r = 0; r < n; r++)
            memcpy(&col[(size_t)r * per_row], s->metrics[r].grad_norm, per_row * sizeof(double));
        rc = write_metrics_column(w, file, MG_RF_M_GRAD_NORM, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n,
                                  s->n_tensors, col);
    }
    free(col);
    free(iter);
    if (rc == 0)
        rc = write_tensor_names(w, file, MG_RF_M_GRAD_NORM, s);
    return rc;
}

static int write_tensor_group(mg_rf_writer *w, hid_t file, const char *group_name, const float *flat,
                              const mg_run_snapshot *s)
{
    hid_t group = H5Gcreate2(file, group_name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (group < 0)
        return mg_rf_fail_h5(w);
    int rc = 0;
    for (int i = 0; i < s->n_tensors && rc == 0; i++) {
        const mg_tensor_desc *t = &s->tensors[i];
        rc = mg_h5_write_dataset(group, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->rank,
                                 t->dims, flat + t->offset);
    }
    hid_t errs = mg_h5_errors_save(rc < 0);
    H5Gclose(group);
    mg_h5_errors_restore(errs);
    return rc < 0 ? mg_rf_fail_h5(w) : 0;
}

static int write_checkpoint(mg_rf_writer *w, hid_t file, const mg_run_snapshot *s,
                            int with_pool_data)
{
    hid_t group = H5Gcreate2(file, MG_RF_CHECKPOINT, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (group < 0)
        return mg_rf_fail_h5(w);
    int rc = 0;
    if (mg_h5_write_scalar_attr(group, MG_RF_ATTR_ITERATION, H5T_STD_I64LE, H5T_NATIVE_INT64,
                                &s->iteration) < 0 ||
        mg_h5_write_scalar_attr(group, MG_RF_ATTR_RNG_SEED, H5T_STD_U64LE, H5T_NATIVE_UINT64,
                                &s->rng_seed) < 0 ||
        mg_h5_write_scalar_attr(group, MG_RF_ATTR_ADAM_STEP, H5T_STD_I64LE, H5T_NATIVE_INT64,
                                &s->adam_step) < 0 ||
        mg_h5_write_scalar_attr(group, MG_RF_ATTR_WALL_TIME, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                                &s->wall_time) < 0)
        rc = mg_rf_fail_h5(w);
    H5Gclose(group);
    if (rc < 0 || write_tensor_group(w, file, MG_RF_PARAMS, s->params, s) < 0 ||
        write_tensor_names(w, file, MG_RF_PARAMS, s) < 0 ||
        write_tensor_group(w, file, MG_RF_ADAM_M, s->adam_m, s) < 0 ||
        write_tensor_group(w, file, MG_RF_ADAM_V, s->adam_v, s) < 0)
        return -1;
    mg_rf_pool_xfer one_process = { H5P_DEFAULT, NULL, NULL, 0 };
    if (mg_runfile_pool_create(file, s->pool_size, s->height, s->width, s->channels,
                               !with_pool_data) < 0 ||
        (with_pool_data &&
         mg_runfile_pool_write(file, &one_process, 0, s->pool_size, s->height, s->width,
                               s->channels, s->pool_states, s->pool_loss, s->pool_target) < 0))
        return mg_rf_fail_h5(w);
    return 0;
}

/* HDF5 part: create the tmp file, write every object, flush and close. */
int mg_rf_write_file(mg_rf_writer *w, const char *tmp, const mg_run_snapshot *s,
                     int with_pool_data)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* sec2 explicitly: the parallel library must not need MPI_Init here.
     * CLOSE_STRONG: closing the file after a failure also closes whatever
     * object a failed step left open, so the tmp file is really released. */
    /* No file locking: the tmp file is private to this write (readers only
     * ever see the renamed result), and flock fails on some cluster file
     * systems. */
    if (fapl < 0 || H5Pset_fapl_sec2(fapl) < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        H5Pset_file_locking(fapl, 0, 1) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return mg_rf_fail_h5(w);
    }
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0)
        mg_rf_fail_h5(w);
    H5Pclose(fapl);
    if (file < 0)
        return -1;
    int rc = 0;
    if (write_root(w, file) < 0 || write_config(w, file, s) < 0 || write_targets(w, file, s) < 0 ||
        write_metrics(w, file, s) < 0 || write_checkpoint(w, file, s, with_pool_data) < 0)
        rc = -1;
    if (rc == 0 && H5Fflush(file, H5F_SCOPE_GLOBAL) < 0)
        rc = mg_rf_fail_h5(w);
    if (H5Fclose(file) < 0 && rc == 0)
        rc = mg_rf_fail_h5(w);
    return rc;
}

char *mg_rf_tmp_path(const char *path)
{
    size_t len = strlen(path);
    char *tmp = malloc(len + sizeof ".tmp");
    if (tmp) {
        memcpy(tmp, path, len);
        memcpy(tmp + len, ".tmp", sizeof ".tmp");
    }
    return tmp;
}

int mg_rf_commit(mg_rf_writer *w, const char *tmp, const char *path)
{
    /* A failed directory sync after the rename still fails the write: the
     * caller believes the checkpoint is durable. */
    if (mg_replace_file(tmp, path) != 0)
        return mg_rf_fail_errno(w, errno);
    return 0;
}

int mg_runfile_write(const char *path, const mg_run_snapshot *snap, mg_error *err)
{
    mg_rf_writer w = { "", 0 };
    char *tmp = mg_rf_tmp_path(path);
    if (!tmp)
        return mg_fail(err, "%s: cannot write run file: out of memory", path);

    mg_h5_quiet quiet;
    mg_h5_quiet_begin(&quiet);
    int rc = mg_rf_check_snapshot(&w, snap, snap->pool_size);
    if (rc == 0 && mg_rf_write_file(&w, tmp, snap, 1) < 0) {
        rc = -1;
        unlink(tmp);
    }
    mg_h5_quiet_end(&quiet);

    if (rc == 0)
        rc = mg_rf_commit(&w, tmp, path);
    free(tmp);
    if (rc < 0)
        return mg_fail(err, "%s: cannot write run file: %s", path, w.cause);
    return 0;
}
