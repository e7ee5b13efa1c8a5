"""HD-sEMG 65-gesture loader (Malešević et al. 2021): `s<n>.mat`, MATLAB v7.3 read with h5py, DESIGN §2.2."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import h5py
import numpy as np

from isoprobe.data.matfile import as_matrix, as_vector, check_finite, mat_version
from isoprobe.data.recording import Grid, Recording
from isoprobe.errors import DataFormatError

log = logging.getLogger(__name__)

SAMPLING_RATE = 2048.0
GRID_SHAPE = (8, 8)
GRIDS = ("flexors", "extensors")  # hdsemg channels 0–63 are the flexor grid, 64–127 the extensor grid
N_GESTURES = 65
FORCE_CHANNELS = 5  # one per finger, as the synthetic files hold it (the loader reads any number)
REPETITIONS = (1, 2, 3, 4, 5)
TRAIN_REPETITIONS = (1, 3, 5)
TEST_REPETITIONS = (2, 4)
FILE_PATTERN = re.compile(r"^s(\d+)\.mat$")


def file_name(subject: int) -> str:
    return f"s{subject}.mat"


def find_file(root: Path, subject: int) -> Path:
    root = Path(root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataFormatError(root, "data folder not found")
    candidate = root / file_name(subject)
    if not candidate.is_file():
        raise DataFormatError(root, f"no HD-sEMG file {file_name(subject)} for subject {subject}")
    return candidate


def subjects_in(root: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in Path(root).glob("s*.mat") if (m := FILE_PATTERN.match(p.name)))


def _read(file: h5py.File, path: Path, name: str, alternatives: tuple[str, ...] = ()) -> tuple[str, np.ndarray]:
    for candidate in (name, *alternatives):
        if candidate in file and isinstance(file[candidate], h5py.Dataset):
            # h5py sees MATLAB arrays with their axes reversed; .T restores MATLAB's order.
            return candidate, np.asarray(file[candidate][()]).T
    wanted = " or ".join(repr(n) for n in (name, *alternatives))
    raise DataFormatError(path, f"missing variable {wanted} (variables present: {', '.join(sorted(file))})", name)


def _time_first(array: np.ndarray, n_samples: int, path: Path, field: str) -> np.ndarray:
    """Move the axis whose length is the number of samples to the front (never trust its position)."""
    axes = [axis for axis, length in enumerate(array.shape) if length == n_samples]
    if len(axes) != 1:
        raise DataFormatError(
            path,
            f"cannot find the time axis: shape {array.shape} has {len(axes)} axes of length {n_samples} "
            "(the number of label samples)",
            field,
        )
    return np.moveaxis(array, axes[0], 0)


def read_grid(array: np.ndarray, n_samples: int, path: Path, field: str) -> np.ndarray:
    """An 8×8 electrode grid as [time, 64] float32, channels row-major."""
    if array.ndim != 3:
        raise DataFormatError(path, f"expected a 3-D array (samples × 8 × 8), got shape {array.shape}", field)
    grid = _time_first(array, n_samples, path, field)
    if grid.shape[1:] != GRID_SHAPE:
        raise DataFormatError(path, f"expected an 8 × 8 grid per sample, got shape {array.shape}", field)
    grid = np.ascontiguousarray(grid.reshape(n_samples, -1), dtype=np.float32)
    check_finite(grid, path, field)
    return grid


def load_subject(root: Path, subject: int) -> Recording:
    """One subject's file: modalities `hdsemg` [time, 128] (two 8×8 grids) and `force` [time, F]."""
    path = find_file(root, subject)
    version = mat_version(path)
    if version != "v7.3":
        raise DataFormatError(path, f"is a MATLAB {version} file, but HD-sEMG 65-gesture files are MATLAB v7.3 (HDF5)")
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(path, f"could not be opened as HDF5 ({exc})") from None
    with file:
        label_field, raw_labels = _read(file, path, "adjusted_class", ("class",))
        rep_field, raw_reps = _read(file, path, "adjusted_repetition", ("repetition",))
        if (label_field, rep_field) != ("adjusted_class", "adjusted_repetition"):
            log.warning("%s: no 'adjusted_class'/'adjusted_repetition'; using '%s'/'%s'", path, label_field, rep_field)
        labels = as_vector(raw_labels, path, label_field)
        repetitions = as_vector(raw_reps, path, rep_field)
        if len(repetitions) != len(labels):
            raise DataFormatError(path, f"{len(labels)} labels but {len(repetitions)} repetition entries", rep_field)
        n = len(labels)
        grids = [read_grid(_read(file, path, f"emg_{name}")[1], n, path, f"emg_{name}") for name in GRIDS]
        _, raw_force = _read(file, path, "force")
        if raw_force.ndim != 2:
            raise DataFormatError(path, f"expected a 2-D array (samples × fingers), got shape {raw_force.shape}", "force")
        force = as_matrix(_time_first(raw_force, n, path, "force"), path, "force")
    if labels.min() < 0 or labels.max() > N_GESTURES:
        raise DataFormatError(path, f"labels must lie in 0–{N_GESTURES}, found {labels.min()}–{labels.max()}", label_field)
    n_grid = GRID_SHAPE[0] * GRID_SHAPE[1]
    return Recording(
        dataset="hdsemg65",
        subject=subject,
        sampling_rate=SAMPLING_RATE,
        signals={"hdsemg": np.concatenate(grids, axis=1), "force": force},
        labels=labels,
        repetitions=repetitions,
        sources=(path,),
        exercises=(1,),
        grids={"hdsemg": tuple(Grid(name, GRID_SHAPE, tuple(range(i * n_grid, (i + 1) * n_grid))) for i, name in enumerate(GRIDS))},
    )
