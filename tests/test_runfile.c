/* Run-file round trips, the layout h5py users rely on, the error messages,
 * and crash safety (disk full, missing directory, SIGKILL mid-write). No
 * MPI_Init anywhere: the sec2 path must work without it. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "morphogen/config.h"
#include "morphogen/runfile.h"

#define N_TARGETS 2
#define HEIGHT 6
#define WIDTH 5
#define CHANNELS 16

static char work_dir[4096];

static void work_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", work_dir, name);
}

static int setup_work_dir(void **state)
{
    (void)state;
    const char *w = getenv("MG_WORK");
    snprintf(work_dir, sizeof work_dir, "%s", w && *w ? w : "/tmp/mg_test_runfile");
    /* mkdir -p */
    for (char *p = work_dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        int rc = mkdir(work_dir, 0777);
        *p = saved;
        if (rc < 0 && errno != EEXIST)
            return -1;
        if (saved == '\0')
            return 0;
    }
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- hand-built snapshots ---- */

/* Everything derives from `stamp`, so a snapshot read back can be checked
 * for belonging to one single write (crash tests) as well as bit for bit. */
static void make_snapshot(mg_run_snapshot *s, int64_t pool_size, int64_t n_metrics, int64_t stamp)
{
    memset(s, 0, sizeof *s);
    mg_config_defaults(&s->cfg);
    s->cfg.channels = CHANNELS;
    s->cfg.hidden = 7;
    s->cfg.lr = 1.0 / 3.0; /* not exactly representable in decimal */
    s->cfg.seed = UINT64_C(18446744073709551557); /* above INT64_MAX */
    s->cfg.pin_seed = 1;
    s->config_text = mg_config_to_ini(&s->cfg);
    s->config_source = strdup("[train]\nlr = 0.333 ; \xc3\xa9t\xc3\xa9 \xf0\x9f\xa6\x8e\n"
                              "; --set train.hidden=7\n");

    s->n_targets = N_TARGETS;
    s->height = HEIGHT;
    s->width = WIDTH;
    size_t nt = (size_t)N_TARGETS * HEIGHT * WIDTH * 4;
    s->targets = malloc(nt * sizeof(float));
    for (size_t i = 0; i < nt; i++)
        s->targets[i] = (float)stamp + (float)i / 7.0f;

    /* w1 [3C][H], b1 [H], w2 [H][C] with a small H */
    const int64_t k = 3 * CHANNELS, h = 7;
    s->n_tensors = 3;
    s->tensors[0] = (mg_tensor_desc){ "w1", 2, { k, h }, 0, k * h };
    s->tensors[1] = (mg_tensor_desc){ "b1", 1, { h, 0 }, k * h, h };
    s->tensors[2] = (mg_tensor_desc){ "w2", 2, { h, CHANNELS }, k * h + h, h * CHANNELS };
    s->n_params = k * h + h + h * CHANNELS;
    s->params = malloc((size_t)s->n_params * sizeof(float));
    s->adam_m = malloc((size_t)s->n_params * sizeof(float));
    s->adam_v = malloc((size_t)s->n_params * sizeof(float));
    for (int64_t i = 0; i < s->n_params; i++) {
        s->params[i] = (float)stamp - (float)i * 0.001f;
        s->adam_m[i] = (float)stamp * 1e-3f + (float)i;
        s->adam_v[i] = (float)stamp * 1e-38f; /* subnormal floats must survive too */
    }
    s->params[0] = -0.0f;
    s->adam_step = stamp * 2;

    s->iteration = stamp;
    s->rng_seed = UINT64_C(0xfedcba9876543210) + (uint64_t)stamp;
    s->wall_time = (double)stamp + 0.125;

    s->pool_size = pool_size;
    s->channels = CHANNELS;
    size_t ns = (size_t)pool_size * HEIGHT * WIDTH * CHANNELS;
    s->pool_states = malloc(ns * sizeof(float));
    for (size_t i = 0; i < ns; i++)
        s->pool_states[i] = (float)stamp + (float)(i % 97) * 0.5f;
    s->pool_loss = malloc((size_t)pool_size * sizeof(float));
    s->pool_target = malloc((size_t)pool_size * sizeof(int32_t));
    for (int64_t i = 0; i < pool_size; i++) {
        s->pool_loss[i] = i == 0 ? NAN : (float)stamp / (float)(i + 1);
        s->pool_target[i] = (int32_t)(i % N_TARGETS);
    }

    s->n_metrics = n_metrics;
    s->metrics = calloc(n_metrics > 0 ? (size_t)n_metrics : 1, sizeof *s->metrics);
    for (int64_t r = 0; r < n_metrics; r++) {
        mg_metrics_row *m = &s->metrics[r];
        m->iteration = r + 1;
        m->loss = (double)stamp / (double)(r + 3);
        m->lr = 2e-3 * (double)(r + 1);
        for (int t = 0; t < s->n_tensors; t++)
            m->grad_norm[t] = (double)(r * 10 + t) + 0.1;
        m->wall_time = (double)r * 0.01;
        m->cell_steps_per_s = 1e9 + (double)r;
    }
}

