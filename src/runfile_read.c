/* Reading a run file back into a snapshot (resume, `grow`, `grad`). Every
 * shape is checked against the others before anything is read, so a
 * foreign or truncated file gives one line naming the object at fault
 * instead of a crash. */
#define _POSIX_C_SOURCE 200809L

#include "morphogen/runfile.h"

#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5_util.h"
#include "runfile_layout.h"
#include "runfile_steps.h"

/* Every object a complete run file has, checked up front. */
static const char *const required_objects[] = {
    MG_RF_CONFIG,      MG_RF_CONFIG_SOURCE, MG_RF_TARGETS,     MG_RF_M_ITERATION,
    MG_RF_M_LOSS,      MG_RF_M_LR,          MG_RF_M_GRAD_NORM, MG_RF_M_WALL_TIME,
    MG_RF_M_CELL_STEPS, MG_RF_CHECKPOINT,   MG_RF_PARAMS,      MG_RF_ADAM_M,
    MG_RF_ADAM_V,      MG_RF_POOL_STATES,   MG_RF_POOL_LOSS,   MG_RF_POOL_TARGET,
};

typedef struct reader {
    const char *path;
    mg_error *err;
    hid_t file;
    mg_rf_read_plan *plan;
} reader;

static int fail_read(const reader *r, const char *object)
{
    char cause[400];
    mg_h5_failure_cause(cause, sizeof cause);
    return mg_fail(r->err, "%s: cannot read %s: %s", r->path, object, cause);
}

static void format_dims(char *buf, size_t len, int rank, const int64_t *dims)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "[%" PRId64 "]", dims[i]);
}

/* Dims of `object`, which must have `rank` dims; expected[i] < 0 accepts any
 * extent on axis i (it is learned from the file), else it must match. */
static int expect_dims(const reader *r, const char *object, int rank, const int64_t *expected,
                       int64_t *dims)
{
    int got = 0;
    int64_t d[8];
    if (mg_h5_dataset_dims(r->file, object, 8, &got, d) < 0)
        return mg_fail(r->err, "%s: %s is not a dataset", r->path, object);
    int ok = got == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = expected[i] < 0 || expected[i] == d[i];
    if (!ok) {
        char have[200], want[200];
        format_dims(have, sizeof have, got, d);
        want[0] = '\0';
        for (int i = 0; i < rank; i++) {
            char one[32];
            snprintf(one, sizeof one, expected[i] < 0 ? "[*]" : "[%" PRId64 "]", expected[i]);
            strncat(want, one, sizeof want - strlen(want) - 1);
        }
        return mg_fail(r->err, "%s: %s has shape %s, expected %s", r->path, object, have, want);
    }
    memcpy(dims, d, (size_t)rank * sizeof *dims);
    return 0;
}

static int as_int(const reader *r, const char *what, int64_t value, int *out)
{
    if (value < 1 || value > INT_MAX)
        return mg_fail(r->err, "%s: %s is %" PRId64 ", outside 1..%d", r->path, what, value, INT_MAX);
    *out = (int)value;
    return 0;
}

static void *alloc_array(const reader *r, const char *object, size_t count, size_t size)
{
    void *p = malloc((count ? count : 1) * size);
    if (!p)
        mg_fail(r->err, "%s: out of memory reading %s (%zu elements)", r->path, object, count);
    return p;
}

static int read_header(const reader *r)
{
    char *format = NULL;
    if (H5Aexists(r->file, MG_RF_ATTR_FORMAT) <= 0 ||
        mg_h5_read_string_attr(r->file, MG_RF_ATTR_FORMAT, &format) < 0)
        return mg_fail(r->err, "%s: not a morphogen run file (no format attribute)", r->path);
    int foreign = strcmp(format, MG_RF_FORMAT) != 0;
    if (foreign)
        mg_fail(r->err, "%s: not a morphogen run file (format attribute is \"%.200s\")", r->path,
                format);
    free(format);
    if (foreign)
        return -1;
    int32_t version = 0;
    if (mg_h5_read_scalar_attr(r->file, MG_RF_ATTR_VERSION, H5T_NATIVE_INT32, &version) < 0)
        return mg_fail(r->err, "%s: missing layout_version attribute (incomplete or foreign run "
                       "file)", r->path);
    if (version != MG_RUNFILE_VERSION)
        return mg_fail(r->err, "%s: run file layout version %d; this morphogen reads version %d",
                       r->path, (int)version, MG_RUNFILE_VERSION);
    for (size_t i = 0; i < sizeof required_objects / sizeof required_objects[0]; i++)
        if (!mg_h5_exists(r->file, required_objects[i]))
            return mg_fail(r->err, "%s: missing %s (incomplete or foreign run file)", r->path,
                           required_objects[i]);
    return 0;
}

