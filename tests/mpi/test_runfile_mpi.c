/* Multi-rank run files, run under mpirun with 1, 2 and 4 ranks: a file
 * written by N ranks holds exactly what the serial writer writes for the
 * same snapshot, any slicing of the pool reads back, the config alone
 * reads back on every rank, and every failure (missing directory, invalid
 * shards, an invalid snapshot, a full disk on one rank only, a file that
 * is not a run file) gives the same status and message on every
 * rank while the old file stays whole and no tmp file is left.
 *
 * Every test makes all its collective calls before its first assertion: a
 * failed assertion on one rank jumps to the next test, and a collective
 * call left behind would hang the other ranks. Only rank 0 prints. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "morphogen/config.h"
#include "morphogen/runfile.h"
#include "../runfile_fixture.h"


/* Set once in main, before the tests run. */
static MPI_Comm world;
static int my_rank, n_ranks;
static char work_dir[1024];

static void work_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", work_dir, name);
}

static int tmp_exists(const char *path)
{
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    return fx_file_exists(tmp);
}

/* Collective: 1 on every rank if every rank holds the same text. */
static int same_on_all_ranks(const char *text)
{
    char first[MG_ERROR_LEN];
    snprintf(first, sizeof first, "%s", text);
    MPI_Bcast(first, (int)sizeof first, MPI_CHAR, 0, world);
    int same = strcmp(first, text) == 0;
    MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_LAND, world);
    return same;
}

/* Samples [first, first + count) of a pool of pool_size split over n ranks
 * as evenly as possible, the first ranks taking one more. */
static void shard_of(int64_t pool_size, int r, int n, int64_t *first, int64_t *count)
{
    int64_t base = pool_size / n, extra = pool_size % n;
    *first = (int64_t)r * base + (r < extra ? r : extra);
    *count = base + (r < extra ? 1 : 0);
}

/* What one rank holds: the same snapshot with its own copy of its samples
 * only (NULL arrays when it has none), so that the sanitizer catches any
 * access outside the shard. */
static void make_shard(const mg_run_snapshot *full, int64_t first, int64_t count,
                       mg_run_snapshot *view)
{
    *view = *full;
    view->pool_states = NULL;
    view->pool_loss = NULL;
    view->pool_target = NULL;
    if (count == 0)
        return;
    view->pool_states = malloc((size_t)count * FX_CELLS * sizeof(float));
    view->pool_loss = malloc((size_t)count * sizeof(float));
    view->pool_target = malloc((size_t)count * sizeof(int32_t));
    memcpy(view->pool_states, full->pool_states + (size_t)first * FX_CELLS,
           (size_t)count * FX_CELLS * sizeof(float));
    memcpy(view->pool_loss, full->pool_loss + first, (size_t)count * sizeof(float));
    memcpy(view->pool_target, full->pool_target + first, (size_t)count * sizeof(int32_t));
}

static void free_shard(mg_run_snapshot *view)
{
    free(view->pool_states);
    free(view->pool_loss);
    free(view->pool_target);
}

/* ---- writing with N ranks, compared with the serial writer ---- */

