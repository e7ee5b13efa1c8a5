"""NinaPro DB2 loader: `S<n>_E<k>_A1.mat` (MATLAB v5), DESIGN §2.1."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from isoprobe.data.matfile import as_matrix, as_vector, load_v5, require
from isoprobe.data.recording import Recording
from isoprobe.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

SAMPLING_RATE = 2000.0
CHANNELS = {"emg": 12, "acc": 36}
# Labels are global across exercises: E1 1–17, E2 18–40, E3 41–49; 0 is rest.
EXERCISE_LABELS = {1: range(1, 18), 2: range(18, 41), 3: range(41, 50)}
REPETITIONS = (1, 2, 3, 4, 5, 6)
TRAIN_REPETITIONS = (1, 3, 4, 6)
TEST_REPETITIONS = (2, 5)
FILE_PATTERN = re.compile(r"^S(\d+)_E(\d)_A1\.mat$")


def gesture_name(label: int) -> str:
    """A gesture with its exercise, as DB2's documentation numbers them: E2-18 (exercise 2, label 18)."""
    exercise = next((e for e, labels in EXERCISE_LABELS.items() if label in labels), 0)
    return f"E{exercise}-{label:02d}"


def file_name(subject: int, exercise: int) -> str:
    return f"S{subject}_E{exercise}_A1.mat"


def find_files(root: Path, subject: int, exercises: tuple[int, ...] = (1, 2, 3)) -> dict[int, Path]:
    """Exercise -> file for one subject, from `root/DB2_s<n>/` or from `root` itself."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "data folder not found")
    for exercise in exercises:
        if exercise not in EXERCISE_LABELS:
            raise ConfigError("exercises", exercise, "NinaPro DB2 has exercises 1, 2 and 3")
    found: dict[int, Path] = {}
    for folder in (root / f"DB2_s{subject}", root):
        for exercise in exercises:
            candidate = folder / file_name(subject, exercise)
            if exercise not in found and candidate.is_file():
                found[exercise] = candidate
    if not found:
        wanted = ", ".join(file_name(subject, e) for e in exercises)
        raise DataFormatError(root, f"no NinaPro DB2 files for subject {subject} ({wanted}) here or in DB2_s{subject}/")
    missing = sorted(set(exercises) - set(found))
    if missing:
        log.info("%s: subject %d has no file for exercise(s) %s; loading %s", root, subject, missing, sorted(found))
    return dict(sorted(found.items()))


def subjects_in(root: Path) -> list[int]:
    """Subject numbers with at least one DB2 file under `root` (flat or in DB2_s<n>/ folders)."""
    subjects = {int(m.group(1)) for p in Path(root).glob("**/S*_E*_A1.mat") if (m := FILE_PATTERN.match(p.name))}
    return sorted(subjects)


def read_file(path: Path, exercise: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One exercise file: emg [time, 12], acc [time, 36], labels [time], repetitions [time].

    With `exercise`, labels must lie in that exercise's range (or be 0 for rest).
    """
    variables = load_v5(path, expected_by="NinaPro DB2")
    emg = as_matrix(variables[require(variables, path, "emg")], path, "emg", CHANNELS["emg"])
    acc = as_matrix(variables[require(variables, path, "acc")], path, "acc", CHANNELS["acc"])
    if "restimulus" in variables and "rerepetition" in variables:
        label_field, rep_field = "restimulus", "rerepetition"
    else:
        label_field = require(variables, path, "restimulus", ("stimulus",))
        rep_field = require(variables, path, "rerepetition", ("repetition",))
        log.warning("%s: no relabelled 'restimulus'/'rerepetition'; using '%s'/'%s'", path, label_field, rep_field)
    labels = as_vector(variables[label_field], path, label_field)
    repetitions = as_vector(variables[rep_field], path, rep_field)

    if len(emg) != len(acc):
        raise DataFormatError(path, f"'emg' has {len(emg)} samples but 'acc' has {len(acc)}", "acc")
    lengths = {"emg": len(emg), label_field: len(labels), rep_field: len(repetitions)}
    shortest = min(lengths.values())
    if max(lengths.values()) - shortest > 1:
        detail = ", ".join(f"'{k}' {v}" for k, v in lengths.items())
        # Name the vector furthest from the signal length, not always the labels.
        culprit = max((label_field, rep_field), key=lambda k: abs(lengths[k] - len(emg)))
        raise DataFormatError(path, f"signal and label lengths differ by more than one sample ({detail})", culprit)
    if shortest < len(emg) or shortest < len(labels):
        # Known DB2 quirk: label vectors one row shorter than the signals.
        log.debug("%s: truncating to %d samples (%s)", path, shortest, lengths)
    if exercise is not None:
        foreign = np.setdiff1d(np.unique(labels), [0, *EXERCISE_LABELS[exercise]])
        if foreign.size:
            allowed = EXERCISE_LABELS[exercise]
            raise DataFormatError(
                path,
                f"labels {foreign.tolist()} lie outside exercise {exercise}'s range "
                f"{allowed.start}–{allowed.stop - 1} (or 0 for rest)",
                label_field,  # 'stimulus' when the file lacks the relabelled vectors
            )
    return emg[:shortest], acc[:shortest], labels[:shortest], repetitions[:shortest]


def load_subject(root: Path, subject: int, exercises: tuple[int, ...] = (1, 2, 3)) -> Recording:
    """All selected exercise files of one subject, concatenated in exercise order."""
    files = find_files(root, subject, exercises)
    emgs, accs, labels, reps, starts = [], [], [], [], []
    offset = 0
    for exercise, path in files.items():
        emg, acc, label, rep = read_file(path, exercise)
        emgs.append(emg), accs.append(acc), labels.append(label), reps.append(rep), starts.append(offset)
        offset += len(emg)
    return Recording(
        dataset="ninapro-db2",
        subject=subject,
        sampling_rate=SAMPLING_RATE,
        signals={"emg": np.concatenate(emgs), "acc": np.concatenate(accs)},
        labels=np.concatenate(labels),
        repetitions=np.concatenate(reps),
        sources=tuple(files.values()),
        exercises=tuple(files),
        segment_starts=tuple(starts),
    )
