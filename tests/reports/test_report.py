"""`isoprobe report`: every number traces back to the study tables, the aggregation matches a naive loop,
missing tables are said, bad input fails cleanly and leaves nothing half-written."""

from __future__ import annotations

import dataclasses

import json
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from isoprobe.reports import aggregate, plots
from isoprobe.reports.aggregate import Measure, summarise
from isoprobe.reports.html import FIGURES, ReportConfig, write_report
from tests.cli_helpers import assert_ok, assert_user_error, invoke
from tests.reports.conftest import SUBJECTS
from tests.reports.study_fixture import CAVEAT, MODELS, make_study

TEXT = {c: str for c in ("dataset", "data", "arch", "model", "modalities", "configuration", "run", "layers", "layer",
                         "pathway", "heads", "intervention", "site", "block", "method", "estimand", "true", "predicted",
                         "check", "quantity", "planted", "unit", "level", "tested")}


def _read(path):
    return pd.read_csv(path, dtype=TEXT, keep_default_na=False, na_values=[""])


def _same(a, b) -> bool:
    """Equal as report.json and a CSV hold them: None ≡ NaN, numbers compared exactly."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
        return bool(a) == bool(b)
    if isinstance(a, (int, float, np.number)):
        return float(a) == float(b)
    return str(a) == str(b)


def _naive(rows: pd.DataFrame, value: str) -> tuple[float, list[float]]:
    """Seeds averaged within each subject by a plain loop; (mean over subjects, subject means)."""
    means = []
    for subject in sorted(set(rows.subject)):
        values = [v for s, v in zip(rows.subject, rows[value]) if s == subject]
        means.append(sum(values) / len(values))
    return sum(means) / len(means), means


def _loop_bootstrap(values: list[float], resamples: int, seed: int) -> tuple[float, float]:
    """The percentile bootstrap one resample at a time, from the same generator."""
    rng = np.random.default_rng(seed)
    means = [float(np.mean([values[i] for i in rng.integers(0, len(values), size=len(values))])) for _ in range(resamples)]
    return tuple(np.quantile(means, [0.025, 0.975]))


# --- report.json against the tables ---------------------------------------------------------------

def test_report_json_equals_the_tables_it_wrote(study_report):
    root, document = study_report
    ids = [f["id"] for f in document["figures"]]
    assert ids == ["accuracy", "channels", "layer_drop", "layer_heatmap", "compare", "compare_layers", "knockout",
                   "emap", "pid", "sanity", "shift_vs_drop", "curves", "confusion", "planted"]
    assert document["left_out"] == []
    for figure in document["figures"]:
        table = _read(root / "report" / figure["files"]["csv"])
        assert list(table.columns) == figure["columns"]
        assert len(table) == len(figure["rows"]) > 0, figure["id"]
        for row, (_, csv_row) in zip(figure["rows"], table.iterrows()):
            for column in table.columns:
                assert _same(row[column], csv_row[column]), (figure["id"], column, row[column], csv_row[column])
        for kind in ("png", "svg", "md"):
            assert (root / "report" / figure["files"][kind]).stat().st_size > 0
        assert figure["caption"] and "95% CI" in figure["caption"] or figure["id"] in ("curves", "confusion")


def _pooled(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.level == "pooled"]


def test_summaries_equal_a_naive_loop_over_the_input(study_report):
    """Two subjects, one seed each: each pooled value is the mean of the two runs and has no CI; each
    subject's row is its run's value with its run's own CI."""
    root, document = study_report
    figures = {f["id"]: pd.DataFrame(f["rows"]) for f in document["figures"]}
    runs = pd.read_csv(root / "tables" / "runs.csv", dtype=TEXT)
    accuracy = figures["accuracy"]
    for row in _pooled(accuracy).itertuples():
        rows = runs[(runs.arch == row.arch) & (runs.modalities == row.modalities)]
        assert row.accuracy == pytest.approx(_naive(rows, "accuracy")[0], rel=1e-12)
        assert math.isnan(row.accuracy_ci_low) and math.isnan(row.accuracy_ci_high)  # a bootstrap over 2 values is no interval
        assert (row.unit, row.n, row.runs) == (aggregate.FEW_SUBJECTS, len(SUBJECTS), len(SUBJECTS))
    units = accuracy[accuracy.level == "subject"]
    assert len(units) == len(SUBJECTS) * len(_pooled(accuracy))
    for row in units.itertuples():
        run = runs[(runs.arch == row.arch) & (runs.modalities == row.modalities) & (runs.subject.astype(int) == row.subject)]
        assert (row.accuracy, row.accuracy_ci_low, row.accuracy_ci_high) == tuple(run.iloc[0][["accuracy", "accuracy_ci_low",
                                                                                              "accuracy_ci_high"]])
        assert (row.unit, row.n, row.runs, row.seed) == ("segments", 18, 1, 0)
    ablation = pd.read_csv(root / "tables" / "ablation.csv", dtype=TEXT)
    drops = figures["layer_drop"]
    assert set(drops.pathway) == {"uni", "cross", "relay", "readout"} and set(drops.layers) == {"L1", "L2", "L3", "L4", "L5"}
    for row in drops.itertuples():
        rows = ablation[(ablation.arch == row.arch) & (ablation.modalities == row.modalities) & (ablation.layers == row.layers)
                        & (ablation.pathway == row.pathway)]
        if row.level == "subject":
            rows = rows[rows.subject.astype(int) == row.subject]
        assert row.null_by_construction == rows.null_by_construction.all()
        if row.null_by_construction:  # marked, never a number, and no unit rows
            assert row.drop is None or math.isnan(row.drop)
            assert row.level == "pooled"
        else:
            assert row.drop == pytest.approx(_naive(rows, "drop")[0], rel=1e-12)
    shift = pd.read_csv(root / "tables" / "shift.csv", dtype=TEXT)
    for row in _pooled(figures["shift_vs_drop"]).itertuples():
        last = shift[(shift.arch == row.arch) & (shift.modalities == row.modalities) & (shift.intervention == row.intervention)
                     & (shift.site == "final CLS")]
        assert row.site == "final CLS"
        assert row.drop == pytest.approx(_naive(last.assign(d=last.base_accuracy - last.accuracy), "d")[0], rel=1e-12)
        assert row.mmd2 == pytest.approx(_naive(last, "mmd2")[0], rel=1e-12)
    planted = pd.read_csv(root / "tables" / "planted.csv", dtype=TEXT)
    for row in figures["planted"].itertuples():
        rows = planted[(planted.arch == row.arch) & (planted.modalities == row.modalities) & (planted.check == row.check)]
        if row.level == "run":  # each run with its own verdict and region
            rows = rows[rows.run == row.run]
            assert (row.found, row.passed, row.tested) == (rows.found.iloc[0], rows.passed.iloc[0], rows.tested.iloc[0])
            assert _same(row.low, rows.low.iloc[0]) and _same(row.high, rows.high.iloc[0])
        assert row.passed_runs == rows.passed.sum() and row.passed == rows.passed.all()
    shares = figures["confusion"].groupby(["run", "true"]).share.sum()
    assert np.allclose(shares, 1.0) and figures["confusion"].run.nunique() == 2
    curves = pd.read_csv(root / "tables" / "curves.csv", dtype=TEXT)
    first = curves[curves.run.isin(curves.run.drop_duplicates().head(2))].reset_index(drop=True)
    assert figures["curves"].val_accuracy.tolist() == first.val_accuracy.tolist()
    # the channel figure's accuracies are the accuracy figure's, its cross drops the widest cross masking's
    channels = _pooled(figures["channels"])
    pooled = _pooled(accuracy)
    by_modalities = pooled[pooled.arch == "hierarchical"].set_index("modalities").accuracy
    for row in channels[channels.measure == "accuracy"].itertuples():
        assert row.value == by_modalities[row.modalities]
    assert sorted(channels.semg_channels.unique()) == [4, 12]
    for row in channels[channels.measure == "relative_drop"].itertuples():
        rows = ablation[(ablation.arch == row.arch) & (ablation.modalities == row.modalities) & (ablation.layers == "L1-L5")
                        & (ablation.pathway == "cross")]
        assert row.layers == "L1-L5" and row.value == pytest.approx(_naive(rows, "relative_drop")[0], rel=1e-12)


