"""What a data folder holds: the content of `isoprobe data inspect`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from isoprobe.data.datasets import locate
from isoprobe.data.datasets import class_name
from isoprobe.data.synth.generate import read_ground_truth
from isoprobe.errors import DataFormatError


@dataclass
class ClassCount:
    label: int
    name: str
    repetitions: int  # distinct repetitions in which the class appears
    seconds: float


@dataclass
class SubjectSummary:
    subject: int
    files: list[str]
    exercises: list[int]
    sampling_rate: float
    duration_s: float
    channels: dict[str, int]
    repetitions: list[int]
    classes: list[ClassCount]
    grids: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class DatasetSummary:
    path: str
    dataset: str
    subjects: list[SubjectSummary]
    ground_truth: dict | None

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(path: Path, dataset: str | None = None, subjects: list[int] | None = None) -> DatasetSummary:
    """Load each subject under `path` and count what it holds."""
    path = Path(path)
    dataset, spec, folder, found = locate(path, dataset)
    exercises: tuple[int, ...] = (1, 2, 3)
    if path.is_file():  # one file: its subject (and, for DB2, its exercise) only
        match = spec.file_pattern.match(path.name)
        found = [int(match.group(1))]
        exercises = (int(match.group(2)),) if dataset == "ninapro-db2" else exercises
    if not found:
        raise DataFormatError(path, f"holds no {dataset} files")
    summaries = []
    for subject in subjects or found:
        recording = spec.load(path if dataset == "hdsemg65" else folder, subject, exercises)
        labels = recording.labels
        classes = []
        for label in np.unique(labels):
            mask = labels == label
            reps = np.unique(recording.repetitions[mask])
            classes.append(ClassCount(int(label), class_name(dataset, int(label)), int((reps > 0).sum()),
                                      float(mask.sum() / recording.sampling_rate)))
        summaries.append(SubjectSummary(
            subject=subject,
            files=[str(p) for p in recording.sources],
            exercises=list(recording.exercises) if dataset == "ninapro-db2" else [],
            sampling_rate=recording.sampling_rate,
            duration_s=recording.duration_s,
            channels={m: recording.n_channels(m) for m in recording.modality_names},
            repetitions=[int(r) for r in np.unique(recording.repetitions) if r > 0],
            classes=classes,
            grids={m: [f"{g.name} {g.shape[0]}×{g.shape[1]}" for g in gs] for m, gs in recording.grids.items()},
        ))
    return DatasetSummary(str(path), dataset, summaries, read_ground_truth(folder))