static void assert_snapshots_equal(const mg_run_snapshot *a, const mg_run_snapshot *b)
{
    assert_string_equal(a->config_text, b->config_text);
    assert_string_equal(a->config_source, b->config_source);
    char *ini_a = mg_config_to_ini(&a->cfg);
    char *ini_b = mg_config_to_ini(&b->cfg);
    assert_string_equal(ini_a, ini_b);
    free(ini_a);
    free(ini_b);
    assert_int_equal(a->cfg.hidden, b->cfg.hidden);
    assert_memory_equal(&a->cfg.lr, &b->cfg.lr, sizeof(double));

    assert_int_equal(a->n_targets, b->n_targets);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->width, b->width);
    assert_memory_equal(a->targets, b->targets,
                        (size_t)a->n_targets * a->height * a->width * 4 * sizeof(float));

    assert_int_equal(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        assert_string_equal(a->tensors[i].name, b->tensors[i].name);
        assert_int_equal(a->tensors[i].rank, b->tensors[i].rank);
        for (int j = 0; j < a->tensors[i].rank; j++)
            assert_int_equal(a->tensors[i].dims[j], b->tensors[i].dims[j]);
        assert_int_equal(a->tensors[i].offset, b->tensors[i].offset);
        assert_int_equal(a->tensors[i].size, b->tensors[i].size);
    }
    assert_int_equal(a->n_params, b->n_params);
    size_t np = (size_t)a->n_params * sizeof(float);
    assert_memory_equal(a->params, b->params, np);
    assert_memory_equal(a->adam_m, b->adam_m, np);
    assert_memory_equal(a->adam_v, b->adam_v, np);
    assert_int_equal(a->adam_step, b->adam_step);

    assert_int_equal(a->iteration, b->iteration);
    assert_true(a->rng_seed == b->rng_seed);
    assert_memory_equal(&a->wall_time, &b->wall_time, sizeof(double));

    assert_int_equal(a->pool_size, b->pool_size);
    assert_int_equal(a->channels, b->channels);
    assert_memory_equal(a->pool_states, b->pool_states,
                        (size_t)a->pool_size * a->height * a->width * a->channels * sizeof(float));
    assert_memory_equal(a->pool_loss, b->pool_loss, (size_t)a->pool_size * sizeof(float));
    assert_memory_equal(a->pool_target, b->pool_target, (size_t)a->pool_size * sizeof(int32_t));

    assert_int_equal(a->n_metrics, b->n_metrics);
    for (int64_t r = 0; r < a->n_metrics; r++) {
        const mg_metrics_row *x = &a->metrics[r], *y = &b->metrics[r];
        assert_int_equal(x->iteration, y->iteration);
        assert_memory_equal(&x->loss, &y->loss, sizeof(double));
        assert_memory_equal(&x->lr, &y->lr, sizeof(double));
        assert_memory_equal(x->grad_norm, y->grad_norm, (size_t)a->n_tensors * sizeof(double));
        assert_memory_equal(&x->wall_time, &y->wall_time, sizeof(double));
        assert_memory_equal(&x->cell_steps_per_s, &y->cell_steps_per_s, sizeof(double));
    }
}

