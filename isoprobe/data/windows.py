"""Fixed-length windows with constant labels, found and cut without a Python loop per window (DESIGN §2.4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isoprobe.data.recording import Recording
from isoprobe.errors import ConfigError

_CHUNK = 2048  # windows gathered at a time when writing into `out`; bounds the temporary copy


@dataclass(frozen=True)
class WindowConfig:
    window_ms: float = 200.0
    stride_ms: float = 100.0
    keep_rest: bool = False

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ConfigError("window_ms", self.window_ms, "must be positive")
        if self.stride_ms <= 0:
            raise ConfigError("stride_ms", self.stride_ms, "must be positive")

    def samples(self, fs: float) -> tuple[int, int]:
        """(window length, stride) in samples at sampling rate `fs`."""
        return max(1, int(round(self.window_ms * fs / 1000))), max(1, int(round(self.stride_ms * fs / 1000)))


def split_repetitions(repetitions: np.ndarray, segment_starts: tuple[int, ...] = (0,)) -> np.ndarray:
    """Repetition used to split each sample: rest samples (repetition 0) join the repetition before them,
    and rest before a file's first gesture joins that gesture's repetition, so rest windows fall into
    every split and never cross from one file into another: [time]."""
    filled = np.empty_like(repetitions)
    bounds = [*segment_starts, len(repetitions)]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        part = repetitions[start:stop]
        index = np.where(part > 0, np.arange(len(part)), 0)
        np.maximum.accumulate(index, out=index)
        segment = part[index]
        gestures = np.flatnonzero(part > 0)
        segment[: gestures[0] if gestures.size else len(part)] = part[gestures[0]] if gestures.size else 0
        filled[start:stop] = segment
    return filled


def window_starts(recording: Recording, window: int, stride: int, keep_rest: bool) -> np.ndarray:
    """First sample of every window whose label, repetition and source file stay constant: [window] int64."""
    labels, reps = recording.labels, recording.repetitions
    change = (labels[1:] != labels[:-1]) | (reps[1:] != reps[:-1])
    change |= np.diff(recording.segment_ids()) != 0
    run = np.concatenate([[0], np.cumsum(change)])
    starts = np.arange(0, recording.n_samples - window + 1, stride, dtype=np.int64)
    keep = run[starts] == run[starts + window - 1]
    if not keep_rest:
        keep &= labels[starts] != 0
    return starts[keep]


def window_view(values: np.ndarray, window: int) -> np.ndarray:
    """Every possible window of a row-major signal [time, channel] as one opaque element each: [start].

    Each window of a row-major signal is one contiguous block of memory, so a void dtype of that
    block's size lets numpy gather windows with block copies instead of element-by-element.
    """
    values = np.ascontiguousarray(values)
    n_time, n_channels = values.shape
    block = np.dtype((np.void, window * n_channels * values.itemsize))
    return np.ndarray((n_time - window + 1,), dtype=block, buffer=values, strides=(n_channels * values.itemsize,))


def cut(values: np.ndarray, starts: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """Windows of `values` [time, channel] at `starts`: [window, time, channel]; writes into `out` if given
    (e.g. a memory-mapped file), gathering a chunk of windows at a time."""
    values = np.ascontiguousarray(values)
    blocks = window_view(values, window)
    shape = (window, values.shape[1])
    if out is None:
        return blocks[starts].view(values.dtype).reshape(len(starts), *shape)
    for first in range(0, len(starts), _CHUNK):
        chunk = starts[first : first + _CHUNK]
        out[first : first + len(chunk)] = blocks[chunk].view(values.dtype).reshape(len(chunk), *shape)
    return out