def test_headline_and_summary_state_the_compare_mask_share(study_report):
    root, document = study_report
    compare = pd.DataFrame(next(f for f in document["figures"] if f["id"] == "compare")["rows"])
    mask = compare[(compare.method == "mask (IsoNet)") & (compare.arch == "hierarchical") & (compare.modalities == "emg,acc")]
    headline = document["headline"]
    assert (headline["source"], headline["arch"], headline["unit"], headline["n"]) == \
        ("compare.csv", "hierarchical", aggregate.FEW_SUBJECTS, 2)
    pooled, subjects = mask.iloc[0], mask.iloc[1:]
    assert (headline["share"], headline["ci_low"], headline["ci_high"]) == (pooled.estimate, None, None)
    assert [u["share"] for u in headline["units"]] == subjects.estimate.tolist()
    summary = document["summary"]
    assert f"{pooled.estimate:.1%}" in summary and "the mean of 2 subjects" in summary and "95% CI" in summary
    for unit in subjects.itertuples():  # each subject's share with its own CI, never a pooled one
        assert f"subject {int(unit.subject)} {unit.estimate:.1%} (95% CI {unit.ci_low:.1%} to {unit.ci_high:.1%})" in summary
    assert document["title"] == "Test study" and document["provenance"] == {"isoprobe": "0.1.0", "commit": "abc123"}