/* ---- round trips ---- */

static void test_round_trip(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "round_trip.h5");
    mg_run_snapshot a, b;
    mg_error err = { "" };
    make_snapshot(&a, 4, 3, 42);
    assert_int_equal(mg_runfile_write(path, &a, &err), 0);
    assert_int_equal(mg_runfile_read(path, &b, &err), 0);
    assert_snapshots_equal(&a, &b);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(file_exists(tmp));

    /* Writing over an existing run file replaces it completely. */
    mg_run_snapshot c, d;
    make_snapshot(&c, 5, 7, 43);
    assert_int_equal(mg_runfile_write(path, &c, &err), 0);
    assert_int_equal(mg_runfile_read(path, &d, &err), 0);
    assert_snapshots_equal(&c, &d);
    mg_run_snapshot_free(&a);
    mg_run_snapshot_free(&b);
    mg_run_snapshot_free(&c);
    mg_run_snapshot_free(&d);
}

static void test_empty_metrics(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "empty_metrics.h5");
    mg_run_snapshot a, b;
    mg_error err = { "" };
    make_snapshot(&a, 4, 0, 0);
    assert_int_equal(mg_runfile_write(path, &a, &err), 0);
    assert_int_equal(mg_runfile_read(path, &b, &err), 0);
    assert_int_equal(b.n_metrics, 0);
    assert_snapshots_equal(&a, &b);
    mg_run_snapshot_free(&a);
    mg_run_snapshot_free(&b);
}

/* ---- the layout as h5py sees it, checked with plain HDF5 calls ---- */

static H5T_class_t attr_class(hid_t obj, const char *name, size_t *size)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    *size = H5Tget_size(t);
    if (c == H5T_STRING) {
        assert_true(H5Tis_variable_str(t) > 0);
        assert_int_equal(H5Tget_cset(t), H5T_CSET_UTF8);
    }
    H5Tclose(t);
    H5Aclose(a);
    return c;
}

static void check_chunked_unlimited(hid_t file, const char *name, int rank, hsize_t rows)
{
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t space = H5Dget_space(d);
    hsize_t dims[2], maxdims[2];
    assert_int_equal(H5Sget_simple_extent_dims(space, dims, maxdims), rank);
    assert_int_equal(dims[0], rows);
    assert_true(maxdims[0] == H5S_UNLIMITED);
    hid_t dcpl = H5Dget_create_plist(d);
    assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Dclose(d);
}

