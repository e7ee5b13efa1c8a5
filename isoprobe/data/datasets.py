"""The two supported data sets: how to find, load and split them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from isoprobe.data import hdsemg, ninapro
from isoprobe.data.recording import Recording
from isoprobe.errors import ConfigError, DataFormatError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    sampling_rate: float
    modalities: tuple[str, ...]
    train_repetitions: tuple[int, ...]
    test_repetitions: tuple[int, ...]
    load: Callable[[Path, int, tuple[int, ...]], Recording]
    files: Callable[[Path, int, tuple[int, ...]], list[Path]]
    subjects_in: Callable[[Path], list[int]]


DATASETS: dict[str, DatasetSpec] = {
    "ninapro-db2": DatasetSpec(
        "ninapro-db2", ninapro.SAMPLING_RATE, ("emg", "acc"), ninapro.TRAIN_REPETITIONS, ninapro.TEST_REPETITIONS,
        load=lambda root, subject, exercises: ninapro.load_subject(root, subject, exercises),
        files=lambda root, subject, exercises: list(ninapro.find_files(root, subject, exercises).values()),
        subjects_in=ninapro.subjects_in,
    ),
    "hdsemg65": DatasetSpec(
        "hdsemg65", hdsemg.SAMPLING_RATE, ("hdsemg", "force"), hdsemg.TRAIN_REPETITIONS, hdsemg.TEST_REPETITIONS,
        load=lambda root, subject, exercises: hdsemg.load_subject(root, subject),
        files=lambda root, subject, exercises: [hdsemg.find_file(root, subject)],
        subjects_in=hdsemg.subjects_in,
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError("--dataset", name, f"choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def detect_dataset(root: Path) -> str | None:
    """Which layout a folder (or file) holds, from its file names; None if neither."""
    root = Path(root)
    if root.is_file():
        return "hdsemg65" if hdsemg.FILE_PATTERN.match(root.name) else "ninapro-db2" if ninapro.FILE_PATTERN.match(root.name) else None
    if ninapro.subjects_in(root):
        return "ninapro-db2"
    if hdsemg.subjects_in(root):
        return "hdsemg65"
    return None


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