def test_html_tables_are_rounded_while_csv_and_json_keep_every_digit(study_report):
    root, document = study_report
    page = (root / "report" / "index.html").read_text(encoding="utf-8")
    tables = page[page.index("<h2>Tables"):page.index("<h2>Provenance")]
    cells = re.findall(r"<td>([^<]*)</td>", tables)
    numbers = [c for c in cells if re.fullmatch(r"[-+]?\d*\.?\d+(e[-+]\d+)?", c)]
    assert len(numbers) > 500
    digits = [len(re.sub(r"e.*|[-+.]", "", c).lstrip("0")) for c in numbers]
    assert max(digits) <= 4, [c for c, d in zip(numbers, digits) if d > 4][:5]
    accuracy = next(f for f in document["figures"] if f["id"] == "accuracy")
    value = accuracy["rows"][0]["accuracy"]
    assert len(repr(value)) > 10  # the example has digits to lose
    csv = _read(root / "report" / accuracy["files"]["csv"])
    assert csv.accuracy.iloc[0] == value  # full precision in the CSV and in report.json
    assert f"<td>{value:.4g}</td>" in tables and repr(value) not in tables
    # the page's text outside the tables states no unrounded number either
    prose = re.sub(r"<script.*?</script>|<div class=\"scroll\">.*?</div>|<pre>.*?</pre>", "", page, flags=re.S)
    assert not re.findall(r"\d\.\d{6,}", prose)


def test_notes_say_which_runs_have_too_few_segments(tmp_path, study_report):
    from isoprobe.reports.html import build_report
    from isoprobe.reports.inputs import load_study

    root, document = study_report
    notes = {f["id"]: f["notes"] for f in document["figures"]}
    for figure in ("layer_drop", "layer_heatmap", "channels"):
        (note,) = notes[figure]
        assert CAVEAT in note and "1 run: runs/s2/hierarchical-emg,acc/seed0" in note
    assert notes["accuracy"] == [] and notes["compare"] == []
    # negative control: a table without the (optional) column reads as no caveat at all
    older = make_study(tmp_path, subjects=(1, 2), seeds=(0,), models=[MODELS[0]],
                       skip=("compare", "compare_layers", "shift", "curves", "confusion", "planted", "knockout", "sanity", "emap", "pid"))
    ablation = pd.read_csv(older / "tables" / "ablation.csv")
    ablation.drop(columns="caveat").to_csv(older / "tables" / "ablation.csv", index=False)
    assert all(f.notes == () for f in build_report(load_study(older), ReportConfig(subject_bootstrap=200)).figures)


