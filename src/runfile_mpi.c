/* Multi-rank run files: every rank holds a contiguous shard of the sample
 * pool, and the pool goes to and from the file by collective MPI-IO
 * transfers, each rank moving only its own slab. Every object of the layout
 * is written and read by the same code as the one-process path
 * (runfile_steps.h); this file only adds who does what, and the agreement
 * between ranks that keeps a failure on one rank from leaving the others
 * waiting in a collective call.
 *
 * Why rank 0 writes all the small objects alone, through the serial sec2
 * code, instead of all ranks creating them collectively in an MPI-IO file:
 * HDF5 1.10 (Debian 12 ships 1.10.8) refuses H5Dwrite of variable-length
 * data through an MPI-IO file ("Parallel IO does not support writing VL or
 * region reference datatypes yet"), and /config and /config_source are
 * variable-length UTF-8 strings. Splitting the write in two also means the
 * parallel phase changes no metadata at all (the pool datasets' space is
 * reserved by rank 0 at creation), so the rules on collective metadata
 * calls never come into play: the ranks only open the file, write raw
 * data and close it. */
#define _POSIX_C_SOURCE 200809L

#include "morphogen/runfile.h"

#include <errno.h>
#include <mpi.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5_util.h"
#include "runfile_steps.h"

typedef struct ranks {
    MPI_Comm comm;
    int rank, size;
} ranks;

/* ---- agreement ---- */

/* Status only (the mg_rf_pool_xfer callback): -1 on every rank if any
 * rank passed -1. Called before each collective step. */
static int agree_status(void *ctx, int rc)
{
    const ranks *g = ctx;
    int failed = rc < 0;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_LOR, g->comm);
    return failed ? -1 : 0;
}

/* Status and message: if any rank failed here (failed_here: it has a cause
 * of its own in msg), every rank returns -1 with the message of the lowest
 * failing rank, followed by " (rank R)" unless every rank failed with that
 * same message. */
static int agree_message(const ranks *g, int failed_here, char *msg, size_t cap)
{
    int first = failed_here ? g->rank : g->size;
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, g->comm);
    if (first == g->size)
        return 0;
    char chosen[MG_ERROR_LEN] = "";
    if (g->rank == first)
        snprintf(chosen, sizeof chosen, "%s", msg);
    MPI_Bcast(chosen, (int)sizeof chosen, MPI_CHAR, first, g->comm);
    int same = failed_here && strcmp(chosen, msg) == 0;
    MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_LAND, g->comm);
    if (same)
        snprintf(msg, cap, "%s", chosen);
    else
        snprintf(msg, cap, "%s (rank %d)", chosen, first);
    return -1;
}

static int agree_writer(const ranks *g, mg_rf_writer *w)
{
    if (agree_message(g, w->failed, w->cause, sizeof w->cause) < 0)
        return w->failed = 1, -1;
    return 0;
}

/* After a step rank 0 does alone on behalf of all: its outcome becomes
 * everyone's, without a rank in the message (there is nothing to tell
 * apart: the step has only one doer). */
static int share_root_outcome(const ranks *g, mg_rf_writer *w)
{
    int failed = w->failed;
    MPI_Bcast(&failed, 1, MPI_INT, 0, g->comm);
    if (!failed)
        return 0;
    MPI_Bcast(w->cause, (int)sizeof w->cause, MPI_CHAR, 0, g->comm);
    w->failed = 1;
    return -1;
}

/* ---- writing ---- */

typedef struct shard {
    int64_t first, count;
    int64_t rank;
} shard;

