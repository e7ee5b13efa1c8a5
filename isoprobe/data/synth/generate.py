"""`isoprobe data synth`: synthetic subjects in the exact NinaPro DB2 or HD-sEMG 65 file layouts.

The files are read back by the same loaders as the real data; the sidecar JSON
(`isoprobe-synth.json`) records the seed, the preset and the planted ground truth.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from isoprobe.atomic import write_text_atomic
from isoprobe.data import hdsemg, ninapro
from isoprobe.data.datasets import dataset_spec
from isoprobe.data.synth import motor_units, signals
from isoprobe.data.synth.signals import Segment
from isoprobe.data.synth.structure import PRESETS, ClassPlan, plan_classes, repetition_variants
from isoprobe.data.synth.writers import write_mat_v5, write_mat_v73
from isoprobe.errors import ConfigError

SIDECAR = "isoprobe-synth.json"
# Bumped whenever the same configuration yields different signals: cached and study data are keyed by it.
GENERATOR_VERSION = 2  # 2: motor-unit sEMG, shared per-repetition effort (issue 12)
MAP_SPARSITY = 2.0  # region activation levels 0.05 + 0.95 u^MAP_SPARSITY: a gesture drives a few regions hard
EFFORT_CV = 0.15  # per-repetition effort: lognormal, shared by sEMG and force / movement
# The data sets the generator can write (what each holds — modalities, gestures, repetitions, sampling
# rate — their DatasetSpec says); each has a subject writer below (WRITERS).
LAYOUTS = ("ninapro-db2", "hdsemg65")
DEFAULT_GESTURES = {"ninapro-db2": 9, "hdsemg65": 8}
# Signals are stored as MATLAB `single` to halve the files; the real DB2 files hold `double`. Loaders take both.
N_FORCE_FINGERS = hdsemg.FORCE_CHANNELS  # HD-sEMG layout: one force channel per finger
DB2_E3_FORCE_CHANNELS = 6
DB2_GLOVE_CHANNELS = 22
JITTER_S = 0.15  # raw `stimulus` boundaries wander this far from the relabelled `restimulus`


@dataclass(frozen=True)
class SynthConfig:
    layout: str = "ninapro-db2"
    preset: str = "redundant"
    synergy_fraction: float | None = None
    subjects: int = 2
    gestures: int | None = None  # None: the layout's default
    repetitions: int | None = None  # None: the layout's full protocol (6 for DB2, 5 for HD-sEMG)
    seconds_per_repetition: float = 2.0
    rest_seconds: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError("layout", self.layout, f"choose one of {', '.join(LAYOUTS)}")
        if self.preset not in PRESETS and self.preset != "force-only":
            raise ConfigError("preset", self.preset, f"choose one of {', '.join(PRESETS)}")
        if self.preset == "mixed" and self.synergy_fraction is None:
            raise ConfigError("synergy_fraction", None, "the mixed preset needs --synergy-fraction in [0, 1]")
        if self.subjects < 1:
            raise ConfigError("subjects", self.subjects, "give at least 1")
        if not 1 <= self.n_gestures <= dataset_spec(self.layout).n_gestures:
            raise ConfigError("gestures", self.gestures, f"{self.layout} has 1–{dataset_spec(self.layout).n_gestures} gestures")
        if not 2 <= self.n_repetitions <= _max_repetitions(self.layout):
            raise ConfigError(
                "repetitions", self.repetitions, f"{self.layout} allows 2–{_max_repetitions(self.layout)} repetitions"
            )
        for name in ("seconds_per_repetition", "rest_seconds"):
            if getattr(self, name) < 0.3:
                raise ConfigError(name, getattr(self, name), "must be at least 0.3 s")

    @property
    def n_gestures(self) -> int:
        return self.gestures if self.gestures is not None else DEFAULT_GESTURES[self.layout]

    @property
    def n_repetitions(self) -> int:
        return self.repetitions if self.repetitions is not None else _max_repetitions(self.layout)

    @property
    def structure_preset(self) -> str:
        # For the HD layout the second modality is force; "force-only" reads better than "acc-only".
        return "acc-only" if self.preset == "force-only" else self.preset

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SynthResult:
    out: Path
    files: dict[int, list[Path]] = field(default_factory=dict)
    ground_truth: dict = field(default_factory=dict)


def db2_labels_per_exercise(n_gestures: int) -> dict[int, list[int]]:
    """Spread `n_gestures` over DB2's exercises in proportion to their size (largest remainder),
    at least one per exercise when there are three or more, keeping DB2's global label numbers."""
    sizes = {e: len(r) for e, r in ninapro.EXERCISE_LABELS.items()}
    if n_gestures >= len(sizes):
        counts = {e: 1 for e in sizes}
        remaining = n_gestures - len(sizes)
        spare = {e: sizes[e] - 1 for e in sizes}
        total = sum(spare.values())
        exact = {e: remaining * spare[e] / total for e in sizes}
        for e in sizes:
            counts[e] += int(exact[e])
        leftover = n_gestures - sum(counts.values())
        for e in sorted(sizes, key=lambda e: exact[e] - int(exact[e]), reverse=True)[:leftover]:
            counts[e] += 1
    else:
        counts = {e: (1 if e <= n_gestures else 0) for e in sizes}
    return {e: list(ninapro.EXERCISE_LABELS[e])[: counts[e]] for e in sizes if counts[e] > 0}


