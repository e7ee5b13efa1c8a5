"""Planted-truth checks on hand-made predictions and tables: each found value against a direct count,
and every rule with a case that passes and a case that fails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from isoprobe.study.planted import BLIND_MARGIN, PAIR_SPLIT, blind_chance, planted_rows

TRUTH = {"classes": [
    {"label": 1, "partner": None, "informative_alone": ["emg", "acc"]},
    {"label": 2, "partner": None, "informative_alone": ["emg"]},
    {"label": 3, "partner": 4, "informative_alone": []},
    {"label": 4, "partner": 3, "informative_alone": []},
], "synergy_classes": [3, 4]}


def write_predictions(run, label, predicted, repetition):
    (run / "eval").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"start": np.arange(len(label)), "repetition": repetition, "label": label,
                  "predicted": predicted}).to_csv(run / "eval" / "predictions.csv", index=False)


def identity(modalities: str, arch: str = "hierarchical") -> dict:
    return {"modalities": modalities, "arch": arch}


def by_check(rows):
    return {r["check"]: r for r in rows}


def checks(truth, run, modalities="acc", arch="hierarchical"):
    return by_check(planted_rows(truth, run, identity(modalities, arch), bootstrap=400))


def test_blind_chance_against_a_direct_count():
    frame = pd.DataFrame({"label": [1, 1, 2, 2, 3, 3], "predicted": [1, 1, 1, 3, 3, 3]})
    tested = np.array([True, True, True, True, False, False])
    # q: class 1 predicted 3/6, class 2 0/6; π over the tested windows: 1/2 each
    assert blind_chance(frame, tested) == pytest.approx(0.5 * 3 / 6 + 0.5 * 0)


def test_a_unimodal_run_is_checked_on_what_its_modality_identifies_and_on_the_pairs(tmp_path):
    rng = np.random.default_rng(0)
    label = np.repeat([1, 2, 3, 4], 30)
    repetition = np.tile(np.repeat(np.arange(1, 7), 5), 4)
    predicted = label.copy()
    pair_windows = np.flatnonzero(label >= 3)
    predicted[pair_windows] = rng.choice([3, 4], size=pair_windows.size)  # a coin within the pair
    predicted[[0, 6, 12, 18, 24]] = 2  # five class-1 windows wrong, one in each of five repetitions
    write_predictions(tmp_path, label, predicted, repetition)
    rows = checks(TRUTH, tmp_path)
    # acc identifies class 1 alone, not class 2
    assert rows["alone"]["found"] == pytest.approx(25 / 30)
    assert rows["alone"]["passed"] and rows["alone"]["ci_low"] <= rows["alone"]["found"] <= rows["alone"]["ci_high"]
    assert rows["alone"]["low"] == pytest.approx(blind_chance(pd.read_csv(tmp_path / "eval/predictions.csv"), label == 1))
    within = (predicted[pair_windows] == label[pair_windows]).mean()
    assert rows["pair"]["found"] == pytest.approx(within)
    assert rows["pair"]["passed"] == (rows["pair"]["ci_high"] < PAIR_SPLIT)
    assert "synergy" not in rows
    # class 2 needs emg: an acc model recognising all of it has found something acc cannot carry
    assert rows["blind"]["found"] == 1.0 and not rows["blind"]["passed"]
    emg_only = checks({"classes": [{**c, "informative_alone": ["emg"]} if c["label"] == 1 else c
                                   for c in TRUTH["classes"]]}, tmp_path)
    assert emg_only["blind"]["found"] == pytest.approx(55 / 60)  # classes 1 and 2, both invisible to acc


def test_alone_fails_at_chance_and_blind_passes_at_chance(tmp_path):
    """An acc model that guesses among classes 1 and 2 at random: chance accuracy on both; `alone` (class
    1) fails, `blind` (class 2) passes."""
    rng = np.random.default_rng(1)
    label = np.repeat([1, 2], 2000)
    repetition = np.tile(np.repeat(np.arange(1, 21), 100), 2)
    write_predictions(tmp_path, label, rng.choice([1, 2], size=label.size), repetition)
    truth = {"classes": TRUTH["classes"][:2]}
    rows = checks(truth, tmp_path)
    assert rows["alone"]["low"] == pytest.approx(0.5, abs=0.05)  # the model keeps to two classes: chance 1/2
    assert not rows["alone"]["passed"]
    assert rows["blind"]["passed"] and rows["blind"]["high"] == pytest.approx(rows["alone"]["low"] + BLIND_MARGIN, abs=0.05)


def test_blind_fails_on_clearly_above_chance_accuracy(tmp_path):
    """The former rule (CI low < 2/K) accepted this: 17 classes, accuracy about 0.15 (chance 0.06) on the
    classes acc cannot see."""
    rng = np.random.default_rng(2)
    labels = np.arange(1, 18)
    label = np.repeat(labels, 20)
    repetition = np.tile(np.repeat(np.arange(1, 3), 10), 17)
    predicted = rng.choice(labels, size=label.size)
    hit = rng.random(label.size) < 0.08
    predicted[hit] = label[hit]
    write_predictions(tmp_path, label, predicted, repetition)
    truth = {"classes": [{"label": int(c), "partner": None, "informative_alone": ["emg"]} for c in labels]}
    rows = checks(truth, tmp_path)
    assert rows["blind"]["ci_low"] < 2 / 17 < rows["blind"]["found"]  # what the old rule let pass
    assert not rows["blind"]["passed"]


def test_a_multimodal_run_must_split_the_pairs(tmp_path):
    label = np.repeat([1, 2, 3, 4], 20)
    repetition = np.tile(np.repeat([1, 2], 10), 4)
    predicted = label.copy()
    predicted[label == 3] = 4  # every class-3 window given to its partner
    write_predictions(tmp_path, label, predicted, repetition)
    rows = checks(TRUTH, tmp_path, "emg,acc")
    assert rows["synergy"]["found"] == pytest.approx(0.5) and not rows["synergy"]["passed"]
    assert "alone" not in rows and "pair" not in rows
    write_predictions(tmp_path, label, label, repetition)  # every pair split
    assert checks(TRUTH, tmp_path, "emg,acc")["synergy"]["passed"]


def test_pair_is_judged_on_the_ci_not_the_point(tmp_path):
    """Within-pair accuracy 0.6 (below PAIR_SPLIT) on few, uneven segments: the CI reaches above 0.65,
    so the unimodal model is not shown to be unable to split the pair."""
    label = np.repeat([3, 4], 20)
    repetition = np.tile(np.repeat([1, 2], 10), 2)
    predicted = label.copy()
    predicted[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]] = 4  # class 3, repetition 1: all given to the partner
    predicted[[20, 21, 22, 23, 24, 25]] = 3
    write_predictions(tmp_path, label, predicted, repetition)
    row = checks(TRUTH, tmp_path)["pair"]
    assert row["found"] == pytest.approx(24 / 40) and row["found"] < PAIR_SPLIT
    assert row["ci_high"] > PAIR_SPLIT and not row["passed"]


def write_compare(run, estimate, low, high):
    (run / "compare").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"method": ["mask (IsoNet)", "interaction index"], "estimate": [0.1, estimate], "ci_low": [0.0, low],
                  "ci_high": [0.2, high]}).to_csv(run / "compare/compare.csv", index=False)


@pytest.mark.parametrize("found, synergy, redundant, one_modality", [
    ((0.3, 0.1, 0.5), True, False, False),
    ((0.1, -0.02, 0.2), False, False, False),  # CI crosses 0
    ((-0.2, -0.4, -0.05), False, True, False),
    ((-0.2, -0.4, 0.05), False, False, False),  # estimate < 0, the CI does not exclude 0: the old rule passed it
    ((0.01, -0.03, 0.04), False, False, True),
    ((0.03, -0.08, 0.14), False, False, False),  # covers 0, but too wide to show ≈ 0
])
def test_interaction_rules(tmp_path, found, synergy, redundant, one_modality):
    write_compare(tmp_path, *found)

    def passed(classes):
        return checks({"classes": classes}, tmp_path, "emg,acc")["interaction"]["passed"]

    assert passed([c for c in TRUTH["classes"] if c["partner"]]) == synergy
    assert passed([{"label": 1, "partner": None, "informative_alone": ["emg", "acc"]}]) == redundant
    assert passed([{"label": 1, "partner": None, "informative_alone": ["emg"]}]) == one_modality
    assert "interaction" not in checks(TRUTH, tmp_path, "emg,acc")  # synergy and redundancy mixed: no sign planted


def write_ablation(run, drop, margin, null):
    (run / "ablate").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"pathway": ["cross", "cross", "uni"], "drop": [0.0, drop, 0.2], "logit_margin_change": [0.0, margin, -1.0],
                  "null_by_construction": [True, null, False]}).to_csv(run / "ablate/ablation.csv", index=False)


def test_structural_needs_the_flag_and_no_change(tmp_path):
    write_ablation(tmp_path, 0.0, 0.0, True)
    assert checks(TRUTH, tmp_path, "emg,acc", "mmt")["structural"]["passed"]
    assert "structural" not in checks(TRUTH, tmp_path, "emg,acc", "hierarchical")
    write_ablation(tmp_path, 0.0, 0.0, False)  # a cross row the model lets exist
    assert not checks(TRUTH, tmp_path, "emg,acc", "mmt")["structural"]["passed"]
    write_ablation(tmp_path, 0.0, 3e-6, True)  # flagged, yet the margin moved: the flag lied
    row = checks(TRUTH, tmp_path, "emg,acc", "mmt")["structural"]
    assert row["found"] == pytest.approx(3e-6) and not row["passed"]


def test_structural_fails_on_a_multimodal_transformer_whose_mask_leaks(db2, mmt, tmp_path):
    """The real thing, not a hand-made table: an mmt whose attention mask lets one cross-modal edge through
    (emg's first token may read acc's first token) is no longer null by construction for `cross`, its
    masking changes the logits, and `structural` fails; the intact mmt passes."""
    import copy

    from isoprobe.engine.ablate import AblationConfig, run_ablation

    windows = db2.splits["test"]
    config = AblationConfig(layers="all", pathway="cross", mode="single", bootstrap=20)
    intact = run_ablation(mmt, windows, config).table
    leaky = copy.deepcopy(mmt)
    ids = leaky.token_modalities.tolist()
    query, key = ids.index(1), ids.index(2)  # the first emg token reads the first acc token
    leaky.within_modality[query, key] = 0.0
    leaked = run_ablation(leaky, windows, config).table
    for table, passes in ((intact, True), (leaked, False)):
        (tmp_path / "ablate").mkdir(exist_ok=True)
        table.to_csv(tmp_path / "ablate/ablation.csv", index=False)
        row = checks(TRUTH, tmp_path, "emg,acc", "mmt")["structural"]
        assert row["passed"] == passes
    assert not leaked.null_by_construction.all() and (leaked.logit_margin_change.abs() > 1e-6).any()


@pytest.mark.parametrize("found, with_synergy, without", [
    ((0.2, 0.05, 0.35), True, False),
    ((0.02, -0.03, 0.07), False, False),  # CI crosses 0: synergy not shown, and reaches past the margin
    ((0.0, -0.02, 0.03), False, True),
    ((-0.08, -0.15, -0.01), False, True),  # the model does better without the interaction: it needs none
])
def test_emap_rules(tmp_path, found, with_synergy, without):
    (tmp_path / "compare").mkdir()
    pd.DataFrame({"method": ["interaction index", "EMAP gap"], "estimate": [0.0, found[0]], "ci_low": [0.0, found[1]],
                  "ci_high": [0.0, found[2]]}).to_csv(tmp_path / "compare/compare.csv", index=False)
    assert checks(TRUTH, tmp_path, "emg,acc")["emap"]["passed"] == with_synergy
    one = {"classes": [{"label": 1, "partner": None, "informative_alone": ["emg"]}]}
    row = checks(one, tmp_path, "emg,acc")["emap"]
    assert row["passed"] == without and row["tested"] == "ci_high"


@pytest.mark.parametrize("bits, expected, floor95, passed", [
    (0.9, 1.0, 0.4, True), (0.3, 1.0, 0.4, False),  # planted synergy: above the floor, or not
    (0.1, 0.0, 0.4, True), (0.6, 0.0, 0.4, False),  # none planted: within the floor, or above it
])
def test_pid_rule(tmp_path, bits, expected, floor95, passed):
    (tmp_path / "pid").mkdir()
    rows = [{"target": "labels", "k": k, "part": part, "bits": bits if part == "synergy" else 1.0, "ci_low": np.nan,
             "ci_high": np.nan, "floor95": floor95, "expected_bits": expected if part == "synergy" else 1.0}
            for k in (4, 8) for part in ("redundancy", "synergy")]
    pd.DataFrame(rows).to_csv(tmp_path / "pid/pid.csv", index=False)
    row = checks(TRUTH, tmp_path, "emg,acc")["pid"]
    assert row["passed"] == passed and row["found"] == bits and row["tested"] == "estimate"
    pd.DataFrame(rows).assign(expected_bits=np.nan).to_csv(tmp_path / "pid/pid.csv", index=False)
    assert "pid" not in checks(TRUTH, tmp_path, "emg,acc")  # nothing planted (real data): no row