static void test_layout(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "layout.h5");
    mg_run_snapshot a;
    mg_error err = { "" };
    make_snapshot(&a, 4, 3, 5);
    assert_int_equal(mg_runfile_write(path, &a, &err), 0);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    size_t size = 0;
    assert_int_equal(attr_class(f, "format", &size), H5T_STRING);
    assert_int_equal(attr_class(f, "morphogen_version", &size), H5T_STRING);
    assert_int_equal(attr_class(f, "layout_version", &size), H5T_INTEGER);
    assert_int_equal(size, 4);

    /* Typed config attributes, one per key. */
    hid_t cfg = H5Dopen2(f, "/config", H5P_DEFAULT);
    assert_true(cfg >= 0);
    H5O_info_t info;
    assert_true(H5Oget_info2(cfg, &info, H5O_INFO_NUM_ATTRS) >= 0);
    assert_int_equal(info.num_attrs, mg_config_key_count());
    assert_int_equal(attr_class(cfg, "model.channels", &size), H5T_INTEGER);
    assert_int_equal(size, 8);
    assert_int_equal(attr_class(cfg, "seed.pin", &size), H5T_INTEGER);
    assert_int_equal(attr_class(cfg, "train.lr", &size), H5T_FLOAT);
    assert_int_equal(size, 8);
    assert_int_equal(attr_class(cfg, "target.spec", &size), H5T_STRING);
    assert_int_equal(attr_class(cfg, "run.backend", &size), H5T_STRING);
    double lr = 0;
    int64_t channels = 0, pin = 0;
    uint64_t seed = 0;
    hid_t at = H5Aopen(cfg, "train.lr", H5P_DEFAULT);
    assert_true(H5Aread(at, H5T_NATIVE_DOUBLE, &lr) >= 0);
    H5Aclose(at);
    at = H5Aopen(cfg, "model.channels", H5P_DEFAULT);
    assert_true(H5Aread(at, H5T_NATIVE_INT64, &channels) >= 0);
    H5Aclose(at);
    at = H5Aopen(cfg, "seed.pin", H5P_DEFAULT);
    assert_true(H5Aread(at, H5T_NATIVE_INT64, &pin) >= 0);
    H5Aclose(at);
    at = H5Aopen(cfg, "train.seed", H5P_DEFAULT);
    hid_t seed_type = H5Aget_type(at);
    assert_int_equal(H5Tget_sign(seed_type), H5T_SGN_NONE);
    H5Tclose(seed_type);
    assert_true(H5Aread(at, H5T_NATIVE_UINT64, &seed) >= 0);
    H5Aclose(at);
    H5Dclose(cfg);
    assert_memory_equal(&lr, &a.cfg.lr, sizeof lr);
    assert_int_equal(channels, CHANNELS);
    assert_int_equal(pin, 1);
    assert_true(seed == a.cfg.seed);

    check_chunked_unlimited(f, "/metrics/iteration", 1, 3);
    check_chunked_unlimited(f, "/metrics/loss", 1, 3);
    check_chunked_unlimited(f, "/metrics/grad_norm", 2, 3);
    check_chunked_unlimited(f, "/metrics/cell_steps_per_s", 1, 3);

    /* The pool: contiguous, uncompressed, [P][H][W][C] */
    hid_t d = H5Dopen2(f, "/checkpoint/pool/states", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    assert_int_equal(H5Pget_layout(dcpl), H5D_CONTIGUOUS);
    H5Pclose(dcpl);
    hid_t space = H5Dget_space(d);
    hsize_t dims[4];
    assert_int_equal(H5Sget_simple_extent_dims(space, dims, NULL), 4);
    assert_int_equal(dims[0], 4);
    assert_int_equal(dims[1], HEIGHT);
    assert_int_equal(dims[2], WIDTH);
    assert_int_equal(dims[3], CHANNELS);
    H5Sclose(space);
    H5Dclose(d);

    /* w1 is [3C][H] */
    d = H5Dopen2(f, "/checkpoint/params/w1", H5P_DEFAULT);
    space = H5Dget_space(d);
    assert_int_equal(H5Sget_simple_extent_dims(space, dims, NULL), 2);
    assert_int_equal(dims[0], 3 * CHANNELS);
    assert_int_equal(dims[1], 7);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    mg_run_snapshot_free(&a);
}

