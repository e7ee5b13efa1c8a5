"""Planted-truth checks on hand-made predictions: each found value against a direct count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from isoprobe.study.planted import PAIR_SPLIT, planted_rows

TRUTH = {"classes": [
    {"label": 1, "partner": None, "informative_alone": ["emg", "acc"]},
    {"label": 2, "partner": None, "informative_alone": ["emg"]},
    {"label": 3, "partner": 4, "informative_alone": []},
    {"label": 4, "partner": 3, "informative_alone": []},
], "synergy_classes": [3, 4]}


def write_predictions(run, label, predicted, repetition):
    (run / "eval").mkdir(parents=True)
    pd.DataFrame({"start": np.arange(len(label)), "repetition": repetition, "label": label,
                  "predicted": predicted}).to_csv(run / "eval" / "predictions.csv", index=False)


def identity(modalities: str, arch: str = "hierarchical") -> dict:
    return {"modalities": modalities, "arch": arch}


def by_check(rows):
    return {r["check"]: r for r in rows}


def test_a_unimodal_run_is_checked_on_what_its_modality_identifies_and_on_the_pairs(tmp_path):
    rng = np.random.default_rng(0)
    label = np.repeat([1, 2, 3, 4], 30)
    repetition = np.tile(np.repeat([1, 2, 3], 10), 4)
    predicted = label.copy()
    pair_windows = np.flatnonzero(label >= 3)
    predicted[pair_windows] = rng.choice([3, 4], size=pair_windows.size)  # a coin within the pair
    predicted[:5] = 2  # five class-1 windows wrong
    write_predictions(tmp_path, label, predicted, repetition)
    rows = by_check(planted_rows(TRUTH, tmp_path, identity("acc"), bootstrap=200))
    # acc identifies class 1 alone, not class 2
    assert rows["alone"]["found"] == pytest.approx(25 / 30)
    assert rows["alone"]["passed"] and rows["alone"]["ci_low"] <= rows["alone"]["found"] <= rows["alone"]["ci_high"]
    within = (predicted[pair_windows] == label[pair_windows]).mean()
    assert rows["pair"]["found"] == pytest.approx(within)
    assert rows["pair"]["passed"] == (within < PAIR_SPLIT)
    assert "synergy" not in rows
    # class 2 needs emg: an acc model recognising all of it has found something acc cannot carry
    assert rows["blind"]["found"] == 1.0 and not rows["blind"]["passed"]
    emg_only = by_check(planted_rows({"classes": [{**c, "informative_alone": ["emg"]} if c["label"] == 1 else c
                                                  for c in TRUTH["classes"]]}, tmp_path, identity("acc"), 200))
    assert emg_only["blind"]["found"] == pytest.approx(55 / 60)  # classes 1 and 2, both invisible to acc


def test_a_multimodal_run_must_split_the_pairs(tmp_path):
    label = np.repeat([1, 2, 3, 4], 20)
    repetition = np.tile(np.repeat([1, 2], 10), 4)
    predicted = label.copy()
    predicted[label == 3] = 4  # every class-3 window given to its partner
    write_predictions(tmp_path, label, predicted, repetition)
    rows = by_check(planted_rows(TRUTH, tmp_path, identity("emg,acc"), bootstrap=200))
    assert rows["synergy"]["found"] == pytest.approx(0.5) and not rows["synergy"]["passed"]
    assert "alone" not in rows and "pair" not in rows


def test_interaction_and_the_mmt_null(tmp_path):
    (tmp_path / "compare").mkdir()
    (tmp_path / "ablate").mkdir()
    pd.DataFrame({"method": ["mask (IsoNet)", "interaction index"], "estimate": [0.1, 0.3], "ci_low": [0.0, 0.1],
                  "ci_high": [0.2, 0.5]}).to_csv(tmp_path / "compare/compare.csv", index=False)
    pd.DataFrame({"pathway": ["cross", "cross", "uni"], "drop": [0.0, 0.0, 0.2],
                  "null_by_construction": [True, True, False]}).to_csv(tmp_path / "ablate/ablation.csv", index=False)
    rows = by_check(planted_rows(TRUTH, tmp_path, identity("emg,acc", "mmt"), bootstrap=10))
    assert rows["structural"]["passed"]
    assert "interaction" not in rows  # synergy and redundant classes mixed: they offset, no sign is planted

    def interaction(classes):
        found = by_check(planted_rows({"classes": classes}, tmp_path, identity("emg,acc", "mmt"), 10))
        return found["interaction"]["planted"].split(":")[0], found["interaction"]["passed"]

    synergy = [c for c in TRUTH["classes"] if c["partner"]]
    redundant = [{"label": 1, "partner": None, "informative_alone": ["emg", "acc"]}]
    emg_only = [{"label": 1, "partner": None, "informative_alone": ["emg"]}]
    assert interaction(synergy) == ("> 0", True)  # estimate 0.3 [0.1, 0.5]
    assert interaction(redundant) == ("< 0", False)
    assert interaction(emg_only) == ("0", False)  # the CI [0.1, 0.5] misses 0
    pd.DataFrame({"method": ["interaction index"], "estimate": [-0.2], "ci_low": [-0.4],
                  "ci_high": [0.05]}).to_csv(tmp_path / "compare/compare.csv", index=False)
    assert interaction(synergy) == ("> 0", False)
    assert interaction(redundant) == ("< 0", True)
    assert interaction(emg_only) == ("0", True)