static int read_config(const reader *r, mg_run_snapshot *s)
{
    if (mg_h5_read_string_dataset(r->file, MG_RF_CONFIG, &s->config_text) < 0)
        return fail_read(r, MG_RF_CONFIG);
    if (mg_h5_read_string_dataset(r->file, MG_RF_CONFIG_SOURCE, &s->config_source) < 0)
        return fail_read(r, MG_RF_CONFIG_SOURCE);
    char source[4200];
    snprintf(source, sizeof source, "%s:%s", r->path, MG_RF_CONFIG);
    mg_config_defaults(&s->cfg);
    return mg_config_load_string(&s->cfg, s->config_text, source, r->err);
}

static int read_targets(const reader *r, mg_run_snapshot *s)
{
    const int64_t any[4] = { -1, -1, -1, 4 };
    int64_t d[4];
    if (expect_dims(r, MG_RF_TARGETS, 4, any, d) < 0 || as_int(r, "the number of targets", d[0],
                                                               &s->n_targets) < 0 ||
        as_int(r, "the grid height", d[1], &s->height) < 0 ||
        as_int(r, "the grid width", d[2], &s->width) < 0)
        return -1;
    s->targets = alloc_array(r, MG_RF_TARGETS, (size_t)(d[0] * d[1] * d[2] * 4), sizeof(float));
    if (!s->targets)
        return -1;
    if (mg_h5_read_dataset(r->file, MG_RF_TARGETS, H5T_NATIVE_FLOAT, s->targets) < 0)
        return fail_read(r, MG_RF_TARGETS);
    return 0;
}

/* Tensor names come from the tensor_names attribute of /checkpoint/params
 * (flat-vector order); offsets are the running sum of sizes. */
static int read_tensors(const reader *r, mg_run_snapshot *s)
{
    char names[MG_MAX_TENSORS][MG_TENSOR_NAME_LEN];
    hid_t params = H5Gopen2(r->file, MG_RF_PARAMS, H5P_DEFAULT);
    int n = 0;
    int rc = params < 0 ? -1
                        : mg_h5_read_string_list_attr(params, MG_RF_ATTR_TENSOR_NAMES, &names[0][0],
                                                      MG_TENSOR_NAME_LEN, MG_MAX_TENSORS, &n);
    if (params >= 0)
        H5Gclose(params);
    if (rc < 0 || n < 1)
        return mg_fail(r->err, "%s: %s has no valid tensor_names attribute (1..%d names of up to "
                       "%d characters)", r->path, MG_RF_PARAMS, MG_MAX_TENSORS,
                       MG_TENSOR_NAME_LEN - 1);
    s->n_tensors = n;
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        mg_tensor_desc *t = &s->tensors[i];
        memcpy(t->name, names[i], sizeof t->name);
        char object[64];
        snprintf(object, sizeof object, "%s/%s", MG_RF_PARAMS, t->name);
        if (!mg_h5_exists(r->file, object))
            return mg_fail(r->err, "%s: missing %s (incomplete or foreign run file)", r->path,
                           object);
        int64_t d[8];
        if (mg_h5_dataset_dims(r->file, object, 8, &t->rank, d) < 0 || t->rank < 1 || t->rank > 2)
            return mg_fail(r->err, "%s: %s is not a dataset of rank 1 or 2", r->path, object);
        t->dims[0] = d[0];
        t->dims[1] = t->rank == 2 ? d[1] : 0;
        t->size = t->rank == 2 ? d[0] * d[1] : d[0];
        t->offset = offset;
        offset += t->size;
    }
    s->n_params = offset;
    const struct {
        const char *group;
        float **flat;
    } groups[] = { { MG_RF_PARAMS, &s->params }, { MG_RF_ADAM_M, &s->adam_m },
                   { MG_RF_ADAM_V, &s->adam_v } };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        *groups[g].flat = alloc_array(r, groups[g].group, (size_t)offset, sizeof(float));
        if (!*groups[g].flat)
            return -1;
        for (int i = 0; i < n; i++) {
            const mg_tensor_desc *t = &s->tensors[i];
            char object[64];
            int64_t d[2];
            snprintf(object, sizeof object, "%s/%s", groups[g].group, t->name);
            if (!mg_h5_exists(r->file, object))
                return mg_fail(r->err, "%s: missing %s (incomplete or foreign run file)", r->path,
                               object);
            if (expect_dims(r, object, t->rank, t->dims, d) < 0)
                return -1;
            if (mg_h5_read_dataset(r->file, object, H5T_NATIVE_FLOAT, *groups[g].flat + t->offset) < 0)
                return fail_read(r, object);
        }
    }
    return 0;
}