def test_index_is_self_contained_and_ordered(study_report):
    root, document = study_report
    page = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert (root / "report" / "plotly.min.js").stat().st_size > 1_000_000
    assert page.count('<script src="plotly.min.js"') == 1
    references = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert references and not [r for r in references if "://" in r or r.startswith("//")]
    assert "<link" not in page and "@import" not in page
    for figure in document["figures"]:
        assert f'id="{figure["div"]}"' in page
    order = [page.index(marker) for marker in ("<h1>", 'class="summary"', "<h2>Figures", "<h2>Tables", "<h2>Provenance")]
    assert order == sorted(order) and "abc123" in page[order[-1]:]


# --- aggregation ----------------------------------------------------------------------------------

def _runs(subjects, seeds, rng) -> pd.DataFrame:
    rows = [dict(dataset="ninapro-db2", data="d", subject=s, arch="hierarchical", modalities="emg,acc",
                 configuration="multimodal", seed=k, run=f"s{s}k{k}", segments=18, accuracy=rng.uniform(0.5, 1))
            for s in subjects for k in seeds]
    table = pd.DataFrame(rows)
    return table.assign(accuracy_ci_low=table.accuracy - 0.1, accuracy_ci_high=table.accuracy + 0.05)


@pytest.mark.parametrize(("subjects", "seeds", "unit", "n"), [((1, 2, 3, 4, 5), (0, 1, 2), "subjects", 5),
                                                                ((1, 2, 3, 4, 5, 6, 7), (0,), "subjects", 7),
                                                                ((7,), (0, 1, 2, 3, 4), "seeds", 5), ((7,), (0,), "segments", 18)])
def test_from_five_units_a_pooled_bootstrap_ci(subjects, seeds, unit, n):
    table = _runs(subjects, seeds, np.random.default_rng(1))
    measure = Measure("accuracy", "accuracy_ci_low", "accuracy_ci_high")
    summary = summarise(table, [measure], aggregate.MODEL_COLUMNS[:3], bootstrap=500, seed=3)
    assert summary.level.tolist() == ["pooled"]  # no unit rows: the pooled CI is the summary
    row = summary.iloc[0]
    assert (row.unit, row.n, row.runs) == (unit, n, len(table))
    if unit == "segments":  # the run's own CI, untouched
        assert (row.accuracy, row.accuracy_ci_low, row.accuracy_ci_high) == tuple(table.iloc[0][["accuracy", "accuracy_ci_low", "accuracy_ci_high"]])
        return
    level = "subject" if unit == "subjects" else "seed"
    values = [float(np.mean(table.accuracy[table[level] == v])) for v in sorted(set(table[level]))]
    assert row.accuracy == pytest.approx(np.mean(values), rel=1e-12)
    # the subject (or seed) values alone are resampled: no inner resampling of segments (their CIs are unused)
    assert (row.accuracy_ci_low, row.accuracy_ci_high) == pytest.approx(_loop_bootstrap(values, 500, 3), rel=1e-12)
    wider = summarise(table.assign(accuracy_ci_low=0.0, accuracy_ci_high=1.0), [measure], aggregate.MODEL_COLUMNS[:3],
                      bootstrap=500, seed=3).iloc[0]
    assert (wider.accuracy_ci_low, wider.accuracy_ci_high) == (row.accuracy_ci_low, row.accuracy_ci_high)
    # negative control: another seed gives another interval
    other = summarise(table, [measure], aggregate.MODEL_COLUMNS[:3], bootstrap=500, seed=4).iloc[0]
    assert (other.accuracy_ci_low, other.accuracy_ci_high) != (row.accuracy_ci_low, row.accuracy_ci_high)