static void check_shared_write(int64_t pool_size, int64_t stamp)
{
    char shared[1200], serial[1200];
    work_path(shared, sizeof shared, "shared.h5");
    work_path(serial, sizeof serial, "serial.h5");
    mg_run_snapshot full, view, back, back_other, file_shared, file_serial;
    mg_error werr = { "" }, serr = { "" }, rerr = { "" }, oerr = { "" }, e1 = { "" }, e2 = { "" };
    fx_make_snapshot(&full, pool_size, 4, stamp);
    int64_t first, count, other_first, other_count;
    shard_of(pool_size, my_rank, n_ranks, &first, &count);
    make_shard(&full, first, count, &view);

    int wrc = mg_runfile_write_shared(shared, &view, first, count, &world, &werr);
    int src = 0;
    if (my_rank == 0)
        src = mg_runfile_write(serial, &full, &serr);
    /* Also the barrier after which every rank may read the serial file. */
    MPI_Bcast(&src, 1, MPI_INT, 0, world);
    int rrc = mg_runfile_read_shared(shared, &back, first, count, &world, &rerr);
    /* Another slicing than the writer's: the ranks in reverse order. */
    shard_of(pool_size, n_ranks - 1 - my_rank, n_ranks, &other_first, &other_count);
    int orc = mg_runfile_read_shared(shared, &back_other, other_first, other_count, &world, &oerr);
    /* Both files, whole, through the serial reader (no collective calls). */
    int rc1 = mg_runfile_read(shared, &file_shared, &e1);
    int rc2 = mg_runfile_read(serial, &file_serial, &e2);

    assert_string_equal(werr.msg, "");
    assert_int_equal(wrc, 0);
    assert_string_equal(serr.msg, "");
    assert_int_equal(src, 0);
    assert_string_equal(rerr.msg, "");
    assert_int_equal(rrc, 0);
    assert_string_equal(oerr.msg, "");
    assert_int_equal(orc, 0);
    assert_string_equal(e1.msg, "");
    assert_int_equal(rc1, 0);
    assert_string_equal(e2.msg, "");
    assert_int_equal(rc2, 0);
    assert_false(tmp_exists(shared));

    fx_assert_snapshots_equal(&file_serial, &file_shared);
    fx_assert_snapshots_equal(&full, &file_shared);
    fx_assert_equal_but_pool(&full, &back);
    fx_assert_pool_slab(&full, first, count, &back);
    fx_assert_equal_but_pool(&full, &back_other);
    fx_assert_pool_slab(&full, other_first, other_count, &back_other);

    free_shard(&view);
    mg_run_snapshot_free(&full);
    mg_run_snapshot_free(&back);
    mg_run_snapshot_free(&back_other);
    mg_run_snapshot_free(&file_shared);
    mg_run_snapshot_free(&file_serial);
}

/* The three sizes also replace the same file in turn. */
static void test_write_even_pool(void **state)
{
    (void)state;
    check_shared_write(8, 100);
}

/* 10 samples on 4 ranks: 3, 3, 2, 2. */
static void test_write_uneven_pool(void **state)
{
    (void)state;
    check_shared_write(10, 101);
}

/* 3 samples on 4 ranks: the last rank has none but still takes part. */
static void test_write_rank_without_samples(void **state)
{
    (void)state;
    check_shared_write(3, 102);
}

/* ---- reading a serially written file with N ranks ---- */

static void test_read_serial_file(void **state)
{
    (void)state;
    char path[1200];
    work_path(path, sizeof path, "written_serially.h5");
    mg_run_snapshot full, back;
    mg_error werr = { "" }, rerr = { "" };
    fx_make_snapshot(&full, 10, 2, 200);
    int wrc = 0;
    if (my_rank == 0)
        wrc = mg_runfile_write(path, &full, &werr);
    MPI_Bcast(&wrc, 1, MPI_INT, 0, world);
    int64_t first, count;
    shard_of(full.pool_size, my_rank, n_ranks, &first, &count);
    int rrc = mg_runfile_read_shared(path, &back, first, count, &world, &rerr);

    assert_int_equal(wrc, 0);
    assert_string_equal(rerr.msg, "");
    assert_int_equal(rrc, 0);
    fx_assert_equal_but_pool(&full, &back);
    fx_assert_pool_slab(&full, first, count, &back);
    mg_run_snapshot_free(&full);
    mg_run_snapshot_free(&back);
}

/* ---- the config alone, as the ranks of a resume read it first ---- */

/* Rank 0 alone (sec2): a good run file, a text file, an HDF5 file that is
 * not a run file and a run file without its pool. Returns the number of
 * the first file it could not make, 0 when all were made. */
static int make_config_files(const mg_run_snapshot *full, const char *good, const char *text,
                             const char *foreign, const char *damaged)
{
    mg_error err = { "" };
    if (mg_runfile_write(good, full, &err) != 0)
        return 1;
    FILE *fp = fopen(text, "w");
    if (!fp || fputs("[model]\nchannels = 16\n", fp) < 0 || fclose(fp) != 0)
        return 2;
    const float one = 1.0f;
    const int64_t dims[1] = { 1 };
    if (mg_h5_write_floats(foreign, 1, "/data", 1, dims, &one, &err) != 0)
        return 3;
    if (mg_runfile_write(damaged, full, &err) != 0)
        return 4;
    hid_t f = H5Fopen(damaged, H5F_ACC_RDWR, H5P_DEFAULT);
    int deleted = f >= 0 && H5Ldelete(f, "/checkpoint/pool/states", H5P_DEFAULT) >= 0;
    if (f < 0 || H5Fclose(f) < 0 || !deleted)
        return 4;
    return 0;
}