static int read_checkpoint(const reader *r, mg_run_snapshot *s)
{
    hid_t group = H5Gopen2(r->file, MG_RF_CHECKPOINT, H5P_DEFAULT);
    if (group < 0)
        return fail_read(r, MG_RF_CHECKPOINT);
    const char *missing = NULL;
    if (mg_h5_read_scalar_attr(group, MG_RF_ATTR_ITERATION, H5T_NATIVE_INT64, &s->iteration) < 0)
        missing = MG_RF_ATTR_ITERATION;
    else if (mg_h5_read_scalar_attr(group, MG_RF_ATTR_RNG_SEED, H5T_NATIVE_UINT64, &s->rng_seed) < 0)
        missing = MG_RF_ATTR_RNG_SEED;
    else if (mg_h5_read_scalar_attr(group, MG_RF_ATTR_ADAM_STEP, H5T_NATIVE_INT64, &s->adam_step) < 0)
        missing = MG_RF_ATTR_ADAM_STEP;
    else if (mg_h5_read_scalar_attr(group, MG_RF_ATTR_WALL_TIME, H5T_NATIVE_DOUBLE, &s->wall_time) < 0)
        missing = MG_RF_ATTR_WALL_TIME;
    H5Gclose(group);
    if (missing)
        return mg_fail(r->err, "%s: missing attribute %s of %s (incomplete or foreign run file)",
                       r->path, missing, MG_RF_CHECKPOINT);
    return 0;
}

/* Shapes checked and arrays allocated here, with the other structural
 * checks; the samples themselves are read by read_pool_slab. */
static int check_pool(const reader *r, mg_run_snapshot *s)
{
    const int64_t grid[4] = { -1, s->height, s->width, -1 };
    int64_t d[4];
    if (expect_dims(r, MG_RF_POOL_STATES, 4, grid, d) < 0 ||
        as_int(r, "the number of channels", d[3], &s->channels) < 0)
        return -1;
    s->pool_size = d[0];
    if (s->pool_size < 1)
        return mg_fail(r->err, "%s: %s holds no samples", r->path, MG_RF_POOL_STATES);
    const int64_t per_sample[1] = { s->pool_size };
    int64_t d1[1];
    if (expect_dims(r, MG_RF_POOL_LOSS, 1, per_sample, d1) < 0 ||
        expect_dims(r, MG_RF_POOL_TARGET, 1, per_sample, d1) < 0)
        return -1;
    mg_rf_read_plan *p = r->plan;
    if (p->pool_count < 0) {
        p->pool_first = 0;
        p->pool_count = s->pool_size;
    }
    if (p->pool_first < 0 || p->pool_first > s->pool_size ||
        p->pool_count > s->pool_size - p->pool_first)
        return mg_fail(r->err, "%s: cannot read pool samples [%" PRId64 ", %" PRId64 "): the "
                       "file's pool holds %" PRId64 " samples", r->path, p->pool_first,
                       p->pool_first + p->pool_count, s->pool_size);
    size_t n = (size_t)p->pool_count;
    size_t cells = n * (size_t)s->height * (size_t)s->width * (size_t)s->channels;
    s->pool_states = alloc_array(r, MG_RF_POOL_STATES, cells, sizeof(float));
    s->pool_loss = s->pool_states ? alloc_array(r, MG_RF_POOL_LOSS, n, sizeof(float)) : NULL;
    s->pool_target = s->pool_loss ? alloc_array(r, MG_RF_POOL_TARGET, n, sizeof(int32_t)) : NULL;
    return s->pool_target ? 0 : -1;
}

/* rc: the status so far. Multi-rank, every rank comes here, also after a
 * failure, because the pool transfer is collective. */
static int read_pool_slab(const reader *r, mg_run_snapshot *s, int rc)
{
    mg_rf_read_plan *p = r->plan;
    if (rc < 0) {
        if (p->pool.agree)
            p->pool.agree(p->pool.agree_ctx, rc);
        return -1;
    }
    if (mg_runfile_pool_read(r->file, &p->pool, p->pool_first, p->pool_count, s->height,
                             s->width, s->channels, s->pool_states, s->pool_loss,
                             s->pool_target) < 0)
        return p->pool.peer_failed ? -1 : fail_read(r, MG_RF_POOL);
    return 0;
}