def protocol(labels: list[int], config: SynthConfig, fs: float, variants: dict[int, int], rng: np.random.Generator):
    """Segments of one recording file and its raw (unrefined) label vectors.

    Every repetition gets an effort factor (lognormal, CV ≈ EFFORT_CV) that its signal models share.
    Returns (relabelled segments, n_samples, raw stimulus [time], raw repetition [time]).
    """
    gesture_n = int(round(config.seconds_per_repetition * fs))
    rest_n = int(round(config.rest_seconds * fs))
    segments, cursor = [Segment(0, rest_n, 0, 0)], rest_n
    for label in labels:
        for rep in range(1, config.n_repetitions + 1):
            effort = float(np.clip(rng.lognormal(0.0, EFFORT_CV), 0.6, 1.5))
            segments.append(Segment(cursor, cursor + gesture_n, label, rep, variants.get(rep, 0), round(effort, 4)))
            segments.append(Segment(cursor + gesture_n, cursor + gesture_n + rest_n, 0, 0))
            cursor += gesture_n + rest_n
    raw_label = np.zeros(cursor, dtype=np.float64)
    raw_rep = np.zeros(cursor, dtype=np.float64)
    jitter = int(JITTER_S * fs)
    for seg in segments:
        if seg.label:
            start = seg.start + int(rng.integers(-jitter, jitter + 1))
            stop = seg.stop + int(rng.integers(-jitter, jitter + 1))
            raw_label[max(start, 0) : stop], raw_rep[max(start, 0) : stop] = seg.label, seg.repetition
    return segments, cursor, raw_label, raw_rep