static void test_read_config(void **state)
{
    (void)state;
    char good[1200], text[1200], foreign[1200], damaged[1200];
    work_path(good, sizeof good, "config_only.h5");
    work_path(text, sizeof text, "config_only_text.h5");
    work_path(foreign, sizeof foreign, "config_only_foreign.h5");
    work_path(damaged, sizeof damaged, "config_only_damaged.h5");
    mg_run_snapshot full;
    fx_make_snapshot(&full, 10, 3, 800);
    int made = my_rank == 0 ? make_config_files(&full, good, text, foreign, damaged) : 0;
    MPI_Bcast(&made, 1, MPI_INT, 0, world);

    mg_config cfg;
    mg_error err = { "" };
    int rc = made ? -1 : mg_runfile_read_config_shared(good, &cfg, &world, &err);
    const char *bad[3] = { text, foreign, damaged };
    const char *cause[3] = { "not an HDF5 file", "not a morphogen run file (no format attribute)",
                             "missing /checkpoint/pool/states (incomplete or foreign run file)" };
    mg_config untouched[3];
    mg_error bad_err[3] = { { "" }, { "" }, { "" } };
    int bad_rc[3] = { 0, 0, 0 }, bad_same[3] = { 0, 0, 0 };
    for (int i = 0; i < 3 && !made; i++) {
        untouched[i].hidden = -5;
        bad_rc[i] = mg_runfile_read_config_shared(bad[i], &untouched[i], &world, &bad_err[i]);
        bad_same[i] = same_on_all_ranks(bad_err[i].msg);
    }

    assert_int_equal(made, 0);
    assert_string_equal(err.msg, "");
    assert_int_equal(rc, 0);
    char *ini = mg_config_to_ini(&cfg);
    assert_non_null(ini);
    assert_string_equal(ini, full.config_text);
    free(ini);
    assert_int_equal(cfg.hidden, 7);
    assert_true(cfg.lr == 1.0 / 3.0);
    assert_true(cfg.seed == full.cfg.seed);
    assert_int_equal(cfg.pin_seed, 1);
    for (int i = 0; i < 3; i++) {
        char want[2048];
        snprintf(want, sizeof want, "%s: %s", bad[i], cause[i]);
        assert_int_equal(bad_rc[i], -1);
        assert_string_equal(bad_err[i].msg, want);
        assert_true(bad_same[i]);
        assert_int_equal(untouched[i].hidden, -5);
    }
    mg_run_snapshot_free(&full);
}

/* ---- failures ---- */

static void test_missing_directory(void **state)
{
    (void)state;
    char path[1200];
    work_path(path, sizeof path, "no_such_dir/run.h5");
    mg_run_snapshot full, view, back;
    mg_error werr = { "" }, rerr = { "" };
    fx_make_snapshot(&full, 10, 1, 300);
    int64_t first, count;
    shard_of(full.pool_size, my_rank, n_ranks, &first, &count);
    make_shard(&full, first, count, &view);
    int wrc = mg_runfile_write_shared(path, &view, first, count, &world, &werr);
    int wsame = same_on_all_ranks(werr.msg);
    int rrc = mg_runfile_read_shared(path, &back, first, count, &world, &rerr);
    int rsame = same_on_all_ranks(rerr.msg);

    char want[2048];
    snprintf(want, sizeof want, "%s: cannot write run file: No such file or directory", path);
    assert_int_equal(wrc, -1);
    assert_string_equal(werr.msg, want);
    assert_true(wsame);
    snprintf(want, sizeof want, "%s: no such file", path);
    assert_int_equal(rrc, -1);
    assert_string_equal(rerr.msg, want);
    assert_true(rsame);
    assert_null(back.pool_states);
    free_shard(&view);
    mg_run_snapshot_free(&full);
}

/* The suffix a one-rank failure carries: none when that rank is alone. */
static void expect_rank_message(char *want, size_t len, const char *path, const char *cause,
                                int failing_rank)
{
    if (n_ranks > 1)
        snprintf(want, len, "%s: cannot write run file: %s (rank %d)", path, cause, failing_rank);
    else
        snprintf(want, len, "%s: cannot write run file: %s", path, cause);
}

