"""From files to normalised, split windows: the data configuration every model and analysis records."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from isoprobe.data.cache import cache_key, default_cache_dir, load_or_build
from isoprobe.data.datasets import class_name, dataset_spec
from isoprobe.data.filters import FilterConfig, filter_recording
from isoprobe.data.modalities import ModalityGroup, check_sources, parse_modalities
from isoprobe.data.normalise import ZScore
from isoprobe.data.recording import Grid
from isoprobe.data.synth.generate import read_ground_truth
from isoprobe.data.windows import WindowConfig, cut, split_repetitions, window_starts
from isoprobe.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides which windows a model sees. Serialisable with to_dict/from_dict."""

    root: str
    dataset: str = "ninapro-db2"
    subject: int = 1
    exercises: tuple[int, ...] = (1, 2, 3)
    modalities: str = "emg,acc"
    window: WindowConfig = field(default_factory=WindowConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    train_repetitions: tuple[int, ...] | None = None  # None: the data set's standard split
    test_repetitions: tuple[int, ...] | None = None
    validation_repetitions: tuple[int, ...] | None = None  # None: the last training repetition

    def __post_init__(self) -> None:
        spec = dataset_spec(self.dataset)
        # Channel counts are known only after loading; check the names now so a typo fails fast.
        check_sources(self.modalities, spec.modalities)
        train, test, validation = self.repetitions()
        if not train:
            raise ConfigError("train_repetitions", self.train_repetitions, "leave at least one repetition for training")
        # Validation first: a validation repetition outside training would otherwise be reported as a test overlap.
        if not set(validation) <= set(self.train_repetitions or spec.train_repetitions):
            raise ConfigError("validation_repetitions", validation, "must be taken from the training repetitions")
        if set(train) & set(test) or set(validation) & set(test):
            raise ConfigError("test_repetitions", test, f"must not overlap training repetitions {train + validation}")

    def repetitions(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(train, test, validation) repetitions; training excludes the validation ones."""
        spec = dataset_spec(self.dataset)
        train = tuple(self.train_repetitions or spec.train_repetitions)
        test = tuple(self.test_repetitions or spec.test_repetitions)
        validation = tuple(self.validation_repetitions) if self.validation_repetitions is not None else train[-1:]
        return tuple(r for r in train if r not in validation), test, validation

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DataConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError("data config", sorted(unknown), f"unknown fields; known: {', '.join(sorted(known))}")
        values = dict(data)
        values["window"] = WindowConfig(**values.get("window", {}))
        filters = dict(values.get("filters", {}))
        if filters.get("bandpass_hz") is not None:
            filters["bandpass_hz"] = tuple(filters["bandpass_hz"])
        values["filters"] = FilterConfig(**filters)
        for key in ("exercises", "train_repetitions", "test_repetitions", "validation_repetitions"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass
class WindowSet:
    """One split. x: group -> [batch, time, channel] float32 (normalised); y: [batch] class index;
    label: [batch] original data-set label; repetition: [batch]; start: [batch] first sample of each
    window in the subject's recording, which identifies the window whatever the order of the set."""

    x: dict[str, np.ndarray]
    y: np.ndarray
    label: np.ndarray
    repetition: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @property
    def segment(self) -> np.ndarray:
        """Segment of each window: [batch] int, numbering the (label, repetition) pairs in sorted order.

        A segment is one repetition of one gesture (DESIGN §4): its overlapping windows share their
        errors, so it is the unit that uncertainty estimates resample. Rest windows (with keep_rest)
        form one segment per repetition."""
        pairs = np.stack([np.asarray(self.label), np.asarray(self.repetition)], axis=1)
        return np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)

    def take(self, index: np.ndarray) -> "WindowSet":
        """The windows at `index` [window], in that order."""
        return WindowSet({name: np.asarray(x[index]) for name, x in self.x.items()}, self.y[index], self.label[index],
                         self.repetition[index], self.start[index])


@dataclass
class PreparedData:
    config: DataConfig
    groups: tuple[ModalityGroup, ...]
    sampling_rate: float
    class_labels: tuple[int, ...]  # data-set label of each class index
    class_names: tuple[str, ...]
    zscore: ZScore
    splits: dict[str, WindowSet]
    grids: dict[str, tuple[Grid, ...]]
    cache_hit: bool
    sources: tuple[Path, ...]
    synth: dict | None = None  # the generator's config when the data are synthetic (from the sidecar)
    fingerprint: str | None = None  # the window cache key the data were read under (data_fingerprint)

    @property
    def n_classes(self) -> int:
        return len(self.class_labels)


def _build_windows(config: DataConfig, sources: list[Path]):
    """Load, filter and window every source modality (all channels): the cached stage."""
    spec = dataset_spec(config.dataset)

    def build(allocate):
        recording = spec.load(Path(config.root), config.subject, config.exercises)
        recording = filter_recording(recording, config.filters)
        window, stride = config.window.samples(recording.sampling_rate)
        starts = window_starts(recording, window, stride, config.window.keep_rest)
        if len(starts) == 0:
            raise DataFormatError(sources[0], f"no window of {window} samples with a constant label; shorten --window-ms")
        for name, values in recording.signals.items():
            cut(values, starts, window, out=allocate(f"signal_{name}", (len(starts), window, values.shape[1]), np.float32))
        allocate("label", (len(starts),), np.int32)[:] = recording.labels[starts]
        allocate("repetition", (len(starts),), np.int32)[:] = split_repetitions(recording.repetitions, recording.segment_starts)[starts]
        allocate("start", (len(starts),), np.int64)[:] = starts
        return {
            "sampling_rate": recording.sampling_rate,
            "channels": {name: values.shape[1] for name, values in recording.signals.items()},
            "grids": {m: [[g.name, list(g.shape), list(g.channels)] for g in gs] for m, gs in recording.grids.items()},
        }

    return build, _windows_key(config, sources)


def _windows_key(config: DataConfig, sources: list[Path]) -> str:
    """The cache key of the windowing stage: the source files' identity and the options that shape the
    windows (modalities, splits and normalisation are applied to the cached windows, after this key)."""
    options = {
        "dataset": config.dataset, "subject": config.subject, "exercises": config.exercises,
        "window": asdict(config.window), "filters": asdict(config.filters),
    }
    return cache_key(sources, options)


def data_fingerprint(config: DataConfig) -> str:
    """The fingerprint of `config`'s data: the window cache key `prepare` reads them under, computed
    from the source files' identity without loading them (isoprobe.provenance records it)."""
    return _windows_key(config, dataset_spec(config.dataset).files(Path(config.root), config.subject, config.exercises))


def prepare(config: DataConfig, cache_dir: Path | None | str = "default", zscore: ZScore | None = None) -> PreparedData:
    """Windows of one subject, split by repetition and z-scored with training statistics.

    cache_dir: "default" uses $ISOPROBE_CACHE or ~/.cache/isoprobe; None disables the cache.
    zscore: statistics to apply instead of fitting them (a trained model's, from its checkpoint).
    """
    spec = dataset_spec(config.dataset)
    sources = spec.files(Path(config.root), config.subject, config.exercises)
    build, key = _build_windows(config, sources)
    cached = load_or_build(default_cache_dir() if cache_dir == "default" else cache_dir, key, build)
    meta = cached.meta
    groups = parse_modalities(config.modalities, meta["channels"])
    grids = {m: tuple(Grid(n, tuple(s), tuple(c)) for n, s, c in gs) for m, gs in meta["grids"].items()}

    labels, repetition = np.asarray(cached.arrays["label"]), np.asarray(cached.arrays["repetition"])
    starts = np.asarray(cached.arrays["start"])
    class_labels = tuple(int(c) for c in np.unique(labels))
    lookup = np.searchsorted(class_labels, labels)
    train, test, validation = config.repetitions()
    masks = {"train": np.isin(repetition, train), "validation": np.isin(repetition, validation), "test": np.isin(repetition, test)}
    for split, mask in masks.items():
        if not mask.any():
            raise ConfigError(f"{split}_repetitions",
                              {"train": train, "validation": validation, "test": test}[split],
                              f"no windows fall in these repetitions (present: {sorted(set(repetition.tolist()))})")

    def select(mask: np.ndarray) -> dict[str, np.ndarray]:
        index = np.flatnonzero(mask)
        out = {}
        for group in groups:
            windows = cached.arrays[f"signal_{group.source}"][index]
            whole = group.channels == tuple(range(windows.shape[2]))
            out[group.name] = windows if whole else windows[:, :, list(group.channels)]
        return out

    raw = {split: select(mask) for split, mask in masks.items()}
    if zscore is None:
        zscore = ZScore.fit(raw["train"])
    else:
        missing = [g.name for g in groups if g.name not in zscore.mean]
        if missing:
            raise ConfigError("modalities", config.modalities, f"the normalisation statistics lack group(s) {missing}")
    splits = {
        split: WindowSet(zscore.apply(raw[split]), lookup[mask].astype(np.int64), labels[mask], repetition[mask], starts[mask])
        for split, mask in masks.items()
    }
    return PreparedData(
        config=config,
        groups=groups,
        sampling_rate=float(meta["sampling_rate"]),
        class_labels=class_labels,
        class_names=tuple(class_name(config.dataset, c) for c in class_labels),
        zscore=zscore,
        splits=splits,
        grids=grids,
        cache_hit=cached.hit,
        sources=tuple(sources),
        synth=(read_ground_truth(Path(config.root)) or {}).get("config"),
        fingerprint=key,
    )