static void test_float_helpers(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "floats.h5");
    mg_error err = { "" };
    float a[6] = { 1, -2, 3.5f, NAN, 1e-40f, -0.0f };
    float b[3] = { 7, 8, 9 };
    int64_t da[2] = { 2, 3 }, db[1] = { 3 };
    assert_int_equal(mg_h5_write_floats(path, 1, "frames", 2, da, a, &err), 0);
    assert_int_equal(mg_h5_write_floats(path, 0, "/nested/group/b", 1, db, b, &err), 0);
    /* rewriting a dataset replaces it */
    b[0] = 70;
    assert_int_equal(mg_h5_write_floats(path, 0, "/nested/group/b", 1, db, b, &err), 0);

    int rank = 0;
    int64_t dims[8];
    float *data = NULL;
    assert_int_equal(mg_h5_read_floats(path, "frames", &rank, dims, &data, &err), 0);
    assert_int_equal(rank, 2);
    assert_int_equal(dims[0], 2);
    assert_int_equal(dims[1], 3);
    assert_memory_equal(data, a, sizeof a);
    free(data);
    assert_int_equal(mg_h5_read_floats(path, "/nested/group/b", &rank, dims, &data, &err), 0);
    assert_int_equal(rank, 1);
    assert_memory_equal(data, b, sizeof b);
    free(data);

    assert_int_equal(mg_h5_read_floats(path, "nope", &rank, dims, &data, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "nope"));
    char missing[4200];
    work_path(missing, sizeof missing, "floats_missing.h5");
    assert_int_equal(mg_h5_read_floats(missing, "frames", &rank, dims, &data, &err), -1);
    char want[4300];
    snprintf(want, sizeof want, "%s: no such file", missing);
    assert_string_equal(err.msg, want);
}

/* ---- read errors ---- */

static void expect_read_error(const char *path, const char *problem)
{
    mg_run_snapshot s;
    mg_error err = { "" };
    assert_int_equal(mg_runfile_read(path, &s, &err), -1);
    char want[4400];
    snprintf(want, sizeof want, "%s: %s", path, problem);
    assert_string_equal(err.msg, want);
    /* nothing left to free after a failed read */
    assert_null(s.targets);
    assert_null(s.pool_states);
    assert_null(s.config_text);
}

static void write_good_file(const char *path)
{
    mg_run_snapshot a;
    mg_error err = { "" };
    make_snapshot(&a, 4, 3, 1);
    assert_int_equal(mg_runfile_write(path, &a, &err), 0);
    mg_run_snapshot_free(&a);
}

static void test_read_errors(void **state)
{
    (void)state;
    char path[4200];

    work_path(path, sizeof path, "does_not_exist.h5");
    expect_read_error(path, "no such file");

    work_path(path, sizeof path, "text.h5");
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("[model]\nchannels = 16\n", fp);
    fclose(fp);
    expect_read_error(path, "not an HDF5 file");

    work_path(path, sizeof path, "foreign.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t g = H5Gcreate2(f, "/data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    H5Fclose(f);
    expect_read_error(path, "not a morphogen run file (no format attribute)");

    work_path(path, sizeof path, "version99.h5");
    write_good_file(path);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "layout_version", H5P_DEFAULT);
    int32_t v = 99;
    assert_true(H5Awrite(a, H5T_NATIVE_INT32, &v) >= 0);
    H5Aclose(a);
    H5Fclose(f);
    expect_read_error(path, "run file layout version 99; this morphogen reads version 1");

    work_path(path, sizeof path, "no_pool.h5");
    write_good_file(path);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Ldelete(f, "/checkpoint/pool/states", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_read_error(path, "missing /checkpoint/pool/states (incomplete or foreign run file)");

    work_path(path, sizeof path, "no_checkpoint.h5");
    write_good_file(path);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Ldelete(f, "/checkpoint", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_read_error(path, "missing /checkpoint (incomplete or foreign run file)");

    work_path(path, sizeof path, "short_loss.h5");
    write_good_file(path);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Ldelete(f, "/metrics/loss", H5P_DEFAULT) >= 0);
    hsize_t two = 2;
    hid_t sp = H5Screate_simple(1, &two, NULL);
    hid_t d = H5Dcreate2(f, "/metrics/loss", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
    expect_read_error(path, "/metrics/loss has shape [2], expected [3]");
}

/* ---- crash safety ---- */

static void assert_no_tmp(const char *path)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(file_exists(tmp));
}

/* Disk full: a child limited to a small file size (SIGXFSZ ignored so the
 * write fails with EFBIG instead of killing it) tries to replace A by B. */
static void test_disk_full_keeps_old_file(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "disk_full.h5");
    mg_run_snapshot a, b, back;
    mg_error err = { "" };
    make_snapshot(&a, 4, 3, 11);
    assert_int_equal(mg_runfile_write(path, &a, &err), 0);
    make_snapshot(&b, 64, 50, 12); /* ~130 KB of pool, far above the limit */

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = { 16384, 16384 };
        setrlimit(RLIMIT_FSIZE, &lim);
        mg_error child_err = { "" };
        int rc = mg_runfile_write(path, &b, &child_err);
        ssize_t unused = write(fds[1], child_err.msg, strlen(child_err.msg) + 1);
        (void)unused;
        _exit(rc == 0 ? 0 : 1);
    }
    close(fds[1]);
    char msg[MG_ERROR_LEN] = "";
    ssize_t got = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    assert_true(got > 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char want[4400];
    snprintf(want, sizeof want, "%s: cannot write run file: File too large", path);
    assert_string_equal(msg, want);

    assert_no_tmp(path);
    assert_int_equal(mg_runfile_read(path, &back, &err), 0);
    assert_snapshots_equal(&a, &back);
    mg_run_snapshot_free(&a);
    mg_run_snapshot_free(&b);
    mg_run_snapshot_free(&back);
}

