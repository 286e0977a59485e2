#!/usr/bin/env python3
"""Shared readers for the HDF5 files morphogen writes (run files, `grow` and
`grad` outputs), with the error convention of the C program: a failure is ONE
line "WHAT: problem" naming the file (or dataset) at fault, and exit status 1.

Only the layout documented in include/morphogen/runfile.h is assumed, so these
readers stay independent of the C code that writes the files."""

import os
import sys

RUN_FORMAT = "morphogen-run"
RUN_LAYOUT_VERSION = 1


class MgError(Exception):
    """A user-facing one-line error; main() prints it and exits 1."""


def run_main(main):
    """Run main(), turning MgError (and a broken pipe) into a one-line message
    and exit status 1, as the morphogen executable does."""
    try:
        sys.exit(main())
    except MgError as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(1)


def _h5py():
    try:
        import h5py  # noqa: PLC0415  (imported lazily so --help works without it)
    except ImportError:
        raise MgError("h5py: not installed for %s (Debian package python3-h5py)"
                      % sys.executable)
    return h5py


def open_h5(path):
    """Open an existing HDF5 file read-only, with a clear error otherwise."""
    h5py = _h5py()
    if not os.path.exists(path):
        raise MgError("%s: no such file" % path)
    if os.path.isdir(path):
        raise MgError("%s: is a directory, not an HDF5 file" % path)
    if not os.access(path, os.R_OK):
        raise MgError("%s: not readable (permission denied)" % path)
    try:
        if not h5py.is_hdf5(path):
            raise MgError("%s: not an HDF5 file" % path)
        return h5py.File(path, "r")
    except OSError as e:
        raise MgError("%s: cannot open as HDF5 (%s)" % (path, e))


def attr_str(value):
    """HDF5 string attributes come back as str, bytes or 0-d arrays."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def attr_scalar(value):
    """Numeric attribute as a Python int/float (h5py gives numpy scalars or 1-element arrays)."""
    if hasattr(value, "shape") and value.shape not in ((), (1,)):
        raise ValueError("not a scalar")
    if hasattr(value, "shape") and value.shape == (1,):
        value = value[0]
    if isinstance(value, (bytes, str)):
        return attr_str(value)
    return value.item() if hasattr(value, "item") else value


def dataset(f, name, path, ndim=None):
    """Fetch dataset `name` from open file f, failing with 'PATH: no dataset NAME'."""
    if name not in f:
        raise MgError("%s: no dataset %s (not written by this morphogen version?)" % (path, name))
    d = f[name]
    if not hasattr(d, "shape"):
        raise MgError("%s: %s is a group, expected a dataset" % (path, name))
    if ndim is not None and len(d.shape) != ndim:
        raise MgError("%s: %s has %d dimensions, expected %d" % (path, name, len(d.shape), ndim))
    return d


def open_run(path):
    """Open a run file and check its format marker and layout version."""
    f = open_h5(path)
    fmt = attr_str(f.attrs["format"]) if "format" in f.attrs else None
    if fmt != RUN_FORMAT:
        f.close()
        raise MgError("%s: not a morphogen run file" % path)
    if "layout_version" in f.attrs:
        version = int(attr_scalar(f.attrs["layout_version"]))
        if version != RUN_LAYOUT_VERSION:
            f.close()
            raise MgError("%s: run file layout version %d, these tools read version %d"
                          % (path, version, RUN_LAYOUT_VERSION))
    return f


def run_config(f):
    """The resolved config as {"section.key": value} from the typed attributes of /config."""
    if "config" not in f:
        return {}
    return {k: attr_scalar(v) for k, v in f["config"].attrs.items()}


def config_text(f):
    if "config" not in f:
        return ""
    return attr_str(f["config"][()])


def read_metrics(f, path):
    """Metrics as numpy arrays {name: array}; empty arrays when no iteration finished yet."""
    import numpy as np  # noqa: PLC0415
    if "metrics" not in f:
        raise MgError("%s: no /metrics group (not a morphogen run file?)" % path)
    out = {}
    for name in ("iteration", "loss", "lr", "wall_time", "cell_steps_per_s", "grad_norm"):
        key = "metrics/" + name
        if key in f:
            out[name] = np.asarray(f[key][()])
    for required in ("iteration", "loss"):
        if required not in out:
            raise MgError("%s: no dataset /metrics/%s" % (path, required))
    n = len(out["iteration"])
    for name, arr in out.items():
        if len(arr) != n:
            raise MgError("%s: /metrics/%s has %d rows but /metrics/iteration has %d"
                          % (path, name, len(arr), n))
    return out


def parse_set(assignments):
    """Parse `--set section.key=value` overrides into {key: number-or-string}."""
    out = {}
    for a in assignments or []:
        if "=" not in a or "." not in a.split("=", 1)[0]:
            raise MgError("--set %s: expected section.key=value" % a)
        k, v = a.split("=", 1)
        k = k.strip()
        v = v.strip()
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = {"true": 1, "false": 0}.get(v.lower(), v)
    return out
