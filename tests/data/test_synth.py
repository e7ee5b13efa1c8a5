"""The synthetic generator writes the real file layouts (DESIGN §2.1–2.3), deterministically."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io

from isoprobe.data.synth import SIDECAR, SynthConfig, generate
from isoprobe.data.synth.generate import db2_labels_per_exercise
from isoprobe.data.synth.structure import plan_classes, repetition_variants
from isoprobe.errors import ConfigError
from tests.conftest import make_synth

DB2_RANGES = {1: (1, 17), 2: (18, 40), 3: (41, 49)}


@pytest.fixture(scope="module")
def db2_mixed(tmp_path_factory):
    return make_synth(tmp_path_factory.mktemp("mixed"), preset="mixed", synergy_fraction=0.3, subjects=2, gestures=10)


def test_db2_files_have_the_ninapro_variables_shapes_and_label_ranges(db2_mixed):
    for subject in (1, 2):
        for exercise, (low, high) in DB2_RANGES.items():
            variables = scipy.io.loadmat(db2_mixed / f"DB2_s{subject}" / f"S{subject}_E{exercise}_A1.mat")
            n = variables["emg"].shape[0]
            assert variables["emg"].shape == (n, 12)
            assert variables["acc"].shape == (n, 36)
            assert variables["glove"].shape == (n, 22)
            assert variables["inclin"].shape == (n, 2)
            for name in ("restimulus", "rerepetition", "stimulus", "repetition"):
                assert variables[name].shape == (n, 1), name
            assert int(variables["subject"][0, 0]) == subject
            assert int(variables["exercise"][0, 0]) == exercise
            labels = np.unique(variables["restimulus"])
            gestures = labels[labels > 0]
            assert 0 in labels and gestures.size > 0
            assert gestures.min() >= low and gestures.max() <= high
            reps = np.unique(variables["rerepetition"])
            assert set(reps) == {0, 1, 2, 3, 4, 5, 6}
            # rest (label 0) is exactly the time between repetitions (repetition 0)
            assert np.array_equal(variables["restimulus"] == 0, variables["rerepetition"] == 0)
            has_force = {"force", "forcecal", "activation"} <= set(variables)
            assert has_force == (exercise == 3)
            if exercise == 3:
                assert variables["force"].shape == (n, 6) and variables["forcecal"].shape == (2, 6)


def test_raw_stimulus_differs_from_relabelled_only_near_boundaries(db2_mixed):
    variables = scipy.io.loadmat(db2_mixed / "DB2_s1" / "S1_E1_A1.mat")
    raw, refined = variables["stimulus"].ravel(), variables["restimulus"].ravel()
    assert not np.array_equal(raw, refined)
    assert np.mean(raw != refined) < 0.25
    assert set(np.unique(raw)) == set(np.unique(refined))


def test_hdsemg_files_open_with_h5py_in_matlab_v73_layout(tmp_path):
    root = make_synth(tmp_path, layout="hdsemg65", gestures=3, subjects=2, seconds_per_repetition=0.8, rest_seconds=0.5)
    for subject in (1, 2):
        path = root / f"s{subject}.mat"
        assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
        assert scipy.io.matlab.matfile_version(str(path))[0] == 2
        with h5py.File(path, "r") as file:
            n = file["adjusted_class"].shape[1]
            # h5py sees MATLAB's samples × 8 × 8 transposed
            assert file["emg_flexors"].shape == (8, 8, n)
            assert file["emg_extensors"].shape == (8, 8, n)
            assert file["force"].shape == (5, n)
            for name in ("adjusted_class", "adjusted_repetition", "class", "repetition"):
                assert file[name].shape == (1, n)
            assert file["emg_flexors"].attrs["MATLAB_class"] == b"single"
            labels = np.unique(file["adjusted_class"][()])
            assert set(labels) == {0, 1, 2, 3}
            assert set(np.unique(file["adjusted_repetition"][()])) == {0, 1, 2, 3, 4, 5}


def _arrays(root):
    out = {}
    for path in sorted(root.rglob("*.mat")):
        if path.name.startswith("S"):
            out.update({f"{path.name}:{k}": v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")})
        else:
            with h5py.File(path, "r") as file:
                out.update({f"{path.name}:{k}": file[k][()] for k in file})
    return out


@pytest.mark.parametrize("layout", ["ninapro-db2", "hdsemg65"])
def test_same_seed_same_arrays_other_seed_other_arrays(tmp_path, layout):
    options = dict(layout=layout, gestures=3, seconds_per_repetition=0.8, rest_seconds=0.5, preset="synergy")
    first = _arrays(make_synth(tmp_path / "a", seed=7, **options))
    again = _arrays(make_synth(tmp_path / "b", seed=7, **options))
    other = _arrays(make_synth(tmp_path / "c", seed=8, **options))
    assert first.keys() == again.keys() == other.keys()
    for key in first:
        assert np.array_equal(first[key], again[key]), key
    signal = "S1_E1_A1.mat:emg" if layout == "ninapro-db2" else "s1.mat:emg_flexors"
    assert not np.allclose(first[signal], other[signal])


def test_sidecar_records_seed_preset_and_ground_truth(db2_mixed):
    truth = json.loads((db2_mixed / SIDECAR).read_text())
    assert truth["config"]["seed"] == 0 and truth["config"]["preset"] == "mixed"
    assert truth["config"]["synergy_fraction"] == 0.3
    synergy = truth["synergy_classes"]
    assert len(synergy) == 4  # 0.3 × 10 = 3 classes: the nearest even count, ties upward
    by_label = {c["label"]: c for c in truth["classes"]}
    for label in synergy:
        partner = by_label[label]["partner"]
        assert by_label[partner]["partner"] == label
        assert by_label[label]["needs"] == "both" and by_label[label]["informative_alone"] == []
    others = [c for c in truth["classes"] if c["label"] not in synergy]
    assert all(c["needs"] == "either" for c in others)
    assert truth["files"]["2"] == ["DB2_s2/S2_E1_A1.mat", "DB2_s2/S2_E2_A1.mat", "DB2_s2/S2_E3_A1.mat"]


def test_gestures_spread_over_exercises_with_global_labels():
    spread = db2_labels_per_exercise(10)
    assert sum(len(v) for v in spread.values()) == 10
    assert set(spread) == {1, 2, 3}
    for exercise, labels in spread.items():
        assert all(DB2_RANGES[exercise][0] <= label <= DB2_RANGES[exercise][1] for label in labels)
    assert sum(len(v) for v in db2_labels_per_exercise(49).values()) == 49


def test_synergy_pairs_are_xor_and_variants_balance_both_splits():
    plans = {p.label: p for p in plan_classes("synergy", [1, 2, 3, 4], None, np.random.default_rng(0))}
    c0, c1 = plans[1], plans[2]
    # same multiset of single-modality patterns across the two classes, different combinations
    assert sorted(c0.first) == sorted(c1.first) and sorted(c0.second) == sorted(c1.second)
    assert set(zip(c0.first, c0.second)).isdisjoint(zip(c1.first, c1.second))
    variants = repetition_variants((1, 3, 4, 6), (2, 5))
    assert sorted(variants[r] for r in (1, 3, 4, 6)) == [0, 0, 1, 1]
    assert sorted(variants[r] for r in (2, 5)) == [0, 1]


@pytest.mark.parametrize(
    "options, option",
    [
        (dict(layout="ninapro-db3"), "layout"),
        (dict(preset="xor"), "preset"),
        (dict(preset="mixed"), "synergy_fraction"),
        (dict(preset="mixed", synergy_fraction=1.5), "synergy_fraction"),
        (dict(preset="redundant", synergy_fraction=0.5), "synergy_fraction"),
        (dict(gestures=50), "gestures"),
        (dict(layout="hdsemg65", repetitions=6), "repetitions"),
        (dict(subjects=0), "subjects"),
    ],
)
def test_bad_generator_options_name_the_option(tmp_path, options, option):
    with pytest.raises(ConfigError, match=option):
        generate(SynthConfig(**options), tmp_path)
    assert not any(tmp_path.iterdir())