static int by_first(const void *a, const void *b)
{
    const shard *x = a, *y = b;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* The shards must tile [0, pool_size): a gap would leave samples of the
 * file unwritten (garbage on resume), an overlap means two ranks think
 * they own a sample. Every rank sees all shards and so records the same
 * verdict; the caller agrees on it like on any other failure. */
static int check_shards(const ranks *g, mg_rf_writer *w, int64_t pool_size, int64_t first,
                        int64_t count)
{
    shard *all = malloc((size_t)g->size * sizeof *all);
    int have = all != NULL;
    MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPI_INT, MPI_LAND, g->comm);
    if (!have) {
        free(all);
        return mg_rf_fail_msg(w, "out of memory");
    }
    shard mine = { first, count, g->rank };
    MPI_Allgather(&mine, 3, MPI_INT64_T, all, 3, MPI_INT64_T, g->comm);
    qsort(all, (size_t)g->size, sizeof *all, by_first);
    int64_t covered = 0;
    int rc = 0;
    for (int i = 0; i < g->size && rc == 0; i++) {
        if (all[i].count == 0)
            continue;
        if (all[i].first != covered)
            rc = mg_rf_fail_msg(w, "the ranks' pool shards do not cover samples [0, %" PRId64
                                ") exactly once: rank %" PRId64 " holds [%" PRId64 ", %" PRId64
                                ") but the samples before it end at %" PRId64, pool_size,
                                all[i].rank, all[i].first, all[i].first + all[i].count, covered);
        covered = all[i].first + all[i].count;
    }
    if (rc == 0 && covered != pool_size)
        rc = mg_rf_fail_msg(w, "the ranks' pool shards do not cover samples [0, %" PRId64
                            ") exactly once: they end at %" PRId64, pool_size, covered);
    free(all);
    return rc;
}

/* The test hook documented in runfile.h. */
static int test_hook_fails_rank(int rank)
{
    const char *v = getenv("MORPHOGEN_TEST_FAIL_WRITE_RANK");
    if (!v || !*v)
        return 0;
    char *end = NULL;
    long r = strtol(v, &end, 10);
    return *end == '\0' && r == rank;
}

/* Every rank: open the tmp file rank 0 made, write this rank's slab of the
 * pool collectively, flush, close. Failures are recorded in w (the caller
 * agrees on them); every collective call is reached by all ranks or,
 * after an agreed failure, by none. */
static void fill_pool(ranks *g, mg_rf_writer *w, const char *tmp, const mg_run_snapshot *s,
                      int64_t first, int64_t count)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    /* No file locking, as in the serial writer: the tmp file is private to
     * this write, and flock fails on some cluster file systems. */
    if (fapl < 0 || dxpl < 0 || H5Pset_fapl_mpio(fapl, g->comm, MPI_INFO_NULL) < 0 ||
        H5Pset_file_locking(fapl, 0, 1) < 0 || H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        mg_rf_fail_h5(w);
    hid_t file = H5I_INVALID_HID;
    if (agree_status(g, w->failed ? -1 : 0) == 0) {
        /* H5Fopen is collective; it fails on all ranks or none unless the
         * ranks see different file systems, which MPI-IO does not support
         * anyway. */
        file = H5Fopen(tmp, H5F_ACC_RDWR, fapl);
        if (file < 0)
            mg_rf_fail_h5(w);
    }
    if (file >= 0) {
        mg_rf_pool_xfer xfer = { dxpl, agree_status, g, 0 };
        int rc = mg_runfile_pool_write(file, &xfer, first, count, s->height, s->width,
                                       s->channels, s->pool_states, s->pool_loss,
                                       s->pool_target);
        if (rc < 0 && !xfer.peer_failed)
            mg_rf_fail_h5(w);
        if (rc == 0 && test_hook_fails_rank(g->rank))
            mg_rf_fail_errno(w, ENOSPC);
        /* H5Fflush, unlike the flush inside H5Fclose, makes the MPI-IO
         * driver call MPI_File_sync: every rank's data reaches storage.
         * Rank 0's fsync before the rename covers only what its own node
         * wrote on a parallel file system. Collective, so agreed first. */
        if (agree_status(g, rc < 0 || w->failed ? -1 : 0) == 0 &&
            H5Fflush(file, H5F_SCOPE_GLOBAL) < 0)
            mg_rf_fail_h5(w);
        if (H5Fclose(file) < 0)
            mg_rf_fail_h5(w);
    }
    if (dxpl >= 0)
        H5Pclose(dxpl);
    if (fapl >= 0)
        H5Pclose(fapl);
}