def test_two_subjects_give_no_pooled_ci_but_each_subject_with_its_own():
    table = _runs((1, 2), (0,), np.random.default_rng(2))
    # subject 1 also has a second seed: its value is the mean of its two runs, with no CI of its own
    table = pd.concat([table, table.iloc[[0]].assign(seed=1, run="s1k1", accuracy=0.5)], ignore_index=True)
    measure = Measure("accuracy", "accuracy_ci_low", "accuracy_ci_high")
    summary = summarise(table, [measure], ["arch"], bootstrap=500, seed=3)
    assert summary.level.tolist() == ["pooled", "subject", "subject"] and summary.subject.tolist() == [None, 1, 2]
    pooled, first, second = (summary.iloc[i] for i in range(3))
    means = [(table.accuracy[0] + 0.5) / 2, table.accuracy[1]]
    assert pooled.accuracy == pytest.approx(np.mean(means), rel=1e-12)
    assert math.isnan(pooled.accuracy_ci_low) and math.isnan(pooled.accuracy_ci_high)
    assert (pooled.unit, pooled.n, pooled.runs) == (aggregate.FEW_SUBJECTS, 2, 3)
    assert first.accuracy == pytest.approx(means[0], rel=1e-12) and math.isnan(first.accuracy_ci_low)
    assert (first.unit, first.n, first.runs, first.seed) == (aggregate.AVERAGED, 2, 2, None)
    run = table.iloc[1]
    assert (second.accuracy, second.accuracy_ci_low, second.accuracy_ci_high) == (run.accuracy, run.accuracy_ci_low,
                                                                                  run.accuracy_ci_high)
    assert (second.unit, second.n, second.runs, second.seed) == ("segments", 18, 1, 0)
    # one subject, three seeds: each seed's run with its own CI
    seeds = summarise(_runs((7,), (0, 1, 2), np.random.default_rng(3)), [measure], ["arch"], bootstrap=500, seed=3)
    assert seeds.level.tolist() == ["pooled", "seed", "seed", "seed"] and seeds.unit.iloc[0] == aggregate.FEW_SEEDS
    assert seeds.accuracy_ci_low.iloc[1:].notna().all() and math.isnan(seeds.accuracy_ci_low.iloc[0])


def test_below_five_units_every_figure_draws_each_unit_and_the_mean_without_an_error_bar(study_report):
    """Both renderers: the unit markers carry the unit rows' values and CIs, no pooled element an error bar."""
    from matplotlib.figure import Figure

    _, document = study_report
    names = {"accuracy": "accuracy", "layer_drop": "drop", "compare": "estimate", "compare_layers": "estimate",
             "shift_vs_drop": "drop", "channels": "value"}
    for figure_id, value in names.items():
        table = pd.DataFrame(next(f for f in document["figures"] if f["id"] == figure_id)["rows"])
        table = table.astype({c: float for c in table.columns if c.endswith("ci_low") or c.endswith("ci_high") or c == value})
        units = table[table.level == "subject"]
        figure = FIGURES[figure_id].plotly(table)
        each = [t for t in figure.data if t.name and t.name.startswith("each subject") and t.mode == "markers"
                and t.x is not None and len(t.x) and t.x[0] is not None]
        horizontal = figure_id == "compare"
        drawn = np.concatenate([np.asarray(t.x if horizontal else t.y, dtype=float) for t in each])
        assert sorted(drawn) == pytest.approx(sorted(units[value])), figure_id
        low = f"{value}_ci_low" if f"{value}_ci_low" in table else "ci_low"
        bars = np.concatenate([np.asarray((t.error_x if horizontal else t.error_y).arrayminus, dtype=float) for t in each])
        assert sorted(np.nan_to_num(bars, nan=-1)) == pytest.approx(sorted(np.nan_to_num(units[value] - units[low], nan=-1)))
        for trace in figure.data:
            if trace in each or not getattr(trace, "error_y", None) and not getattr(trace, "error_x", None):
                continue
            for error in (trace.error_x, trace.error_y):
                if error is not None and error.array is not None:
                    assert np.isnan(np.asarray(error.array, dtype=float)).all(), (figure_id, trace.name)
        assert isinstance(FIGURES[figure_id].static(table), Figure)


def test_seeds_are_averaged_within_subjects_before_the_bootstrap():
    """A subject with many seeds weighs as much as one with a single seed."""
    table = _runs((1, 2, 3, 4, 5), (0,), np.random.default_rng(0))
    extra = table[table.subject == 1].iloc[[0, 0, 0]].assign(seed=[1, 2, 3], accuracy=[0.1, 0.1, 0.1])
    table = pd.concat([table, extra], ignore_index=True)
    row = summarise(table, [Measure("accuracy")], ["arch"], bootstrap=200).iloc[0]
    first = np.mean([table.accuracy[0], 0.1, 0.1, 0.1])
    assert row.accuracy == pytest.approx((first + table.accuracy[1:5].sum()) / 5)


