"""The in-memory form of one subject's recording, shared by every loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DatasetName = str  # "ninapro-db2" | "hdsemg65"; validated where it is chosen (see data.datasets)


@dataclass(frozen=True)
class Grid:
    """An electrode grid inside a modality: `channels` lists its channel indices row-major."""

    name: str
    shape: tuple[int, int]
    channels: tuple[int, ...]


@dataclass
class Recording:
    """One subject's continuous signals with sample-wise labels.

    signals: modality -> array [time, channel] (float32)
    labels, repetitions: [time] integer arrays; label 0 is rest, repetition 0 is between repetitions
    segment_starts: first sample of each source file, so windows never straddle two files
    """

    dataset: DatasetName
    subject: int
    sampling_rate: float
    signals: dict[str, np.ndarray]
    labels: np.ndarray
    repetitions: np.ndarray
    sources: tuple[Path, ...]
    exercises: tuple[int, ...]
    segment_starts: tuple[int, ...] = (0,)
    grids: dict[str, tuple[Grid, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name, values in self.signals.items():
            if values.ndim != 2 or values.shape[0] != n:
                raise ValueError(f"modality {name!r} has shape {values.shape}, expected ({n}, channels)")
        if self.repetitions.shape != self.labels.shape:
            raise ValueError("labels and repetitions differ in length")
        if len(self.sources) != len(self.segment_starts) or len(self.exercises) != len(self.sources):
            raise ValueError("one segment start and exercise per source file is required")

    @property
    def n_samples(self) -> int:
        return int(len(self.labels))

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sampling_rate

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(self.signals)

    def n_channels(self, modality: str) -> int:
        return int(self.signals[modality].shape[1])

    def segment_ids(self) -> np.ndarray:
        """Source-file index of every sample: [time] int16."""
        ids = np.zeros(self.n_samples, dtype=np.int16)
        for index, start in enumerate(self.segment_starts[1:], start=1):
            ids[start:] = index
        return ids
