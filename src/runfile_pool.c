/* The sample pool of a run file's checkpoint, read and written by slabs of
 * samples so that an MPI-IO writer can give every rank its own slab of the
 * same datasets. The pool is by far the largest part of the file (1024
 * samples of 72x72x16 floats = 340 MB), so the datasets are contiguous and
 * uncompressed and the caller's buffers go to HDF5 without copies. */
#include "runfile_layout.h"

#include "h5_util.h"

/* The three pool datasets, in the order they are created and transferred. */
#define POOL_SETS 3
static const struct {
    const char *name;
    int rank;
} pool_sets[POOL_SETS] = {
    { MG_RF_POOL_STATES, 4 },
    { MG_RF_POOL_LOSS, 1 },
    { MG_RF_POOL_TARGET, 1 },
};

/* HDF5's type ids are run-time values (H5T_NATIVE_FLOAT expands to a
 * library call), so they cannot sit in the static table above. Index 2 is
 * the target index dataset. */
static hid_t file_type_of(int i)
{
    return i == 2 ? H5T_STD_I32LE : H5T_IEEE_F32LE;
}

static hid_t mem_type_of(int i)
{
    return i == 2 ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT;
}

int mg_runfile_pool_create(hid_t file, int64_t pool_size, int height, int width, int channels,
                           int allocate_now)
{
    hid_t group = H5Gcreate2(file, MG_RF_POOL, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (group < 0)
        return -1;
    H5Gclose(group);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0)
        return -1;
    /* Early allocation without fill: the space is reserved (a sparse
     * extension of the file) and left for the ranks to write. */
    if (allocate_now && (H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 ||
                         H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0)) {
        H5Pclose(dcpl);
        return -1;
    }
    hsize_t dims[4] = { (hsize_t)pool_size, (hsize_t)height, (hsize_t)width, (hsize_t)channels };
    int rc = 0;
    for (int i = 0; i < POOL_SETS && rc == 0; i++) {
        hid_t space = H5Screate_simple(pool_sets[i].rank, dims, NULL);
        hid_t d = space >= 0 ? H5Dcreate2(file, pool_sets[i].name, file_type_of(i), space,
                                          H5P_DEFAULT, allocate_now ? dcpl : H5P_DEFAULT,
                                          H5P_DEFAULT)
                             : H5I_INVALID_HID;
        rc = d < 0 ? -1 : 0;
        hid_t errs = mg_h5_errors_save(rc < 0);
        if (d >= 0)
            H5Dclose(d);
        if (space >= 0)
            H5Sclose(space);
        mg_h5_errors_restore(errs);
    }
    hid_t errs = mg_h5_errors_save(rc < 0);
    H5Pclose(dcpl);
    mg_h5_errors_restore(errs);
    return rc;
}

/* One open dataset with its file selection (the slab's hyperslab) and its
 * memory space (the caller's contiguous slab buffer). */
typedef struct slab {
    hid_t dset, fspace, mspace;
} slab;

static int slab_open(slab *s, hid_t file, int i, int64_t first, int64_t count, int height,
                     int width, int channels)
{
    hsize_t start[4] = { (hsize_t)first, 0, 0, 0 };
    hsize_t extent[4] = { (hsize_t)count, (hsize_t)height, (hsize_t)width, (hsize_t)channels };
    /* A rank without samples still joins the collective transfer, with
     * nothing selected on either side. */
    hsize_t mem_extent[4] = { count > 0 ? (hsize_t)count : 1, (hsize_t)height, (hsize_t)width,
                              (hsize_t)channels };
    s->dset = H5Dopen2(file, pool_sets[i].name, H5P_DEFAULT);
    s->fspace = s->dset >= 0 ? H5Dget_space(s->dset) : H5I_INVALID_HID;
    s->mspace = H5Screate_simple(pool_sets[i].rank, mem_extent, NULL);
    if (s->dset < 0 || s->fspace < 0 || s->mspace < 0)
        return -1;
    if (count == 0)
        return H5Sselect_none(s->fspace) < 0 || H5Sselect_none(s->mspace) < 0 ? -1 : 0;
    return H5Sselect_hyperslab(s->fspace, H5S_SELECT_SET, start, NULL, extent, NULL) < 0 ? -1 : 0;
}

/* Returns the close status: closing may flush. */
static int slab_close(slab *s)
{
    int rc = 0;
    if (s->mspace >= 0)
        H5Sclose(s->mspace);
    if (s->fspace >= 0)
        H5Sclose(s->fspace);
    if (s->dset >= 0 && H5Dclose(s->dset) < 0)
        rc = -1;
    return rc;
}

static int pool_io(hid_t file, mg_rf_pool_xfer *x, int64_t first, int64_t count, int height,
                   int width, int channels, int writing, void *const bufs[POOL_SETS])
{
    slab slabs[POOL_SETS];
    for (int i = 0; i < POOL_SETS; i++)
        slabs[i] = (slab){ H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID };
    int rc = 0;
    for (int i = 0; i < POOL_SETS && rc == 0; i++)
        rc = slab_open(&slabs[i], file, i, first, count, height, width, channels);
    hid_t errs = mg_h5_errors_save(rc < 0);
    x->peer_failed = 0;
    if (x->agree) {
        int agreed = x->agree(x->agree_ctx, rc);
        x->peer_failed = rc == 0 && agreed < 0;
        rc = agreed;
    }
    /* Collectively, every rank makes all three transfers even after a
     * failed one (the others are waiting in them) and keeps the first
     * failure's error stack; one process stops at the first failure. */
    int transfer = rc == 0;
    for (int i = 0; transfer && i < POOL_SETS; i++) {
        herr_t io = writing ? H5Dwrite(slabs[i].dset, mem_type_of(i), slabs[i].mspace,
                                       slabs[i].fspace, x->dxpl, bufs[i])
                            : H5Dread(slabs[i].dset, mem_type_of(i), slabs[i].mspace,
                                      slabs[i].fspace, x->dxpl, bufs[i]);
        if (io < 0 && rc == 0) {
            rc = -1;
            errs = mg_h5_errors_save(1);
            transfer = x->agree != NULL;
        }
    }
    for (int i = 0; i < POOL_SETS; i++)
        if (slab_close(&slabs[i]) < 0 && rc == 0) {
            rc = -1;
            errs = mg_h5_errors_save(1);
        }
    mg_h5_errors_restore(errs);
    return rc;
}

int mg_runfile_pool_write(hid_t file, mg_rf_pool_xfer *xfer, int64_t first, int64_t count,
                          int height, int width, int channels, const float *states,
                          const float *loss, const int32_t *target)
{
    /* H5Dwrite takes const buffers; the casts only share pool_io with reading. */
    void *const bufs[POOL_SETS] = { (void *)states, (void *)loss, (void *)target };
    return pool_io(file, xfer, first, count, height, width, channels, 1, bufs);
}

int mg_runfile_pool_read(hid_t file, mg_rf_pool_xfer *xfer, int64_t first, int64_t count,
                         int height, int width, int channels, float *states, float *loss,
                         int32_t *target)
{
    void *const bufs[POOL_SETS] = { states, loss, target };
    return pool_io(file, xfer, first, count, height, width, channels, 0, bufs);
}
