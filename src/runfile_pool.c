/* The sample pool of a run file's checkpoint, read and written by slabs of
 * samples so that a later MPI-IO writer can give every rank its own slab of
 * the same datasets. The pool is by far the largest part of the file (1024
 * samples of 72x72x16 floats = 340 MB), so the datasets are contiguous and
 * uncompressed and the caller's buffers go to HDF5 without copies. */
#include "runfile_layout.h"

#include "h5_util.h"

int mg_runfile_pool_create(hid_t file, int64_t pool_size, int height, int width, int channels)
{
    hid_t group = H5Gcreate2(file, MG_RF_POOL, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (group < 0)
        return -1;
    H5Gclose(group);
    const struct {
        const char *name;
        hid_t type;
        int rank;
    } sets[] = {
        { MG_RF_POOL_STATES, H5T_IEEE_F32LE, 4 },
        { MG_RF_POOL_LOSS, H5T_IEEE_F32LE, 1 },
        { MG_RF_POOL_TARGET, H5T_STD_I32LE, 1 },
    };
    hsize_t dims[4] = { (hsize_t)pool_size, (hsize_t)height, (hsize_t)width, (hsize_t)channels };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        hid_t space = H5Screate_simple(sets[i].rank, dims, NULL);
        hid_t d = space >= 0 ? H5Dcreate2(file, sets[i].name, sets[i].type, space, H5P_DEFAULT,
                                          H5P_DEFAULT, H5P_DEFAULT)
                             : H5I_INVALID_HID;
        hid_t errs = mg_h5_errors_save(d < 0);
        if (d >= 0)
            H5Dclose(d);
        if (space >= 0)
            H5Sclose(space);
        mg_h5_errors_restore(errs);
        if (d < 0)
            return -1;
    }
    return 0;
}

/* One dataset, samples [first, first + count): the file selection is that
 * hyperslab, the memory side is the caller's contiguous slab buffer. */
static int slab_io(hid_t file, const char *name, hid_t dxpl, hid_t mem_type, int rank,
                   int64_t first, int64_t count, int height, int width, int channels,
                   int writing, void *buf)
{
    hsize_t start[4] = { (hsize_t)first, 0, 0, 0 };
    hsize_t extent[4] = { (hsize_t)count, (hsize_t)height, (hsize_t)width, (hsize_t)channels };
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t fspace = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    hid_t mspace = H5Screate_simple(rank, extent, NULL);
    int rc = -1;
    if (d >= 0 && fspace >= 0 && mspace >= 0 &&
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, extent, NULL) >= 0) {
        herr_t io = writing ? H5Dwrite(d, mem_type, mspace, fspace, dxpl, buf)
                            : H5Dread(d, mem_type, mspace, fspace, dxpl, buf);
        rc = io < 0 ? -1 : 0;
    }
    hid_t errs = mg_h5_errors_save(rc < 0);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    /* Last: closing may flush, and its error stack must survive. */
    if (d >= 0 && H5Dclose(d) < 0 && rc == 0)
        rc = -1;
    mg_h5_errors_restore(errs);
    return rc;
}

static int pool_io(hid_t file, hid_t dxpl, int64_t first, int64_t count, int height, int width,
                   int channels, int writing, void *states, void *loss, void *target)
{
    if (count == 0)
        return 0;
    if (slab_io(file, MG_RF_POOL_STATES, dxpl, H5T_NATIVE_FLOAT, 4, first, count, height, width,
                channels, writing, states) < 0 ||
        slab_io(file, MG_RF_POOL_LOSS, dxpl, H5T_NATIVE_FLOAT, 1, first, count, height, width,
                channels, writing, loss) < 0 ||
        slab_io(file, MG_RF_POOL_TARGET, dxpl, H5T_NATIVE_INT32, 1, first, count, height, width,
                channels, writing, target) < 0)
        return -1;
    return 0;
}

int mg_runfile_pool_write(hid_t file, hid_t dxpl, int64_t first, int64_t count, int height,
                          int width, int channels, const float *states, const float *loss,
                          const int32_t *target)
{
    /* H5Dwrite takes const buffers; the casts only share pool_io with reading. */
    return pool_io(file, dxpl, first, count, height, width, channels, 1, (void *)states,
                   (void *)loss, (void *)target);
}

int mg_runfile_pool_read(hid_t file, hid_t dxpl, int64_t first, int64_t count, int height,
                         int width, int channels, float *states, float *loss, int32_t *target)
{
    return pool_io(file, dxpl, first, count, height, width, channels, 0, states, loss, target);
}
