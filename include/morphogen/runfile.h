/* The run file: one HDF5 file per run holding the config, the targets, the
 * metrics of every iteration and the last complete checkpoint. Layout
 * (documented in the README, version MG_RUNFILE_VERSION):
 *
 *   /                     attrs: format="morphogen-run" (string),
 *                                layout_version (int32), morphogen_version (string)
 *   /config               string dataset: the resolved config as INI text
 *                         (every key); attrs: one per key, "section.key",
 *                         typed (int and bool keys int64, u64 keys uint64,
 *                         double keys float64, string and list keys string)
 *   /config_source        string dataset: the user's config file verbatim
 *                         followed by the --set overrides as "; --set k=v" lines
 *   /targets              float32 [n_targets][height][width][4] premultiplied RGBA
 *   /metrics/iteration    int64   [n]  (unlimited, chunked) 1-based iteration number
 *   /metrics/loss         float64 [n]  batch mean loss
 *   /metrics/lr           float64 [n]
 *   /metrics/grad_norm    float64 [n][n_tensors] L2 norm per parameter tensor,
 *                         before normalisation; attr tensor_names (strings,
 *                         column order)
 *   /metrics/wall_time    float64 [n]  seconds since the run started (summed over resumes)
 *   /metrics/cell_steps_per_s float64 [n]
 *   /checkpoint           group; attrs: iteration (int64, iterations completed),
 *                         rng_seed (uint64), adam_step (int64), wall_time (float64)
 *   /checkpoint/params    group; attr tensor_names (1-D string array): the
 *                         tensors in the order they are concatenated in the
 *                         flat parameter vector (offsets are the running sum
 *                         of the sizes, so they are not stored)
 *   /checkpoint/params/<tensor>   float32, shapes from the model (w1 [3C][H],
 *                                 b1 [H], w2 [H][C])
 *   /checkpoint/adam_m/<tensor>   float32, same shapes
 *   /checkpoint/adam_v/<tensor>   float32, same shapes
 *   /checkpoint/pool/states       float32 [pool_size][height][width][channels]
 *   /checkpoint/pool/loss         float32 [pool_size]  last loss of each sample
 *                                 (NaN where never evaluated)
 *   /checkpoint/pool/target       int32   [pool_size]  target index of each sample
 *
 * Strings (datasets and attributes) are variable-length UTF-8. The metrics
 * datasets are chunked (1024 rows) with an unlimited first dimension, also
 * when empty; the pool datasets are contiguous and uncompressed.
 *
 * Crash safety: a write goes to "<path>.tmp" in the same directory, is
 * flushed and fsync'ed, then rename()d over <path>; a crash at any moment
 * leaves either the old or the new complete file.
 *
 * Multi-rank runs (mg_runfile_write_shared / mg_runfile_read_shared) use
 * the same layout and the same code for every object: the file holds no
 * trace of how many ranks wrote it. */
#ifndef MORPHOGEN_RUNFILE_H
#define MORPHOGEN_RUNFILE_H

#include <stdint.h>

#include "morphogen/config.h"
#include "morphogen/error.h"

#define MG_RUNFILE_VERSION 1
#define MG_MAX_TENSORS 8
#define MG_TENSOR_NAME_LEN 16

typedef struct mg_metrics_row {
    int64_t iteration;
    double loss;
    double lr;
    double grad_norm[MG_MAX_TENSORS];
    double wall_time;
    double cell_steps_per_s;
} mg_metrics_row;

typedef struct mg_tensor_desc {
    /* "w1", "b1", "w2". An array rather than a pointer so that a snapshot
     * read from a file owns its names without extra frees. */
    char name[MG_TENSOR_NAME_LEN];
    int rank;         /* 1 or 2 */
    int64_t dims[2];
    int64_t offset;   /* into the flat parameter vector */
    int64_t size;
} mg_tensor_desc;

typedef struct mg_run_snapshot {
    char *config_text;   /* resolved INI (mg_config_to_ini) */
    char *config_source; /* verbatim user config + overrides, may be "" */
    mg_config cfg;       /* parsed from config_text on read */

    int n_targets, height, width; /* grid; targets are [n][height][width][4] */
    float *targets;

    int n_tensors;
    mg_tensor_desc tensors[MG_MAX_TENSORS];
    int64_t n_params;
    float *params, *adam_m, *adam_v; /* flat, n_params each */
    int64_t adam_step;

    int64_t iteration;   /* iterations completed */
    uint64_t rng_seed;
    double wall_time;

    int64_t pool_size;   /* global pool size */
    int channels;
    float *pool_states;  /* [pool_size][height][width][channels] */
    float *pool_loss;    /* [pool_size] */
    int32_t *pool_target;/* [pool_size] */

    int64_t n_metrics;
    mg_metrics_row *metrics;
} mg_run_snapshot;

/* Write the whole snapshot crash-safely (tmp + fsync + rename). On failure
 * (directory not writable, disk full) the previous file at path is intact
 * and the tmp file removed; the error names the path and the cause. */