/* Through the test hook (see runfile.h): rank 2 (or the last) reports a
 * full disk after its pool transfer, the others succeed. */
static void test_one_rank_disk_full(void **state)
{
    (void)state;
    char path[1200];
    work_path(path, sizeof path, "one_rank_full.h5");
    mg_run_snapshot a, b, view_a, view_b, back;
    mg_error aerr = { "" }, berr = { "" }, rerr = { "" };
    fx_make_snapshot(&a, 10, 2, 400);
    fx_make_snapshot(&b, 10, 3, 401);
    int64_t first, count;
    shard_of(10, my_rank, n_ranks, &first, &count);
    make_shard(&a, first, count, &view_a);
    make_shard(&b, first, count, &view_b);
    int failing = n_ranks > 2 ? 2 : n_ranks - 1;

    int arc = mg_runfile_write_shared(path, &view_a, first, count, &world, &aerr);
    char value[16];
    snprintf(value, sizeof value, "%d", failing);
    setenv("MORPHOGEN_TEST_FAIL_WRITE_RANK", value, 1);
    int brc = mg_runfile_write_shared(path, &view_b, first, count, &world, &berr);
    unsetenv("MORPHOGEN_TEST_FAIL_WRITE_RANK");
    int same = same_on_all_ranks(berr.msg);
    int rrc = mg_runfile_read(path, &back, &rerr);

    assert_string_equal(aerr.msg, "");
    assert_int_equal(arc, 0);
    char want[2048];
    expect_rank_message(want, sizeof want, path, "No space left on device", failing);
    assert_int_equal(brc, -1);
    assert_string_equal(berr.msg, want);
    assert_true(same);
    assert_false(tmp_exists(path));
    assert_string_equal(rerr.msg, "");
    assert_int_equal(rrc, 0);
    fx_assert_snapshots_equal(&a, &back);
    free_shard(&view_a);
    free_shard(&view_b);
    mg_run_snapshot_free(&a);
    mg_run_snapshot_free(&b);
    mg_run_snapshot_free(&back);
}

/* One rank hands in a snapshot without its pool samples: caught before
 * anything is written, reported by every rank with that rank's number. */
static void test_one_rank_invalid_snapshot(void **state)
{
    (void)state;
    char path[1200];
    work_path(path, sizeof path, "invalid_on_one_rank.h5");
    unlink(path);
    MPI_Barrier(world);
    mg_run_snapshot full, view;
    mg_error err = { "" };
    fx_make_snapshot(&full, 10, 1, 600);
    int64_t first, count;
    shard_of(10, my_rank, n_ranks, &first, &count);
    make_shard(&full, first, count, &view);
    int last = n_ranks - 1;
    float *kept = view.pool_states;
    if (my_rank == last)
        view.pool_states = NULL;
    int rc = mg_runfile_write_shared(path, &view, first, count, &world, &err);
    view.pool_states = kept;
    int same = same_on_all_ranks(err.msg);

    char want[2048];
    expect_rank_message(want, sizeof want, path, "invalid snapshot: empty pool", last);
    assert_int_equal(rc, -1);
    assert_string_equal(err.msg, want);
    assert_true(same);
    assert_false(fx_file_exists(path));
    assert_false(tmp_exists(path));
    free_shard(&view);
    mg_run_snapshot_free(&full);
}

/* Shards that leave a gap (the same verdict on every rank, no rank named)
 * and a shard outside the pool (named). */