def test_null_by_construction_rows_keep_the_mark_and_get_no_number():
    table = _runs((1, 2), (0, 1), np.random.default_rng(0)).assign(drop=0.0, null_by_construction=True)
    summary = summarise(table, [Measure("drop")], ["arch", "null_by_construction"], bootstrap=200)
    assert len(summary) == 1  # no unit rows either
    row = summary.iloc[0]
    assert row.null_by_construction and math.isnan(row["drop"]) and math.isnan(row.drop_ci_low)
    assert (row.unit, row.n) == (aggregate.FEW_SUBJECTS, 2)


def test_compare_layers_null_rows_are_hollow_and_carry_no_number(study_report):
    """The mmt's per-layer rows (and every model's last layer) are null: no number in the summary, no line
    through them, a hollow ∅ marker each; an older table without the column reads as no null rows."""
    from isoprobe.reports.inputs import load_study

    root, _ = study_report
    layers = load_study(root).tables["compare_layers"]
    summary = aggregate.compare_layers_summary(layers, 200, 0)
    null = summary[summary.null_by_construction]
    assert set(null.arch) == {"hierarchical", "mmt"} and set(null[null.arch == "hierarchical"].layer) == {"L5"}
    assert null.estimate.isna().all() and null.ci_low.isna().all() and (null.level == "pooled").all()
    assert not summary[(summary.arch == "mmt") & (summary.level != "pooled")].size  # nothing of the mmt per subject
    figure = FIGURES["compare_layers"].plotly(summary)
    marks = [t for t in figure.data if t.text is not None and "∅" in list(t.text)]
    assert sum(len(t.x) for t in marks) == len(null)
    assert all(t.marker.symbol == "circle-open" and t.mode == "markers+text" for t in marks)
    assert all(not re.search(r"\d\.\d|e-", text) for t in marks for text in t.hovertext)  # no number said
    for trace in figure.data:  # the ±1e-8 noise of the mmt's margin share is drawn nowhere
        if trace not in marks and trace.y is not None:
            y = np.asarray(trace.y, dtype=float)
            assert not ((np.abs(y) > 0) & (np.abs(y) < 1e-6)).any(), trace.name
    mmt = [t for t in figure.data if t.xaxis == "x2" and t.mode == "lines+markers"]
    assert mmt == []  # the mmt panel has no line at all
    # negative control: the column dropped (an older compare) leaves every row a measurement
    older = aggregate.compare_layers_summary(layers.drop(columns="null_by_construction"), 200, 0)
    assert not older.null_by_construction.any() and older.estimate.notna().all()


def test_the_planted_figure_draws_each_rule_and_each_run_by_its_own_verdict():
    rows = []
    for subject, (found, low, high, passed) in enumerate([(0.90, 0.85, 0.95, True), (0.72, 0.60, 0.80, False)], 1):
        rows.append(dict(dataset="d", data="d", arch="hierarchical", modalities="emg,acc", configuration="multimodal",
                         subject=subject, seed=0, run=f"s{subject}", check="synergy", quantity="within-pair accuracy",
                         method="accuracy", planted="CI low > 0.65", found=found, ci_low=low, ci_high=high, tested="ci_low",
                         low=0.65, high=np.nan, passed=passed))
        chance = 0.11 + 0.01 * subject  # a threshold that differs between runs
        rows.append(dict(rows[-1], check="blind", planted=f"CI high < {chance + 0.05:.2f}", found=chance, ci_low=chance - 0.01,
                         ci_high=chance + 0.02, tested="ci_high", low=np.nan, high=chance + 0.05, passed=True))
    summary = aggregate.planted_summary(pd.DataFrame(rows), 200, 0)
    assert summary.level.tolist() == ["pooled", "run", "run", "pooled", "run", "run"]
    synergy, blind = summary.iloc[0], summary.iloc[3]
    assert (synergy.passed, synergy.passed_runs, synergy.low, synergy.runs) == (False, 1, 0.65, 2)
    assert math.isnan(synergy.ci_low)  # two runs: no pooled CI
    assert math.isnan(blind.high) and " | " in blind.planted  # regions differ by run: none pooled
    figure = FIGURES["planted"].plotly(summary)
    extent = figure.layout.xaxis.range
    regions = sorted((shape.x0, shape.x1) for shape in figure.layout.shapes)
    expected = sorted([(0.65, extent[1])] * 2 + [(extent[0], 0.17), (extent[0], 0.18)])
    assert np.ravel(regions) == pytest.approx(np.ravel(expected))
    (thresholds,) = [t for t in figure.data if t.name == "rule threshold"]
    assert sorted({x for x in thresholds.x if x is not None}) == pytest.approx([0.17, 0.18, 0.65])
    traces = {t.name: t for t in figure.data}
    assert list(traces["run failed its rule"].x) == [0.72] and traces["run failed its rule"].marker.color == plots.FAILED
    assert sorted(traces["run passed its rule"].x) == pytest.approx([0.12, 0.13, 0.9])
    assert traces["mean over runs"].marker.color == "black"  # the mean is never coloured by a run's verdict
    from matplotlib.figure import Figure

    assert isinstance(FIGURES["planted"].static(summary), Figure)