static void test_missing_directory(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "no_such_dir/run.h5");
    mg_run_snapshot a;
    mg_error err = { "" };
    make_snapshot(&a, 4, 3, 1);
    assert_int_equal(mg_runfile_write(path, &a, &err), -1);
    char want[4400];
    snprintf(want, sizeof want, "%s: cannot write run file: No such file or directory", path);
    assert_string_equal(err.msg, want);
    mg_run_snapshot_free(&a);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* A consistent file belongs to one single write: every stamped value
 * agrees with the checkpoint iteration. */
static void assert_consistent(const mg_run_snapshot *s)
{
    int64_t stamp = s->iteration;
    mg_run_snapshot expect;
    make_snapshot(&expect, 4, stamp, stamp);
    assert_snapshots_equal(&expect, s);
    mg_run_snapshot_free(&expect);
}

/* SIGKILL in the middle of a loop of writes, at several moments: whatever
 * the moment, the file reads back complete and from one single write. */
static void test_kill_during_writes(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "killed.h5");
    mg_run_snapshot s;
    mg_error err = { "" };
    make_snapshot(&s, 4, 0, 0);
    assert_int_equal(mg_runfile_write(path, &s, &err), 0);
    mg_run_snapshot_free(&s);

    int64_t last = 0;
    for (int trial = 0; trial < 8; trial++) {
        /* The child reports each completed write through a pipe, so the
         * parent can wait for progress however loaded the machine is, then
         * kill at a varying moment into the following write. */
        int done[2];
        assert_int_equal(pipe(done), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(done[0]);
            for (int64_t it = last + 1;; it++) {
                mg_run_snapshot w;
                mg_error child_err;
                make_snapshot(&w, 4, it, it);
                if (mg_runfile_write(path, &w, &child_err) < 0)
                    _exit(1);
                mg_run_snapshot_free(&w);
                if (write(done[1], "x", 1) != 1)
                    _exit(1);
            }
        }
        close(done[1]);
        char byte;
        assert_int_equal(read(done[0], &byte, 1), 1);
        sleep_ms(trial);
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        close(done[0]);

        assert_int_equal(mg_runfile_read(path, &s, &err), 0);
        assert_int_equal(s.n_metrics, s.iteration);
        /* At least the reported write landed: the file moved on. */
        assert_true(s.iteration > last);
        assert_consistent(&s);
        last = s.iteration;
        mg_run_snapshot_free(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_metrics),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_float_helpers),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_disk_full_keeps_old_file),
        cmocka_unit_test(test_missing_directory),
        cmocka_unit_test(test_kill_during_writes),
    };
    return cmocka_run_group_tests(tests, setup_work_dir, NULL);
}