static void test_bad_shards(void **state)
{
    (void)state;
    char path[1200];
    work_path(path, sizeof path, "bad_shards.h5");
    mg_run_snapshot full, view, back;
    mg_error gap_err = { "" }, out_err = { "" }, read_err = { "" }, ok_err = { "" };
    fx_make_snapshot(&full, 10, 1, 700);
    int64_t first, count;
    shard_of(10, my_rank, n_ranks, &first, &count);
    int last = n_ranks - 1;

    int64_t gap_count = my_rank == last ? count - 1 : count;
    make_shard(&full, first, gap_count, &view);
    int gap_rc = mg_runfile_write_shared(path, &view, first, gap_count, &world, &gap_err);
    int gap_same = same_on_all_ranks(gap_err.msg);
    free_shard(&view);

    int64_t out_first = my_rank == last ? 10 : first;
    make_shard(&full, first, count, &view);
    int out_rc = mg_runfile_write_shared(path, &view, out_first, count, &world, &out_err);
    int out_same = same_on_all_ranks(out_err.msg);
    /* The file to read: written properly this time. */
    int ok_rc = mg_runfile_write_shared(path, &view, first, count, &world, &ok_err);
    int read_rc = mg_runfile_read_shared(path, &back, out_first, count, &world, &read_err);
    int read_same = same_on_all_ranks(read_err.msg);

    char want[2048];
    snprintf(want, sizeof want, "%s: cannot write run file: the ranks' pool shards do not "
             "cover samples [0, 10) exactly once: they end at 9", path);
    assert_int_equal(gap_rc, -1);
    assert_string_equal(gap_err.msg, want);
    assert_true(gap_same);

    int64_t last_first, last_count;
    shard_of(10, last, n_ranks, &last_first, &last_count);
    char cause[200];
    snprintf(cause, sizeof cause, "pool shard [10, %d) lies outside the pool of 10 samples",
             (int)(10 + last_count));
    expect_rank_message(want, sizeof want, path, cause, last);
    assert_int_equal(out_rc, -1);
    assert_string_equal(out_err.msg, want);
    assert_true(out_same);

    assert_string_equal(ok_err.msg, "");
    assert_int_equal(ok_rc, 0);
    char problem[200];
    snprintf(problem, sizeof problem, "cannot read pool samples [10, %d): the file's pool holds "
             "10 samples", (int)(10 + last_count));
    if (n_ranks > 1)
        snprintf(want, sizeof want, "%s: %s (rank %d)", path, problem, last);
    else
        snprintf(want, sizeof want, "%s: %s", path, problem);
    assert_int_equal(read_rc, -1);
    assert_string_equal(read_err.msg, want);
    assert_true(read_same);
    assert_null(back.pool_states);
    free_shard(&view);
    mg_run_snapshot_free(&full);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    world = MPI_COMM_WORLD;
    MPI_Comm_rank(world, &my_rank);
    MPI_Comm_size(world, &n_ranks);
    const char *w = getenv("MG_WORK");
    snprintf(work_dir, sizeof work_dir, "%s", w && *w ? w : "/tmp/mg_test_runfile_mpi");
    int made = my_rank == 0 ? fx_mkdir_p(work_dir) : 0;
    MPI_Bcast(&made, 1, MPI_INT, 0, world);
    if (made < 0) {
        fprintf(stderr, "%s: cannot create: %s\n", work_dir, strerror(errno));
        MPI_Abort(world, 1);
    }
    /* One report, not n interleaved ones: the other ranks' cmocka output
     * (stdout, and stderr where cmocka writes failures and its summary)
     * goes to a log per rank, named by rank 0 if that rank failed. */
    char log[1200];
    snprintf(log, sizeof log, "%s/rank%d.log", work_dir, my_rank);
    if (my_rank != 0 && (!freopen("/dev/null", "w", stdout) || !freopen(log, "w", stderr)))
        MPI_Abort(world, 1);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_even_pool),
        cmocka_unit_test(test_write_uneven_pool),
        cmocka_unit_test(test_write_rank_without_samples),
        cmocka_unit_test(test_read_serial_file),
        cmocka_unit_test(test_read_config),
        cmocka_unit_test(test_missing_directory),
        cmocka_unit_test(test_one_rank_disk_full),
        cmocka_unit_test(test_one_rank_invalid_snapshot),
        cmocka_unit_test(test_bad_shards),
    };
    /* MG_TEST_FILTER=test_name runs one test (debugging a rank's hang). */
    if (getenv("MG_TEST_FILTER"))
        cmocka_set_test_filter(getenv("MG_TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    int *failed_on = malloc((size_t)n_ranks * sizeof *failed_on);
    if (!failed_on)
        MPI_Abort(world, 1);
    MPI_Allgather(&failed, 1, MPI_INT, failed_on, 1, MPI_INT, world);
    int any = 0;
    for (int r = 0; r < n_ranks; r++) {
        any |= failed_on[r] != 0;
        if (my_rank == 0 && r != 0 && failed_on[r])
            fprintf(stderr, "rank %d: %d test(s) failed, see %s/rank%d.log\n", r, failed_on[r],
                    work_dir, r);
    }
    free(failed_on);
    MPI_Finalize();
    return any ? 1 : 0;
}
