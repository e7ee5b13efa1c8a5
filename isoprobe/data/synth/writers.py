"""Writing MATLAB files the way the real data sets ship them, atomically (temporary file, then rename)."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from isoprobe.atomic import atomic_path

_V73_HEADER_BYTES = 512


def write_mat_v5(path: Path, variables: dict[str, np.ndarray]) -> None:
    """A MATLAB v5 file, as scipy.io.loadmat and MATLAB's `load` read it (NinaPro layout)."""
    with atomic_path(path) as temporary:
        scipy.io.savemat(temporary, variables, format="5", oned_as="column", do_compression=False)


def _matlab_class(array: np.ndarray) -> bytes:
    return {np.dtype("float64"): b"double", np.dtype("float32"): b"single", np.dtype("int32"): b"int32",
            np.dtype("uint8"): b"uint8", np.dtype("int16"): b"int16"}[array.dtype]


def write_mat_v73(path: Path, variables: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file: HDF5 behind MATLAB's 512-byte header.

    Arrays are given in MATLAB's axis order (e.g. samples × 8 × 8); HDF5 stores them column-major
    as MATLAB does, so h5py sees every array transposed (8 × 8 × samples).
    """
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w", userblock_size=_V73_HEADER_BYTES, libver="earliest") as file:
            for name, value in variables.items():
                array = np.asarray(value)
                if array.ndim < 2:
                    array = array.reshape(-1, 1)
                dataset = file.create_dataset(name, data=array.T)
                dataset.attrs["MATLAB_class"] = np.bytes_(_matlab_class(array))
        text = (
            "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
            + time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(0))
            + " HDF5 schema 1.00 ."
        ).encode("ascii")
        header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
        with open(temporary, "r+b") as raw:
            raw.write(header)