static int read_metrics(const reader *r, mg_run_snapshot *s)
{
    const int64_t any[1] = { -1 };
    int64_t d[2];
    if (expect_dims(r, MG_RF_M_ITERATION, 1, any, d) < 0)
        return -1;
    int64_t n = d[0];
    const int64_t rows[1] = { n };
    const int64_t grad_dims[2] = { n, s->n_tensors };
    const mg_rf_metric_column *scalars = MG_RF_METRIC_SCALARS;
    for (size_t c = 0; c < MG_RF_N_METRIC_SCALARS; c++)
        if (expect_dims(r, scalars[c].name, 1, rows, d) < 0)
            return -1;
    if (expect_dims(r, MG_RF_M_GRAD_NORM, 2, grad_dims, d) < 0)
        return -1;

    s->n_metrics = n;
    s->metrics = alloc_array(r, MG_RF_METRICS, (size_t)n, sizeof *s->metrics);
    size_t per_row = (size_t)s->n_tensors;
    double *col = s->metrics ? alloc_array(r, MG_RF_METRICS, (size_t)n * per_row, sizeof *col) : NULL;
    int64_t *iter = col ? alloc_array(r, MG_RF_M_ITERATION, (size_t)n, sizeof *iter) : NULL;
    int rc = iter ? 0 : -1;
    if (rc == 0)
        memset(s->metrics, 0, (size_t)n * sizeof *s->metrics);
    if (rc == 0 && mg_h5_read_dataset(r->file, MG_RF_M_ITERATION, H5T_NATIVE_INT64, iter) < 0)
        rc = fail_read(r, MG_RF_M_ITERATION);
    for (int64_t i = 0; rc == 0 && i < n; i++)
        s->metrics[i].iteration = iter[i];
    for (size_t c = 0; rc == 0 && c < MG_RF_N_METRIC_SCALARS; c++) {
        if (mg_h5_read_dataset(r->file, scalars[c].name, H5T_NATIVE_DOUBLE, col) < 0) {
            rc = fail_read(r, scalars[c].name);
            break;
        }
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)&s->metrics[i] + scalars[c].offset, &col[i], sizeof(double));
    }
    if (rc == 0 && mg_h5_read_dataset(r->file, MG_RF_M_GRAD_NORM, H5T_NATIVE_DOUBLE, col) < 0)
        rc = fail_read(r, MG_RF_M_GRAD_NORM);
    for (int64_t i = 0; rc == 0 && i < n; i++)
        memcpy(s->metrics[i].grad_norm, &col[(size_t)i * per_row], per_row * sizeof(double));
    free(col);
    free(iter);
    return rc;
}

int mg_rf_read(const char *path, mg_run_snapshot *snap, mg_rf_read_plan *plan, mg_error *err)
{
    memset(snap, 0, sizeof *snap);
    mg_h5_quiet quiet;
    mg_h5_quiet_begin(&quiet);
    reader r = { path, err, H5I_INVALID_HID, plan };
    int rc = mg_h5_probe_existing(path, 0, err);
    /* The open is collective with an MPI-IO fapl: all ranks or none. */
    if (plan->pool.agree)
        rc = plan->pool.agree(plan->pool.agree_ctx, rc);
    if (rc == 0) {
        r.file = mg_h5_open_probed(path, 0, plan->fapl, err);
        rc = r.file < 0 ? -1 : 0;
    }
    int opened = rc == 0;
    if (rc == 0)
        rc = read_header(&r);
    /* The header still checks every object is there: a damaged file fails
     * a config-only read as early as it would fail the full one. */
    if (!plan->config_only) {
        /* Tensors before metrics: grad_norm's width is the number of tensors. */
        if (rc == 0)
            rc = read_targets(&r, snap);
        if (rc == 0)
            rc = read_tensors(&r, snap);
        if (rc == 0)
            rc = read_checkpoint(&r, snap);
        if (rc == 0)
            rc = check_pool(&r, snap);
        if (opened)
            rc = read_pool_slab(&r, snap, rc);
        if (rc == 0)
            rc = read_metrics(&r, snap);
    }
    /* Config last: its parse errors are the least likely to mean the file
     * is damaged, so structural problems are reported first. */
    if (rc == 0)
        rc = read_config(&r, snap);
    if (r.file >= 0)
        H5Fclose(r.file);
    mg_h5_quiet_end(&quiet);
    if (rc < 0)
        mg_run_snapshot_free(snap);
    return rc;
}

int mg_runfile_read(const char *path, mg_run_snapshot *snap, mg_error *err)
{
    mg_rf_read_plan one_process = { H5P_DEFAULT, { H5P_DEFAULT, NULL, NULL, 0 }, 0, -1, 0 };
    return mg_rf_read(path, snap, &one_process, err);
}
