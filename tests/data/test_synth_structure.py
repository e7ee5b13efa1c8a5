"""The planted structure is real: a simple classifier on windowed RMS features finds exactly the
class information each preset promises (DESIGN §2.3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from isoprobe.data import hdsemg, ninapro
from isoprobe.data.synth import SIDECAR
from isoprobe.data.windows import cut, split_repetitions, window_starts
from tests.conftest import make_synth


def log_rms(values: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Log root-mean-square per channel of each window: [window, channel]."""
    windows = cut(values, starts, window).astype(np.float64)
    return np.log(np.sqrt((windows**2).mean(axis=1)) + 1e-12)


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 5) -> float:
    """k-nearest-neighbour accuracy (majority vote): nonlinear, so it can solve the XOR pairs."""
    _, index = cKDTree(train_x).query(test_x, k=k)
    predicted = np.array([np.bincount(votes).argmax() for votes in train_y[index.reshape(len(test_x), -1)]])
    return float(np.mean(predicted == test_y))


def features(root, subject, layout):
    """Per modality (and both) standardised log-RMS features, labels and a train mask (standard split)."""
    recording = (ninapro.load_subject if layout == "ninapro-db2" else hdsemg.load_subject)(root, subject)
    window = int(0.2 * recording.sampling_rate)
    starts = window_starts(recording, window, window // 2, keep_rest=False)
    labels = recording.labels[starts]
    train = np.isin(split_repetitions(recording.repetitions)[starts], (1, 3, 4, 6) if layout == "ninapro-db2" else (1, 3, 5))
    blocks = {}
    for name, values in recording.signals.items():
        x = log_rms(values, starts, window)
        # standardise on training windows; scale so each modality weighs the same in "both"
        blocks[name] = (x - x[train].mean(0)) / (x[train].std(0) + 1e-12) / np.sqrt(x.shape[1])
    blocks["both"] = np.hstack(list(blocks.values()))
    return blocks, labels, train


def accuracies(root, layout, subjects, pairs_only=False):
    """Mean accuracy per feature set over subjects; with pairs_only, over each synergy pair on its own."""
    truth = json.loads((root / SIDECAR).read_text())
    pairs = [(c["label"], c["partner"]) for c in truth["classes"] if c["partner"] and c["label"] < c["partner"]]
    scores: dict[str, list[float]] = {}
    for subject in subjects:
        blocks, labels, train = features(root, subject, layout)
        for name, x in blocks.items():
            groups = pairs if pairs_only else [tuple(np.unique(labels))]
            for group in groups:
                member = np.isin(labels, group)
                tr, te = member & train, member & ~train
                scores.setdefault(name, []).append(knn_accuracy(x[tr], labels[tr], x[te], labels[te]))
    return {name: float(np.mean(values)) for name, values in scores.items()}


@pytest.fixture(scope="module")
def synergy_db2(tmp_path_factory):
    return make_synth(tmp_path_factory.mktemp("synergy"), preset="synergy", gestures=12, subjects=2)


@pytest.mark.parametrize("preset, informative, uninformative", [("emg-only", "emg", "acc"), ("acc-only", "acc", "emg")])
def test_single_modality_presets(tmp_path, preset, informative, uninformative):
    root = make_synth(tmp_path, preset=preset, gestures=12)
    scores = accuracies(root, "ninapro-db2", [1])
    chance = 1 / 12
    assert scores[informative] > 0.9
    assert scores[uninformative] < chance + 0.12
    assert scores["both"] > 0.75  # the uninformative modality adds noise dimensions to the k-NN distance


def test_redundant_both_modalities_separate_every_class(db2_redundant):
    scores = accuracies(db2_redundant, "ninapro-db2", [1])
    assert scores["emg"] > 0.9 and scores["acc"] > 0.9 and scores["both"] > 0.9


def test_synergy_pairs_need_both_modalities(synergy_db2):
    within_pairs = accuracies(synergy_db2, "ninapro-db2", [1, 2], pairs_only=True)
    # 6 pairs × 2 subjects: alone, each modality is at the pair's chance level of 0.5
    assert within_pairs["emg"] < 0.65 and within_pairs["acc"] < 0.65
    assert within_pairs["both"] > 0.9
    # over all 12 classes a single modality still finds the pair (≈ 0.5), both find the class
    overall = accuracies(synergy_db2, "ninapro-db2", [1, 2])
    assert 0.35 < overall["emg"] < 0.65 and overall["both"] > 0.9


def test_hdsemg_layout_emg_only_and_synergy(tmp_path):
    options = dict(layout="hdsemg65", gestures=8, seconds_per_repetition=1.0, rest_seconds=0.5)
    emg_only = accuracies(make_synth(tmp_path / "e", preset="emg-only", **options), "hdsemg65", [1])
    assert emg_only["hdsemg"] > 0.9 and emg_only["force"] < 1 / 8 + 0.15
    synergy = accuracies(make_synth(tmp_path / "s", preset="synergy", **options), "hdsemg65", [1], pairs_only=True)
    assert synergy["hdsemg"] < 0.7 and synergy["force"] < 0.7 and synergy["both"] > 0.85
