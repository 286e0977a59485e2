/* Internal HDF5 helpers shared by the run-file reader and writer and by
 * mg_h5_write_floats / mg_h5_read_floats. The small object helpers return 0
 * or -1 without a message: callers know which path and object failed and
 * word the error themselves (mg_h5_failure_cause gives the reason). */
#ifndef MORPHOGEN_H5_UTIL_H
#define MORPHOGEN_H5_UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "morphogen/error.h"

/* HDF5 prints its whole error stack to stderr by default; morphogen reports
 * one line instead. The previous handler is saved and restored so the
 * process-wide setting is left as found. */
typedef struct mg_h5_quiet {
    H5E_auto2_t func;
    void *data;
} mg_h5_quiet;
void mg_h5_quiet_begin(mg_h5_quiet *q);
void mg_h5_quiet_end(const mg_h5_quiet *q);

/* Why the last HDF5 call failed, in words: the strerror() of the system
 * call underneath when the error stack records one ("File too large"),
 * otherwise the innermost HDF5 message. Call right after the failing call:
 * any later HDF5 call clears the stack. */
void mg_h5_failure_cause(char *buf, size_t len);

/* Closing objects after a failure clears HDF5's error stack, losing the
 * cause: save a copy first (only when failed), restore it after closing. */
hid_t mg_h5_errors_save(int failed);
void mg_h5_errors_restore(hid_t saved);

/* Open an existing file read-only (or read-write) after telling apart a
 * missing file, an unreadable one and one that is not HDF5. Fails with
 * "PATH: no such file", "PATH: not an HDF5 file", "PATH: cannot open: ...". */
hid_t mg_h5_open_existing(const char *path, int writable, mg_error *err);
/* The two halves of mg_h5_open_existing, for a multi-rank open: the probe
 * (plain open(2) and H5Fis_hdf5, no collective call) lets all ranks agree
 * the file is there before they enter the collective H5Fopen with an
 * MPI-IO fapl. */
int mg_h5_probe_existing(const char *path, int writable, mg_error *err);
hid_t mg_h5_open_probed(const char *path, int writable, hid_t fapl, mg_error *err);

/* 1 if every component of the absolute object path exists (H5Lexists alone
 * fails when an intermediate group is missing), 0 otherwise. */
int mg_h5_exists(hid_t file, const char *object_path);

/* Variable-length UTF-8 strings: h5py reads them as str. */
int mg_h5_write_string_dataset(hid_t loc, const char *name, const char *text);
int mg_h5_read_string_dataset(hid_t loc, const char *name, char **text);
int mg_h5_write_string_attr(hid_t obj, const char *name, const char *value);
int mg_h5_read_string_attr(hid_t obj, const char *name, char **value);
/* 1-D attribute of n strings. */
int mg_h5_write_string_list_attr(hid_t obj, const char *name, const char *const *values, int n);
/* Reads up to max strings into names[max][name_len]; fails when the
 * attribute holds more than max or a string does not fit. */
int mg_h5_read_string_list_attr(hid_t obj, const char *name, char *names, size_t name_len,
                                int max, int *n);

/* Scalar numeric attribute; file_type is the stored type (e.g.
 * H5T_STD_I64LE), mem_type the type of *value (e.g. H5T_NATIVE_INT64). */
int mg_h5_write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                            const void *value);
int mg_h5_read_scalar_attr(hid_t obj, const char *name, hid_t mem_type, void *value);

/* Dataset dims: rank into *rank, dims into dims[max_rank]; fails when the
 * rank exceeds max_rank. */
int mg_h5_dataset_dims(hid_t loc, const char *name, int max_rank, int *rank, int64_t *dims);

/* Create a contiguous dataset of the given type and dims and write all of
 * data (may be NULL when the dataset is empty). */
int mg_h5_write_dataset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank,
                        const int64_t *dims, const void *data);
/* Read a whole dataset into data, which must hold every element. */
int mg_h5_read_dataset(hid_t loc, const char *name, hid_t mem_type, void *data);

#endif