def test_a_repeated_subject_and_seed_is_an_error():
    table = _runs((1,), (0,), np.random.default_rng(0))
    with pytest.raises(aggregate.IsoprobeError, match="subject 1, seed 0 appears in more than one row"):
        summarise(pd.concat([table, table.assign(run="again")]), [Measure("accuracy")], ["arch"], name="runs.csv")


# --- what is missing, what is wrong -----------------------------------------------------------------

def test_a_missing_table_leaves_its_figures_out_with_a_note(tmp_path):
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]],
                      skip=("ablation", "compare", "compare_layers", "shift", "curves", "confusion", "planted", "knockout", "sanity", "emap", "pid"))
    result = invoke("report", root, "--subject-bootstrap", 200)
    assert_ok(result)
    assert "layer_drop left out: tables/ablation.csv not found" in result.output
    document = json.loads((root / "report" / "report.json").read_text(encoding="utf-8"))
    assert [f["id"] for f in document["figures"]] == ["accuracy"]
    assert {n["figure"] for n in document["left_out"]} == {"layer_drop", "layer_heatmap", "compare", "compare_layers",
                                                           "knockout", "emap", "pid", "sanity", "shift_vs_drop", "curves",
                                                           "confusion", "planted"}
    page = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert "shift_vs_drop left out: tables/shift.csv not found" in page
    assert sorted(p.name for p in (root / "report" / "figures").iterdir()) == ["accuracy.png", "accuracy.svg"]
    # one run: the run's own segment CI, said in the caption
    assert document["figures"][0]["rows"][0]["unit"] == "segments"
    assert "cluster bootstrap over segments" in document["figures"][0]["caption"]
    assert "No result of masking cross-modal attention" in document["summary"]


@pytest.mark.parametrize("case", ["missing", "no-tables", "empty-tables"])
def test_a_bad_folder_exits_2_with_one_line(tmp_path, case):
    root = tmp_path / "study"
    if case != "missing":
        root.mkdir()
    if case == "empty-tables":
        (root / "tables").mkdir()
    fragment = {"missing": "not a folder", "no-tables": "no tables/ folder", "empty-tables": "none of the study tables"}[case]
    assert_user_error(invoke("report", root), str(root), fragment)
    assert not (root / "report").exists()


def test_a_table_without_a_column_it_needs_names_both(tmp_path):
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]], skip=("curves", "confusion", "planted", "knockout", "sanity", "emap", "pid"))
    ablation = pd.read_csv(root / "tables" / "ablation.csv")
    ablation.drop(columns=["drop_ci_low"]).to_csv(root / "tables" / "ablation.csv", index=False)
    assert_user_error(invoke("report", root), "ablation.csv", "drop_ci_low")
    assert not (root / "report").exists() and not list(root.glob(".report*"))


def test_an_option_out_of_range_names_the_flag(tmp_path):
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]])
    assert_user_error(invoke("report", root, "--runs-shown", 0), "--runs-shown", "≥ 1")