int mg_runfile_write_shared(const char *path, const mg_run_snapshot *snap, int64_t pool_first,
                            int64_t pool_count, const void *mpi_comm, mg_error *err)
{
    MPI_Comm comm = *(const MPI_Comm *)mpi_comm;
    ranks g = { comm, 0, 1 };
    MPI_Comm_rank(comm, &g.rank);
    MPI_Comm_size(comm, &g.size);
    mg_rf_writer w = { "", 0 };
    char *tmp = mg_rf_tmp_path(path);
    if (!tmp)
        mg_rf_fail_msg(&w, "out of memory");
    mg_h5_quiet quiet;
    mg_h5_quiet_begin(&quiet);

    if (!w.failed && (pool_first < 0 || pool_count < 0 ||
                      pool_first > snap->pool_size - pool_count))
        mg_rf_fail_msg(&w, "pool shard [%" PRId64 ", %" PRId64 ") lies outside the pool of %"
                       PRId64 " samples", pool_first, pool_first + pool_count, snap->pool_size);
    if (!w.failed)
        mg_rf_check_snapshot(&w, snap, pool_count);
    int rc = agree_writer(&g, &w);
    if (rc == 0) {
        check_shards(&g, &w, snap->pool_size, pool_first, pool_count);
        rc = agree_writer(&g, &w);
    }
    int tmp_made = 0;
    if (rc == 0) {
        if (g.rank == 0) {
            tmp_made = 1;
            mg_rf_write_file(&w, tmp, snap, 0);
        }
        rc = share_root_outcome(&g, &w);
    }
    if (rc == 0) {
        fill_pool(&g, &w, tmp, snap, pool_first, pool_count);
        /* Also the point after which no rank holds the tmp file open. */
        rc = agree_writer(&g, &w);
    }
    if (rc == 0) {
        if (g.rank == 0) {
            tmp_made = 0; /* mg_rf_commit cleans up after itself */
            mg_rf_commit(&w, tmp, path);
        }
        rc = share_root_outcome(&g, &w);
    }
    if (rc < 0 && tmp_made)
        unlink(tmp);
    mg_h5_quiet_end(&quiet);
    free(tmp);
    if (rc < 0)
        return mg_fail(err, "%s: cannot write run file: %s", path, w.cause);
    return 0;
}

/* ---- reading ---- */

/* Both multi-rank readers: config_only as in mg_rf_read_plan. */
static int read_shared(const char *path, mg_run_snapshot *snap, int64_t pool_first,
                       int64_t pool_count, int config_only, const void *mpi_comm, mg_error *err)
{
    MPI_Comm comm = *(const MPI_Comm *)mpi_comm;
    ranks g = { comm, 0, 1 };
    MPI_Comm_rank(comm, &g.rank);
    MPI_Comm_size(comm, &g.size);
    memset(snap, 0, sizeof *snap);
    mg_error mine = { "" };
    int rc = 0;
    /* A negative count would mean "the whole pool" to mg_rf_read. */
    if (pool_first < 0 || pool_count < 0)
        rc = mg_fail(&mine, "%s: cannot read pool samples [%" PRId64 ", %" PRId64 ")", path,
                     pool_first, pool_first + pool_count);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (rc == 0 && (fapl < 0 || dxpl < 0 || H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0 ||
                    H5Pset_file_locking(fapl, 0, 1) < 0 ||
                    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0)) {
        char cause[300];
        mg_h5_failure_cause(cause, sizeof cause);
        rc = mg_fail(&mine, "%s: cannot set up MPI-IO: %s", path, cause);
    }
    /* mg_rf_read agrees before each of its collective steps; a rank that
     * failed already must not enter it at all, so agree here first. */
    if (agree_status(&g, rc) == 0) {
        mg_rf_read_plan plan = { fapl, { dxpl, agree_status, &g, 0 }, pool_first, pool_count,
                                 config_only };
        rc = mg_rf_read(path, snap, &plan, &mine);
    } else {
        rc = -1;
    }
    if (dxpl >= 0)
        H5Pclose(dxpl);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (agree_message(&g, rc < 0 && mine.msg[0] != '\0', mine.msg, sizeof mine.msg) < 0) {
        mg_run_snapshot_free(snap);
        return mg_fail(err, "%s", mine.msg);
    }
    return 0;
}

int mg_runfile_read_shared(const char *path, mg_run_snapshot *snap, int64_t pool_first,
                           int64_t pool_count, const void *mpi_comm, mg_error *err)
{
    return read_shared(path, snap, pool_first, pool_count, 0, mpi_comm, err);
}

int mg_runfile_read_config_shared(const char *path, mg_config *cfg, const void *mpi_comm,
                                  mg_error *err)
{
    mg_run_snapshot snap;
    if (read_shared(path, &snap, 0, 0, 1, mpi_comm, err) != 0)
        return -1;
    *cfg = snap.cfg;
    mg_run_snapshot_free(&snap);
    return 0;
}
