"""The two supported data sets: how to find, load and split them, and what their recordings hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from isoprobe.data import hdsemg, ninapro
from isoprobe.data.recording import Grid, Recording
from isoprobe.errors import ConfigError, DataFormatError


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: its layout on disk (files, subjects, loader), its standard split, and what its real
    recordings hold (DESIGN §2) — enough to size a model or read a modality configuration without
    reading data. `semg` names its sEMG source; the other source is "the second modality"."""

    name: str
    sampling_rate: float
    modalities: tuple[str, ...]
    train_repetitions: tuple[int, ...]
    test_repetitions: tuple[int, ...]
    load: Callable[[Path, int, tuple[int, ...]], Recording]
    files: Callable[[Path, int, tuple[int, ...]], list[Path]]
    subjects_in: Callable[[Path], list[int]]
    channels: dict[str, int]  # per source
    n_gestures: int  # rest (label 0) excluded; windows keep it only with keep_rest
    semg: str
    file_pattern: re.Pattern  # a recording's file name: group 1 the subject (group 2, where present, the exercise)
    gesture_name: Callable[[int], str]  # a gesture label's readable name (label 0, rest, is named by class_name)
    grids: dict[str, tuple[Grid, ...]] = field(default_factory=dict)


_HD_GRID = hdsemg.GRID_SHAPE[0] * hdsemg.GRID_SHAPE[1]


DATASETS: dict[str, DatasetSpec] = {
    "ninapro-db2": DatasetSpec(
        "ninapro-db2", ninapro.SAMPLING_RATE, ("emg", "acc"), ninapro.TRAIN_REPETITIONS, ninapro.TEST_REPETITIONS,
        load=lambda root, subject, exercises: ninapro.load_subject(root, subject, exercises),
        files=lambda root, subject, exercises: list(ninapro.find_files(root, subject, exercises).values()),
        subjects_in=ninapro.subjects_in,
        # exercises 1–3 (the data configuration's default): 17 + 23 + 9 gestures
        channels=dict(ninapro.CHANNELS), n_gestures=sum(map(len, ninapro.EXERCISE_LABELS.values())), semg="emg",
        file_pattern=ninapro.FILE_PATTERN, gesture_name=ninapro.gesture_name,
    ),
    "hdsemg65": DatasetSpec(
        "hdsemg65", hdsemg.SAMPLING_RATE, ("hdsemg", "force"), hdsemg.TRAIN_REPETITIONS, hdsemg.TEST_REPETITIONS,
        load=lambda root, subject, exercises: hdsemg.load_subject(root, subject),
        files=lambda root, subject, exercises: [hdsemg.find_file(root, subject)],
        subjects_in=hdsemg.subjects_in,
        channels={"hdsemg": len(hdsemg.GRIDS) * _HD_GRID, "force": hdsemg.FORCE_CHANNELS}, n_gestures=hdsemg.N_GESTURES,
        semg="hdsemg", file_pattern=hdsemg.FILE_PATTERN, gesture_name=lambda label: f"G{label:02d}",
        grids={"hdsemg": tuple(Grid(name, hdsemg.GRID_SHAPE, tuple(range(i * _HD_GRID, (i + 1) * _HD_GRID)))
                               for i, name in enumerate(hdsemg.GRIDS))},
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError("dataset", name, f"choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def class_name(dataset: str, label: int) -> str:
    """A class's readable name: "rest" for label 0, else the data set's name of the gesture."""
    return "rest" if label == 0 else dataset_spec(dataset).gesture_name(label)


def detect_dataset(root: Path) -> str | None:
    """Which layout a folder (or file) holds, from its file names; None if neither."""
    root = Path(root)
    if root.is_file():
        return next((name for name, spec in DATASETS.items() if spec.file_pattern.match(root.name)), None)
    return next((name for name, spec in DATASETS.items() if spec.subjects_in(root)), None)


def locate(path: Path, dataset: str | None = None) -> tuple[str, DatasetSpec, Path, list[int]]:
    """A data file or folder's layout (detected from file names unless `dataset`), its spec, the
    folder holding it and the subjects found there; a missing path or one with no recordings is
    refused naming it."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "no such file or folder")
    dataset = dataset or detect_dataset(path)
    if dataset is None:
        raise DataFormatError(path, "holds no NinaPro DB2 (S<n>_E<k>_A1.mat) or HD-sEMG (s<n>.mat) files")
    spec = dataset_spec(dataset)
    folder = path.parent if path.is_file() else path
    return dataset, spec, folder, spec.subjects_in(folder)
