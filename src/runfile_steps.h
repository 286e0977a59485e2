/* The steps of writing and reading a run file, shared by the one-process
 * entry points (runfile_write.c, runfile_read.c) and the multi-rank ones
 * (runfile_mpi.c), so that every object of the layout is created and read
 * by one piece of code only. Internal header. */
#ifndef MORPHOGEN_RUNFILE_STEPS_H
#define MORPHOGEN_RUNFILE_STEPS_H

#include <hdf5.h>
#include <stdint.h>

#include "morphogen/runfile.h"
#include "runfile_layout.h"

/* ---- writing ---- */

/* Why a write failed, without the path: the entry points word the message
 * ("PATH: cannot write run file: CAUSE"). The first failure wins: later
 * cleanup failures are consequences. */
typedef struct mg_rf_writer {
    char cause[400];
    int failed;
} mg_rf_writer;

int mg_rf_fail_h5(mg_rf_writer *w);
int mg_rf_fail_errno(mg_rf_writer *w, int e);
int mg_rf_fail_msg(mg_rf_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A snapshot the reader could not read back is a bug in the caller; caught
 * before anything is written. The pool arrays must be set only when this
 * process writes samples (pool_count > 0). */
int mg_rf_check_snapshot(mg_rf_writer *w, const mg_run_snapshot *s, int64_t pool_count);

/* "<path>.tmp", malloc'd; NULL when out of memory. */
char *mg_rf_tmp_path(const char *path);

/* Creates tmp with the sec2 driver (no MPI needed) and writes every object
 * of the layout. with_pool_data: write the snapshot's whole pool; 0: only
 * create the pool datasets with their space reserved, for the ranks to
 * fill through MPI-IO. Leaves tmp in place on failure. */
int mg_rf_write_file(mg_rf_writer *w, const char *tmp, const mg_run_snapshot *s,
                     int with_pool_data);

/* fsync tmp, rename it over path, fsync the directory. Removes tmp when
 * the rename did not happen. */
int mg_rf_commit(mg_rf_writer *w, const char *tmp, const char *path);

/* ---- reading ---- */

/* How a read goes. One process: fapl H5P_DEFAULT (sec2), pool.dxpl
 * H5P_DEFAULT, agree NULL, pool_count < 0 (the whole pool). All ranks of a
 * communicator: an MPI-IO fapl, collective pool transfers, each rank's
 * slab, and agree (the same function as pool.agree) called before every
 * collective step: the file open and the pool transfer.
 *
 * config_only: the header check and /config, /config_source alone (snap
 * holds config_text, config_source and cfg; the pool fields are ignored
 * and there is no pool transfer). For the ranks of a resume, which need
 * the config to know their pool shard before they can read the rest; the
 * same value on every rank, as the collective steps must match. */
typedef struct mg_rf_read_plan {
    hid_t fapl;
    mg_rf_pool_xfer pool;
    int64_t pool_first, pool_count;
    int config_only;
} mg_rf_read_plan;

/* Reads the file into snap as the plan says. On failure snap holds nothing
 * to free and err names the cause, except when the read stopped because
 * another rank failed at a collective step: then err->msg is left as the
 * caller set it (the empty string), as this rank has no cause to tell. */
int mg_rf_read(const char *path, mg_run_snapshot *snap, mg_rf_read_plan *plan, mg_error *err);

#endif