def label_vectors(segments: list[Segment], n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros(n_samples, dtype=np.float64)
    reps = np.zeros(n_samples, dtype=np.float64)
    for seg in segments:
        labels[seg.start : seg.stop], reps[seg.start : seg.stop] = seg.label, seg.repetition
    return labels, reps


def variant_patterns(plans: list[ClassPlan], bank: dict[int, np.ndarray], which: str) -> dict[tuple[int, int], np.ndarray]:
    """(label, variant) -> the pattern vector shown, from a bank indexed by pattern id."""
    return {(p.label, v): bank[getattr(p, which)[v]] for p in plans for v in (0, 1)}


def _chunks(segments: list[Segment]) -> list[list[Segment]]:
    """Split the protocol at rest onsets into blocks of one gesture's repetitions, so that long
    recordings are synthesised piece by piece in bounded memory."""
    blocks, current = [], []
    for seg in segments:
        current.append(seg)
        if seg.label == 0 and len(current) > 1 and sum(s.label != 0 for s in current) >= 6:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def synthesise(
    segments: list[Segment],
    n_samples: int,
    fs: float,
    modalities: dict[str, tuple[int, Callable]],
    seed_key: list[int],
) -> dict[str, np.ndarray]:
    """Run each modality's signal model block by block: modality -> [time, channel] float32."""
    out = {name: np.empty((n_samples, width), dtype=np.float32) for name, (width, _) in modalities.items()}
    for index, block in enumerate(_chunks(segments)):
        start, stop = block[0].start, block[-1].stop
        local = [Segment(s.start - start, s.stop - start, s.label, s.repetition, s.variant, s.effort) for s in block]
        for m_index, (name, (_, model)) in enumerate(modalities.items()):
            rng = np.random.default_rng([*seed_key, index, m_index])
            out[name][start:stop] = model(rng, local, stop - start)
    return out


def _region_bank(rng: np.random.Generator, n_patterns: int, n_regions: int) -> dict[int, np.ndarray]:
    """Muscle-region activation maps, one per pattern id: [region] levels in (0, 1]; 0 is the shared map."""
    bank = {0: np.full(n_regions, 0.5, dtype=np.float32)}
    for pid in range(1, n_patterns + 1):
        bank[pid] = (0.05 + 0.95 * rng.random(n_regions) ** MAP_SPARSITY).astype(np.float32)
    return bank


def efforts(segments: list[Segment]) -> list[list[float]]:
    """[label, repetition, effort] of every repetition, for the sidecar."""
    return [[s.label, s.repetition, s.effort] for s in segments if s.label != 0]


def _orientation_bank(rng: np.random.Generator, rest: np.ndarray, n_patterns: int) -> dict[int, np.ndarray]:
    """Gravity direction per sensor for each gesture posture: the rest posture turned by a posture-specific rotation."""
    bank = {}
    for pid in range(0, n_patterns + 1):
        turn = signals.rotation(np.deg2rad(rng.uniform(-70, 70, 3)))
        bank[pid] = (rest @ turn.T).reshape(-1).astype(np.float32)
    return bank


def _force_bank(rng: np.random.Generator, n_patterns: int, n_fingers: int) -> dict[int, np.ndarray]:
    bank = {0: np.full(n_fingers, 0.5, dtype=np.float32)}
    for pid in range(1, n_patterns + 1):
        pattern = rng.random(n_fingers) ** 2
        pattern[rng.integers(n_fingers)] = rng.uniform(0.7, 1.0)  # every gesture presses with some finger
        bank[pid] = pattern.astype(np.float32)
    return bank


def _max_repetitions(layout: str) -> int:
    spec = dataset_spec(layout)
    return len(spec.train_repetitions) + len(spec.test_repetitions)


def modality_pair(layout: str) -> tuple[str, str]:
    """(the sEMG source, the second modality) of a layout, from its DatasetSpec."""
    spec = dataset_spec(layout)
    return spec.semg, next(m for m in spec.modalities if m != spec.semg)


def _split_repetitions(config: SynthConfig) -> dict[int, int]:
    spec = dataset_spec(config.layout)
    present = range(1, config.n_repetitions + 1)
    train = tuple(r for r in spec.train_repetitions if r in present)
    test = tuple(r for r in spec.test_repetitions if r in present)
    return repetition_variants(train, test)


def _write_db2_subject(config: SynthConfig, subject: int, plans: list[ClassPlan], out: Path,
                       variants: dict[int, int]) -> dict[Path, list[list[float]]]:
    """The subject's three exercise files: {path: [label, repetition, effort] per repetition}."""
    fs = ninapro.SAMPLING_RATE
    rng = np.random.default_rng([config.seed, subject, 0])
    n_patterns = len(plans)
    rest_orientation = np.stack([signals.rotation(a) @ np.array([0.0, 0.0, -1.0]) for a in np.deg2rad(rng.uniform(-40, 40, (12, 3)))])
    pool = motor_units.ring_pool(np.random.default_rng([config.seed, subject, 5]), fs, n_sensors=ninapro.CHANNELS["emg"])
    emg_patterns = variant_patterns(plans, _region_bank(rng, n_patterns, pool.n_regions), "first")
    acc_patterns = variant_patterns(plans, _orientation_bank(rng, rest_orientation, n_patterns), "second")
    glove_patterns = {(p.label, v): rng.random(DB2_GLOVE_CHANNELS).astype(np.float32) for p in plans for v in (0, 1)}
    force_patterns = variant_patterns(plans, _force_bank(rng, n_patterns, DB2_E3_FORCE_CHANNELS), "first")
    folder = out / f"DB2_s{subject}"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for exercise, labels in db2_labels_per_exercise(config.n_gestures).items():
        file_rng = np.random.default_rng([config.seed, subject, exercise])
        segments, n, stimulus, repetition = protocol(labels, config, fs, variants, file_rng)
        relabels, rereps = label_vectors(segments, n)
        modalities = {
            "emg": (12, lambda r, s, m: motor_units.semg(r, s, emg_patterns, pool, m, fs, amplitude_v=5e-5)),
            "acc": (36, lambda r, s, m: signals.accelerometer(r, s, rest_orientation, acc_patterns, m, fs)),
            "glove": (22, lambda r, s, m: signals.force(r, s, glove_patterns, m, fs, full_scale=80.0)),
        }
        if exercise == 3:
            modalities["force"] = (6, lambda r, s, m: signals.force(r, s, force_patterns, m, fs, full_scale=30.0))
        streams = synthesise(segments, n, fs, modalities, [config.seed, subject, exercise])
        variables = {
            "subject": np.array([[subject]], dtype=np.float64),
            "exercise": np.array([[exercise]], dtype=np.float64),
            "emg": streams["emg"],
            "acc": streams["acc"],
            "glove": streams["glove"],
            "inclin": 5.0 * signals.slow_noise(file_rng, n, 2, fs, 0.5),
            "stimulus": stimulus[:, None],
            "repetition": repetition[:, None],
            "restimulus": relabels[:, None],
            "rerepetition": rereps[:, None],
        }
        if exercise == 3:
            variables["force"] = streams["force"]
            variables["forcecal"] = np.vstack([np.zeros(6), np.full(6, 30.0)])
            variables["activation"] = (streams["force"] > 3.0).astype(np.float64)
        path = folder / ninapro.file_name(subject, exercise)
        write_mat_v5(path, variables)
        written[path] = efforts(segments)
    return written


def _write_hd_subject(config: SynthConfig, subject: int, plans: list[ClassPlan], out: Path,
                      variants: dict[int, int]) -> dict[Path, list[list[float]]]:
    """The subject's file: {path: [label, repetition, effort] per repetition}."""
    fs = hdsemg.SAMPLING_RATE
    rng = np.random.default_rng([config.seed, subject, 0])
    pool = motor_units.grid_pool(np.random.default_rng([config.seed, subject, 5]), fs, n_grids=len(hdsemg.GRIDS),
                                 shape=hdsemg.GRID_SHAPE)
    grid_patterns = variant_patterns(plans, _region_bank(rng, len(plans), pool.n_regions), "first")
    force_patterns = variant_patterns(plans, _force_bank(rng, len(plans), N_FORCE_FINGERS), "second")
    labels = [p.label for p in plans]
    file_rng = np.random.default_rng([config.seed, subject, 1])
    segments, n, raw_class, raw_rep = protocol(labels, config, fs, variants, file_rng)
    adjusted_class, adjusted_rep = label_vectors(segments, n)
    modalities = {
        "hdsemg": (128, lambda r, s, m: motor_units.semg(r, s, grid_patterns, pool, m, fs, amplitude_v=1e-4)),
        "force": (N_FORCE_FINGERS, lambda r, s, m: signals.force(r, s, force_patterns, m, fs)),
    }
    streams = synthesise(segments, n, fs, modalities, [config.seed, subject, 1])
    grids = streams["hdsemg"].reshape(n, 2, 8, 8)  # MATLAB order: samples × 8 × 8 per grid
    out.mkdir(parents=True, exist_ok=True)
    path = out / hdsemg.file_name(subject)
    write_mat_v73(
        path,
        {
            "emg_flexors": grids[:, 0],
            "emg_extensors": grids[:, 1],
            "force": streams["force"],
            "class": raw_class,
            "repetition": raw_rep,
            "adjusted_class": adjusted_class,
            "adjusted_repetition": adjusted_rep,
        },
    )
    return {path: efforts(segments)}


def ground_truth(config: SynthConfig, plans: list[ClassPlan], variants: dict[int, int]) -> dict:
    first, second = modality_pair(config.layout)
    return {
        "format": "isoprobe-synth",
        "version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "layout": config.layout,
        "modalities": [first, second],
        "sampling_rate": dataset_spec(config.layout).sampling_rate,
        "classes": [plan.to_dict(first, second) for plan in plans],
        "synergy_classes": [p.label for p in plans if p.needs == "both"],
        "repetition_variants": {str(k): v for k, v in sorted(variants.items())},
        "effort_cv": EFFORT_CV,
        "note": "Synergy classes form XOR pairs: variant 0/1 of a repetition decides which pattern pair is shown. "
                "`efforts` lists each file's [label, repetition, effort]: the factor that scaled that repetition's "
                "muscle excitation and its force or movement alike.",
    }


def generate(config: SynthConfig, out: Path, on_subject: Callable[[int], None] | None = None) -> SynthResult:
    """Write `config.subjects` synthetic subjects under `out` plus the ground-truth sidecar."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", str(out), "must be a folder (it exists as a file)")
    if config.layout == "ninapro-db2":
        labels = [label for ls in db2_labels_per_exercise(config.n_gestures).values() for label in ls]
        writer = _write_db2_subject
    else:
        labels = list(range(1, config.n_gestures + 1))
        writer = _write_hd_subject
    plans = plan_classes(config.structure_preset, labels, config.synergy_fraction, np.random.default_rng([config.seed, 999]))
    variants = _split_repetitions(config)
    out.mkdir(parents=True, exist_ok=True)
    result = SynthResult(out=out, ground_truth=ground_truth(config, plans, variants))
    efforts_by_file = {}
    for subject in range(1, config.subjects + 1):
        written = writer(config, subject, plans, out, variants)
        result.files[subject] = list(written)
        efforts_by_file.update({str(path.relative_to(out)): rows for path, rows in written.items()})
        if on_subject is not None:
            on_subject(subject)
    result.ground_truth["files"] = {str(s): [str(p.relative_to(out)) for p in ps] for s, ps in result.files.items()}
    result.ground_truth["efforts"] = efforts_by_file
    write_text_atomic(out / SIDECAR, json.dumps(result.ground_truth, indent=2))
    return result


def synthetic_key(config: dict) -> dict:
    """What identifies a synthetic data set: its configuration and the generator version."""
    return {**config, "generator": GENERATOR_VERSION}


def read_ground_truth(folder: Path) -> dict | None:
    """The sidecar of a synthetic data set, or None for real data."""
    for candidate in (Path(folder), Path(folder).parent):
        sidecar = candidate / SIDECAR
        if sidecar.is_file():
            return json.loads(sidecar.read_text())
    return None


def ensure_synthetic(config: SynthConfig, cache_dir: Path) -> Path:
    """A folder holding the data set `config` describes, generated once and reused (keyed by the config)."""
    import hashlib
    import shutil

    key = hashlib.sha256(json.dumps(synthetic_key(config.to_dict()), sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / "synth" / f"{config.layout}-{config.preset}-{key}"
    if (folder / SIDECAR).is_file():
        return folder
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        generate(config, partial)
        try:
            os.replace(partial, folder)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
