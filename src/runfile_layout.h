/* Object names of the run-file layout (see include/morphogen/runfile.h and
 * the README), shared by the reader and the writer so the two cannot drift
 * apart. Internal header. */
#ifndef MORPHOGEN_RUNFILE_LAYOUT_H
#define MORPHOGEN_RUNFILE_LAYOUT_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "morphogen/runfile.h"

#define MG_RF_FORMAT "morphogen-run"
#define MG_RF_ATTR_FORMAT "format"
#define MG_RF_ATTR_VERSION "layout_version"
#define MG_RF_ATTR_MORPHOGEN_VERSION "morphogen_version"
#define MG_RF_ATTR_TENSOR_NAMES "tensor_names"

#define MG_RF_CONFIG "/config"
#define MG_RF_CONFIG_SOURCE "/config_source"
#define MG_RF_TARGETS "/targets"

#define MG_RF_METRICS "/metrics"
#define MG_RF_M_ITERATION "/metrics/iteration"
#define MG_RF_M_LOSS "/metrics/loss"
#define MG_RF_M_LR "/metrics/lr"
#define MG_RF_M_GRAD_NORM "/metrics/grad_norm"
#define MG_RF_M_WALL_TIME "/metrics/wall_time"
#define MG_RF_M_CELL_STEPS "/metrics/cell_steps_per_s"

/* The float64 metrics columns: dataset name and field of mg_metrics_row. */
typedef struct mg_rf_metric_column {
    const char *name;
    size_t offset;
} mg_rf_metric_column;

static const mg_rf_metric_column MG_RF_METRIC_SCALARS[] = {
    {MG_RF_M_LOSS, offsetof(mg_metrics_row, loss)},
    {MG_RF_M_LR, offsetof(mg_metrics_row, lr)},
    {MG_RF_M_WALL_TIME, offsetof(mg_metrics_row, wall_time)},
    {MG_RF_M_CELL_STEPS, offsetof(mg_metrics_row, cell_steps_per_s)},
};
#define MG_RF_N_METRIC_SCALARS (sizeof MG_RF_METRIC_SCALARS / sizeof MG_RF_METRIC_SCALARS[0])
/* Rows per chunk of the metrics datasets: appends stay cheap and a chunk of
 * grad_norm stays under 64 KiB. */
#define MG_RF_METRICS_CHUNK 1024

#define MG_RF_CHECKPOINT "/checkpoint"
#define MG_RF_ATTR_ITERATION "iteration"
#define MG_RF_ATTR_RNG_SEED "rng_seed"
#define MG_RF_ATTR_ADAM_STEP "adam_step"
#define MG_RF_ATTR_WALL_TIME "wall_time"
#define MG_RF_PARAMS "/checkpoint/params"
#define MG_RF_ADAM_M "/checkpoint/adam_m"
#define MG_RF_ADAM_V "/checkpoint/adam_v"
#define MG_RF_POOL "/checkpoint/pool"
#define MG_RF_POOL_STATES "/checkpoint/pool/states"
#define MG_RF_POOL_LOSS "/checkpoint/pool/loss"
#define MG_RF_POOL_TARGET "/checkpoint/pool/target"

/* Pool I/O by hyperslab of samples [first, first + count): a multi-rank
 * (MPI-IO) writer creates the datasets once for the global pool size and
 * lets every rank write its own slab; the sec2 path writes one slab of the
 * whole pool. Buffers are the slab's samples, no copies are made.
 *
 * allocate_now: reserve the datasets' file space at creation
 * (H5D_ALLOC_TIME_EARLY, no fill written) so that ranks filling them later
 * through MPI-IO change no metadata; otherwise HDF5 allocates on first
 * write, as the serial writer always did. */
int mg_runfile_pool_create(hid_t file, int64_t pool_size, int height, int width, int channels,
                           int allocate_now);

/* How the slabs travel. One process: dxpl H5P_DEFAULT and agree NULL.
 * All ranks of a communicator: dxpl asks for collective MPI-IO, and every
 * rank must reach every H5Dwrite/H5Dread, also a rank without samples
 * (count 0, empty selection). agree is then called by every rank once its
 * datasets are open, with its status (0 or -1), and returns -1 on every
 * rank if any rank failed, so that no rank enters a collective transfer a
 * failed rank will never join. peer_failed is set when the transfer was
 * skipped because of another rank's failure: this rank's HDF5 error stack
 * then holds no cause. */
typedef struct mg_rf_pool_xfer {
    hid_t dxpl;
    int (*agree)(void *ctx, int rc);
    void *agree_ctx;
    int peer_failed;
} mg_rf_pool_xfer;

int mg_runfile_pool_write(hid_t file, mg_rf_pool_xfer *xfer, int64_t first, int64_t count,
                          int height, int width, int channels, const float *states,
                          const float *loss, const int32_t *target);
int mg_runfile_pool_read(hid_t file, mg_rf_pool_xfer *xfer, int64_t first, int64_t count,
                         int height, int width, int channels, float *states, float *loss,
                         int32_t *target);

#endif
