"""Reading MATLAB files with checks that name the file and the variable at fault.

v5 files are read with scipy.io.loadmat, v7.3 files (HDF5) with h5py; DESIGN §2.1–2.2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import scipy.io
from scipy.io.matlab import matfile_version

from isoprobe.errors import DataFormatError

MatVersion = Literal["v4", "v5", "v7.3"]


def mat_version(path: Path) -> MatVersion:
    """The MATLAB file format of `path`, or a DataFormatError if it is no MAT file."""
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        major, _ = matfile_version(str(path))
    except Exception as exc:  # scipy raises several types for non-MAT content
        raise DataFormatError(path, f"not a MATLAB .mat file ({exc})") from None
    return {0: "v4", 1: "v5", 2: "v7.3"}[major]


def load_v5(path: Path, expected_by: str) -> dict[str, np.ndarray]:
    """All variables of a MATLAB v5 file; `expected_by` names the layout for the error message."""
    version = mat_version(path)
    if version == "v7.3":
        raise DataFormatError(
            path,
            f"is a MATLAB v7.3 (HDF5) file, but {expected_by} files are MATLAB v5 "
            "(read with scipy.io.loadmat); is this an HD-sEMG file? try --dataset hdsemg65",
        )
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as exc:
        raise DataFormatError(path, f"could not be read as a MATLAB {version} file ({exc})") from None
    return {key: value for key, value in contents.items() if not key.startswith("__")}


def require(variables: dict, path: Path, name: str, alternatives: tuple[str, ...] = ()) -> str:
    """The first of `name`, *alternatives* present in `variables`; an error listing what is there."""
    for candidate in (name, *alternatives):
        if candidate in variables:
            return candidate
    wanted = " or ".join(repr(n) for n in (name, *alternatives))
    present = ", ".join(sorted(variables)) or "none"
    raise DataFormatError(path, f"missing variable {wanted} (variables present: {present})", field=name)


def as_matrix(values: np.ndarray, path: Path, field: str, n_columns: int | None = None) -> np.ndarray:
    """`values` as a finite 2-D float32 array [time, column], checked against `n_columns`."""
    array = np.asarray(values)
    if array.ndim != 2:
        raise DataFormatError(path, f"expected a 2-D array (samples × columns), got shape {array.shape}", field)
    if n_columns is not None and array.shape[1] != n_columns:
        raise DataFormatError(
            path, f"expected {n_columns} columns (samples × {n_columns}), got shape {array.shape}", field
        )
    if not np.issubdtype(array.dtype, np.number):
        raise DataFormatError(path, f"expected numbers, got dtype {array.dtype}", field)
    # loadmat hands back MATLAB's column-major arrays; windows are cut along time, so go row-major.
    array = np.ascontiguousarray(array, dtype=np.float32)
    check_finite(array, path, field)
    return array


def as_vector(values: np.ndarray, path: Path, field: str) -> np.ndarray:
    """A label-like variable ([N], [N,1] or [1,N]) as a 1-D int32 array."""
    array = np.asarray(values)
    if array.ndim > 2 or (array.ndim == 2 and min(array.shape) != 1):
        raise DataFormatError(path, f"expected a vector (samples × 1), got shape {array.shape}", field)
    array = array.reshape(-1)
    if not np.issubdtype(array.dtype, np.number):
        raise DataFormatError(path, f"expected numbers, got dtype {array.dtype}", field)
    check_finite(array, path, field)
    if np.any(array != np.round(array)):
        raise DataFormatError(path, "expected whole numbers (labels), found fractions", field)
    return array.astype(np.int32)


def check_finite(array: np.ndarray, path: Path, field: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))
        raise DataFormatError(
            path,
            f"{len(bad)} NaN or infinite values, first at index {tuple(int(i) for i in bad[0])}",
            field,
        )