def test_a_failed_report_leaves_the_previous_one_untouched(tmp_path, monkeypatch):
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]],
                      skip=("compare", "compare_layers", "shift", "curves", "confusion", "planted", "knockout", "sanity", "emap", "pid"))
    config = ReportConfig(subject_bootstrap=200)
    write_report(root, config)
    before = {p.relative_to(root): p.read_bytes() for p in (root / "report").rglob("*") if p.is_file()}

    def broken(table):
        raise RuntimeError("drawing failed")

    heatmap = dataclasses.replace(FIGURES["layer_heatmap"], static=broken)
    monkeypatch.setitem(FIGURES, "layer_heatmap", heatmap)  # after accuracy and layer_drop are written
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(root, config)
    after = {p.relative_to(root): p.read_bytes() for p in (root / "report").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in root.iterdir()) == ["report", "study.json", "tables"]  # no partial folder left
    # and with no earlier report, nothing at all
    (root / "report").rename(root / "kept")
    with pytest.raises(RuntimeError):
        write_report(root, config)
    assert not (root / "report").exists() and sorted(p.name for p in root.iterdir()) == ["kept", "study.json", "tables"]


def test_drawing_leaves_pyplot_and_the_backend_alone(tmp_path):
    import matplotlib

    backend = matplotlib.rcParams._get_backend_or_none()
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]],
                      skip=("compare", "compare_layers", "shift", "curves", "planted", "knockout", "sanity", "emap", "pid"))
    write_report(root, ReportConfig(subject_bootstrap=200))
    assert matplotlib.rcParams._get_backend_or_none() == backend
    if "matplotlib.pyplot" in sys.modules:  # seaborn imports it; no figure may be left in its state
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_help_does_not_import_the_plotting_libraries():
    code = "import sys, isoprobe.cli.app; print(sorted(m for m in ('plotly', 'matplotlib', 'seaborn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_compare_the_headline_comes_from_the_widest_cross_mask_ablation(tmp_path):
    from isoprobe.reports.inputs import load_study

    root = make_study(tmp_path, subjects=(1, 2), seeds=(0,), models=[MODELS[3], MODELS[0]], skip=("compare",))
    study = load_study(root)
    summary = aggregate.ablation_summary(study.tables["ablation"], 200, 0)
    top = aggregate.headline(None, summary)
    ablation = study.tables["ablation"]
    rows = ablation[(ablation.arch == "hierarchical") & (ablation.layers == "L1-L5") & (ablation.pathway == "cross")]
    assert (top["source"], top["arch"], top["layers"], top["unit"], top["n"]) == \
        ("ablation.csv", "hierarchical", "L1-L5", aggregate.FEW_SUBJECTS, 2)
    assert top["share"] == pytest.approx(rows.relative_drop.mean(), rel=1e-12)
    assert [u["share"] for u in top["units"]] == rows.relative_drop.tolist()


def test_a_figure_registered_here_joins_the_report(tmp_path):
    """A new figure is one builder, two renderers and one registration: nothing else names it."""
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    from isoprobe.reports.html import FigureSpec, register_figure

    def interactive(table):
        return go.Figure(go.Bar(x=table.arch, y=table.runs))

    def static(table):
        figure, axes = plt.subplots()
        axes.bar(table.arch, table.runs)
        return figure

    @register_figure("toy_runs_per_arch", "runs", interactive, static)
    def toy(tables, config):
        counts = tables["runs"].groupby("arch").size().rename("runs").reset_index()
        return FigureSpec("toy_runs_per_arch", "Runs per architecture", "How many runs each architecture has.",
                          ("runs.csv",), counts)

    try:
        root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]],
                          skip=("compare", "compare_layers", "shift", "curves", "confusion", "planted", "knockout", "sanity", "emap", "pid"))
        folder = write_report(root, ReportConfig(subject_bootstrap=200))
        document = json.loads((folder / "report.json").read_text())
        entry = next(f for f in document["figures"] if f["id"] == "toy_runs_per_arch")
        assert entry["rows"] == [{"arch": "hierarchical", "runs": 1}] and entry["title"] == "Runs per architecture"
        assert 'id="figure-toy_runs_per_arch"' in (folder / "index.html").read_text()
        assert (folder / "figures" / "toy_runs_per_arch.png").is_file()
        assert [f["id"] for f in document["figures"]][-1] == "toy_runs_per_arch"  # page order: registration order
    finally:
        del FIGURES["toy_runs_per_arch"]