int mg_runfile_write(const char *path, const mg_run_snapshot *snap, mg_error *err);

/* Read a run file. Errors: missing ("PATH: no such file"), not HDF5
 * ("PATH: not an HDF5 file"), not a run file ("PATH: not a morphogen run
 * file (no format attribute)"), layout_version differing from
 * MG_RUNFILE_VERSION ("PATH: run file layout version N; this morphogen reads
 * version 1"), a missing object ("PATH: missing /checkpoint/pool/states
 * (incomplete or foreign run file)"). cfg is parsed from /config. Works
 * without MPI_Init (default sec2 driver). Allocates all arrays; free with
 * mg_run_snapshot_free. On failure snap holds nothing to free. */
int mg_runfile_read(const char *path, mg_run_snapshot *snap, mg_error *err);

/* The multi-rank functions take the communicator as `const void *mpi_comm`,
 * a pointer to an MPI_Comm (pass &comm, e.g. &(MPI_Comm){MPI_COMM_WORLD}),
 * so that this header does not need mpi.h: parts of morphogen that include
 * it are built without MPI's include path. Careful: with Open MPI, MPI_Comm
 * is itself a pointer, so passing MPI_COMM_WORLD instead of its address
 * compiles. Call them after MPI_Init.
 *
 * Multi-rank write, collective over the communicator (every rank calls it
 * with the same path). snap's pool arrays hold only this rank's samples [pool_first,
 * pool_first + pool_count) of the global snap->pool_size (they may be NULL
 * when pool_count is 0); the shards of all ranks must cover
 * [0, pool_size) exactly once. Everything else in snap is identical on
 * every rank (rank 0's is written).
 *
 * Rank 0 writes every object into "<path>.tmp" with the serial code, with
 * the pool's space reserved; then all ranks open it with MPI-IO and write
 * their own slab of the pool with collective transfers (no rank gathers the
 * pool); then rank 0 fsyncs, renames over path and fsyncs the directory.
 * Crash-safe like mg_runfile_write. Every rank returns the same status and,
 * on failure, the same message, naming the path and, for a failure that
 * happened on some ranks only, the first of them: "PATH: cannot write run
 * file: No space left on device (rank 2)"; the old file at path is then
 * intact and the tmp removed.
 *
 * Test hook: when the environment variable MORPHOGEN_TEST_FAIL_WRITE_RANK
 * holds a rank number, that rank reports "No space left on device" right
 * after its pool transfer (a one-rank failure cannot be produced reliably
 * otherwise: with collective MPI-IO, which rank does the write() is the
 * MPI library's choice). For tests only. */
int mg_runfile_write_shared(const char *path, const mg_run_snapshot *snap, int64_t pool_first,
                            int64_t pool_count, const void *mpi_comm, mg_error *err);

/* Multi-rank read, collective over the communicator. Reads everything, but the pool
 * arrays only for samples [pool_first, pool_first + pool_count), allocated
 * with pool_count entries (pool_count may be 0); snap->pool_size is the
 * global size. Any file can be read by any number of ranks with any
 * slabs. Errors as mg_runfile_read, the same on every rank (with
 * " (rank R)" when only some ranks failed). Free with mg_run_snapshot_free. */
int mg_runfile_read_shared(const char *path, mg_run_snapshot *snap, int64_t pool_first,
                           int64_t pool_count, const void *mpi_comm, mg_error *err);

/* Multi-rank read of the config alone, collective over the communicator:
 * what the ranks of a resume need to work out their pool shards before
 * they read the rest with mg_runfile_read_shared, without loading the
 * targets, checkpoint and metrics twice. The file is checked as far as
 * its header (format, layout version, every object present), so a damaged
 * or foreign file fails here already, with the messages and the agreement
 * between ranks of mg_runfile_read_shared. cfg is untouched on failure. */
int mg_runfile_read_config_shared(const char *path, mg_config *cfg, const void *mpi_comm,
                                  mg_error *err);

/* Frees the arrays and strings a successful mg_runfile_read allocated and
 * zeroes snap. Only for snapshots whose arrays are malloc'd. */
void mg_run_snapshot_free(mg_run_snapshot *snap);

/* Small HDF5 helpers shared by `grow` and `grad` outputs. Write a float32
 * dataset of the given rank (1..8) and dims into a new or existing file
 * (created with H5F_ACC_TRUNC when `create` is nonzero). `name` may contain
 * '/'; missing groups are created; an existing dataset of that name is
 * replaced. */
int mg_h5_write_floats(const char *path, int create, const char *name, int rank,
                       const int64_t *dims, const float *data, mg_error *err);
/* Read a float32 dataset (other float types are converted); *data malloc'd;
 * dims filled (up to 8). */
int mg_h5_read_floats(const char *path, const char *name, int *rank, int64_t *dims,
                      float **data, mg_error *err);

#endif
