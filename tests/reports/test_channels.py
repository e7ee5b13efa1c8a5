"""The channel-count figure: sEMG channels read from the modality configuration, the paired gain of the
second modality against a hand computation, the all-layer cross drop, and no figure without a sweep."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from isoprobe.errors import IsoprobeError
from isoprobe.reports import aggregate
from isoprobe.reports.aggregate import ALONE, channel_split, channel_summary
from isoprobe.reports.html import FIGURES, ReportConfig, build_report
from isoprobe.reports.inputs import load_study
from tests.reports.study_fixture import MODELS, make_study


@pytest.mark.parametrize(("dataset", "modalities", "semg", "channels", "second"), [
    ("hdsemg65", "hdsemg[::16],force", "hdsemg[::16]", 8, "force"),
    ("hdsemg65", "hdsemg[::16]", "hdsemg[::16]", 8, ALONE),
    ("hdsemg65", "hdsemg[::2],force", "hdsemg[::2]", 64, "force"),
    ("hdsemg65", "hdsemg,force", "hdsemg", 128, "force"),
    ("ninapro-db2", "emg[0:4],acc", "emg[0:4]", 4, "acc"),
    ("ninapro-db2", "emg[0:2]", "emg[0:2]", 2, ALONE),
    ("ninapro-db2", "emg,acc", "emg", 12, "acc"),
])
def test_semg_channels_are_counted_from_the_configuration(dataset, modalities, semg, channels, second):
    assert channel_split(dataset, modalities) == aggregate.ChannelSplit(semg, channels, second)


@pytest.mark.parametrize(("dataset", "modalities"), [("ninapro-db2", "emg[0:6],emg[6:12]"), ("ninapro-db2", "acc"),
                                                     ("hdsemg65", "hdsemg[0:64],hdsemg[64:128]"), ("hdsemg65", "force")])
def test_equal_channel_and_sEMG_free_configurations_are_no_sweep_points(dataset, modalities):
    assert channel_split(dataset, modalities) is None


def test_an_unknown_data_set_or_configuration_names_the_table():
    with pytest.raises(IsoprobeError, match="runs.csv: data set 'eeg' has no known sEMG modality"):
        channel_split("eeg", "emg", "runs.csv")
    with pytest.raises(IsoprobeError, match=r"runs.csv: modalities .emg\[40\]. of data set ninapro-db2: .*out of range"):
        channel_split("ninapro-db2", "emg[40]", "runs.csv")


def _runs(rows) -> pd.DataFrame:
    """runs.csv rows from (subject, seed, modalities, accuracy)."""
    table = pd.DataFrame([dict(dataset="ninapro-db2", data="d", subject=subject, arch="hierarchical", model="h",
                               modalities=modalities, configuration="multimodal" if "acc" in modalities else "unimodal",
                               seed=seed, run=f"s{subject}/{modalities}/seed{seed}", accuracy=accuracy, segments=18)
                          for subject, seed, modalities, accuracy in rows])
    return table.assign(accuracy_ci_low=table.accuracy - 0.02, accuracy_ci_high=table.accuracy + 0.02,
                        balanced_accuracy=table.accuracy)


def _gain(table: pd.DataFrame, modalities: str, level: str = "pooled") -> pd.DataFrame | pd.Series:
    """The pooled gain row of `modalities` (a Series), or its rows of another level (a DataFrame)."""
    rows = table[(table.measure == "gain") & table.modalities.str.startswith(modalities + " −") & (table.level == level)]
    return rows.iloc[0] if level == "pooled" else rows


def test_the_gain_pairs_runs_of_one_subject_and_seed():
    runs = _runs([(1, 0, "emg[0:4]", 0.50), (1, 0, "emg[0:4],acc", 0.70),
                  (1, 1, "emg[0:4]", 0.60), (1, 1, "emg[0:4],acc", 0.64),
                  (1, 2, "emg[0:4],acc", 0.99),  # no sEMG-alone partner: no gain of its own
                  (2, 0, "emg[0:4]", 0.40), (2, 0, "emg[0:4],acc", 0.45),
                  (1, 0, "emg", 0.80), (1, 0, "emg,acc", 0.81), (2, 0, "emg", 0.90), (2, 0, "emg,acc", 0.88)])
    table = channel_summary(runs, None, bootstrap=500, seed=7)
    # by hand: subject 1 gains 0.20 (seed 0) and 0.04 (seed 1), mean 0.12; subject 2 gains 0.05; mean 0.085
    four = _gain(table, "emg[0:4],acc")
    assert four.value == pytest.approx(0.085, abs=1e-12)
    assert (four.semg_channels, four.unit, four.n, four.runs) == (4, aggregate.FEW_SUBJECTS, 2, 3)
    assert math.isnan(four.ci_low) and math.isnan(four.ci_high)  # two subjects: no pooled CI
    subjects = _gain(table, "emg[0:4],acc", "subject")
    assert subjects.subject.tolist() == [1, 2] and subjects.value.tolist() == pytest.approx([0.12, 0.05], abs=1e-12)
    assert subjects.unit.tolist() == [aggregate.AVERAGED, "pair"] and subjects.ci_low.isna().all()
    twelve = _gain(table, "emg,acc")
    assert twelve.value == pytest.approx((0.01 - 0.02) / 2, abs=1e-12) and twelve.semg_channels == 12
    # the accuracies themselves, as the accuracy figure averages them (seeds within subjects first)
    with_acc = table[(table.measure == "accuracy") & (table.modalities == "emg[0:4],acc")].iloc[0]
    assert with_acc.value == pytest.approx(((0.70 + 0.64 + 0.99) / 3 + 0.45) / 2, abs=1e-12)
    assert set(table.measure) == {"accuracy", "gain"} and not table.null_by_construction.any()
    # from five subjects on, the subjects' gains are resampled
    more = [(s, 0, m, a) for s, gain in ((3, 0.3), (4, -0.1), (5, 0.0)) for m, a in (("emg[0:4]", 0.5), ("emg[0:4],acc", 0.5 + gain))]
    wider = channel_summary(pd.concat([runs, _runs(more)], ignore_index=True), None, bootstrap=500, seed=7)
    five = _gain(wider, "emg[0:4],acc")
    subject_gains = np.array([0.12, 0.05, 0.3, -0.1, 0.0])
    draws = np.random.default_rng(7).integers(0, 5, size=(500, 5))
    assert (five.unit, five.n) == ("subjects", 5) and five.value == pytest.approx(subject_gains.mean(), abs=1e-12)
    assert (five.ci_low, five.ci_high) == pytest.approx(tuple(np.quantile(subject_gains[draws].mean(axis=1), [0.025, 0.975])))
    assert _gain(wider, "emg[0:4],acc", "subject").empty


def test_the_gain_of_one_subject_lists_its_seeds_and_of_one_pair_has_no_ci():
    runs = _runs([(1, 0, "emg[0:2]", 0.5), (1, 0, "emg[0:2],acc", 0.7), (1, 1, "emg[0:2]", 0.5), (1, 1, "emg[0:2],acc", 0.6),
                  (1, 0, "emg", 0.8), (1, 0, "emg,acc", 0.9)])
    table = channel_summary(runs, None, bootstrap=200, seed=0)
    two, twelve = _gain(table, "emg[0:2],acc"), _gain(table, "emg,acc")
    assert (two.unit, two.n, two.value) == (aggregate.FEW_SEEDS, 2, pytest.approx(0.15)) and math.isnan(two.ci_low)
    seeds = _gain(table, "emg[0:2],acc", "seed")
    assert seeds.seed.tolist() == [0, 1] and seeds.value.tolist() == pytest.approx([0.2, 0.1])
    assert (seeds.unit == "pair").all()  # each a single pair: its runs' own CIs are not paired
    assert (twelve.unit, twelve.n, twelve.runs) == ("pair", 1, 1)
    assert twelve.value == pytest.approx(0.1) and math.isnan(twelve.ci_low) and math.isnan(twelve.ci_high)


def test_panel_b_takes_the_all_layer_cross_mask_and_keeps_null_rows_null():
    runs = _runs([(s, 0, m, 0.8) for s in (1, 2) for m in ("emg[0:4]", "emg[0:4],acc", "emg", "emg,acc")])
    ablation = []
    for run in runs[runs.modalities.str.contains("acc")].itertuples(index=False):
        for layers, drop in (("L1", 0.5), ("L2", 0.5), ("L3", 0.5), ("L2-L3", 0.4), ("L1-L3", 0.1 * run.subject)):
            for pathway in ("cross", "uni"):
                ablation.append(run._asdict() | dict(layers=layers, pathway=pathway, heads="all", intervention="mask",
                                                     relative_drop=drop if pathway == "cross" else 0.9,
                                                     null_by_construction=run.modalities == "emg,acc" and layers == "L1-L3"))
    table = channel_summary(runs, pd.DataFrame(ablation), bootstrap=200, seed=0)
    drops = table[(table.measure == "relative_drop") & (table.level == "pooled")].set_index("modalities")
    assert list(drops.layers) == ["L1-L3", "L1-L3"]
    assert drops.loc["emg[0:4],acc", "value"] == pytest.approx(0.15) and not drops.loc["emg[0:4],acc", "null_by_construction"]
    null = drops.loc["emg,acc"]
    assert null.null_by_construction and math.isnan(null.value) and math.isnan(null.ci_low)


def test_no_figure_without_two_channel_counts(tmp_path):
    # 12 sEMG channels only (with and without acc, and an equal-channel split): no sweep, no figure, no note
    root = make_study(tmp_path, subjects=(1, 2), seeds=(0,), models=[MODELS[0], MODELS[1], MODELS[2]],
                      skip=("compare", "compare_layers", "shift", "curves", "confusion", "planted", "knockout", "sanity", "emap", "pid"))
    study = load_study(root)
    assert channel_summary(study.tables["runs"], study.tables["ablation"], 200, 0).empty
    report = build_report(study, ReportConfig(subject_bootstrap=200))
    assert "channels" not in [f.id for f in report.figures]
    assert "channels" not in [n["figure"] for n in report.left_out]
    # negative control: a second channel count draws it
    root = make_study(tmp_path / "swept", subjects=(1, 2), seeds=(0,), models=[MODELS[0], MODELS[6]],
                      skip=("compare", "compare_layers", "shift", "curves", "confusion", "planted", "knockout", "sanity", "emap", "pid"))
    figure = next(f for f in build_report(load_study(root), ReportConfig(subject_bootstrap=200)).figures if f.id == "channels")
    assert figure.sources == ("runs.csv", "ablation.csv") and set(figure.table.measure) == {"accuracy", "relative_drop"}


def test_a_cross_mask_short_of_the_deepest_layer_is_not_all_layers():
    ablation = pd.DataFrame(dict(run=["a"] * 4 + ["b"] * 2, layers=["L1", "L2", "L3", "L1-L2", "L1-L2", "L2"]))
    assert aggregate.all_layers(ablation).tolist() == [False, False, False, False, True, False]


def test_the_figure_draws_without_panel_b_and_with_null_points():
    from matplotlib.figure import Figure


    runs = _runs([(s, 0, m, 0.7 + 0.05 * s) for s in (1, 2) for m in ("emg[0:2]", "emg[0:2],acc", "emg", "emg,acc")])
    table = channel_summary(runs, None, bootstrap=200, seed=0)
    assert isinstance(FIGURES["channels"].static(table), Figure)
    each = "each subject (its own CI where it has one)"
    assert {t.name for t in FIGURES["channels"].plotly(table).data} == {"sEMG alone", "sEMG + acc", "gain of + acc (right axis)",
                                                                     each}
    ablation = runs[runs.modalities.str.contains("acc")].assign(layers="L1-L4", pathway="cross", heads="all",
                                                               intervention="mask", relative_drop=0.0,
                                                               null_by_construction=True)
    table = channel_summary(runs, ablation, bootstrap=200, seed=0)
    drops = table[table.measure == "relative_drop"]
    assert drops.value.isna().all() and (drops.level == "pooled").all()  # null rows: no number, no unit rows
    assert isinstance(FIGURES["channels"].static(table), Figure)
    null = [t for t in FIGURES["channels"].plotly(table).data if t.name == "∅ null by construction"]
    assert len(null) == 1 and list(null[0].y) == [0, 0] and list(null[0].x) == [2, 12]
