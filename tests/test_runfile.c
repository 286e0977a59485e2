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
#include "runfile_fixture.h"


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
    return fx_mkdir_p(work_dir);
}

/* ---- round trips ---- */

static void test_round_trip(void **state)
{
    (void)state;
    char path[4200];
    work_path(path, sizeof path, "round_trip.h5");
    mg_run_snapshot a, b;
    mg_error err = { "" };
    fx_make_snapshot(&a, 4, 3, 42);
    assert_int_equal(mg_runfile_write(path, &a, &err), 0);
    assert_int_equal(mg_runfile_read(path, &b, &err), 0);
    fx_assert_snapshots_equal(&a, &b);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(fx_file_exists(tmp));

    /* Writing over an existing run file replaces it completely. */
    mg_run_snapshot c, d;
    fx_make_snapshot(&c, 5, 7, 43);
    assert_int_equal(mg_runfile_write(path, &c, &err), 0);
    assert_int_equal(mg_runfile_read(path, &d, &err), 0);
    fx_assert_snapshots_equal(&c, &d);
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
    fx_make_snapshot(&a, 4, 0, 0);
    assert_int_equal(mg_runfile_write(path, &a, &err), 0);
    assert_int_equal(mg_runfile_read(path, &b, &err), 0);
    assert_int_equal(b.n_metrics, 0);
    fx_assert_snapshots_equal(&a, &b);
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
    fx_make_snapshot(&a, 4, 3, 5);
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
    assert_int_equal(channels, FX_CHANNELS);
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
    assert_int_equal(dims[1], FX_HEIGHT);
    assert_int_equal(dims[2], FX_WIDTH);
    assert_int_equal(dims[3], FX_CHANNELS);
    H5Sclose(space);
    H5Dclose(d);

    /* w1 is [3C][H] */
    d = H5Dopen2(f, "/checkpoint/params/w1", H5P_DEFAULT);
    space = H5Dget_space(d);
    assert_int_equal(H5Sget_simple_extent_dims(space, dims, NULL), 2);
    assert_int_equal(dims[0], 3 * FX_CHANNELS);
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
    fx_make_snapshot(&a, 4, 3, 1);
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
    assert_false(fx_file_exists(tmp));
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
    fx_make_snapshot(&a, 4, 3, 11);
    assert_int_equal(mg_runfile_write(path, &a, &err), 0);
    fx_make_snapshot(&b, 64, 50, 12); /* ~130 KB of pool, far above the limit */

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
    fx_assert_snapshots_equal(&a, &back);
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
    fx_make_snapshot(&a, 4, 3, 1);
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
    fx_make_snapshot(&expect, 4, stamp, stamp);
    fx_assert_snapshots_equal(&expect, s);
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
    fx_make_snapshot(&s, 4, 0, 0);
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
                fx_make_snapshot(&w, 4, it, it);
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
