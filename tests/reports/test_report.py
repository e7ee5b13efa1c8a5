"""`isoprobe report`: every number traces back to the study tables, the aggregation matches a naive loop,
missing tables are said, bad input fails cleanly and leaves nothing half-written."""

from __future__ import annotations

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
from isoprobe.reports.html import ReportConfig, write_report
from tests.cli_helpers import assert_ok, assert_user_error, invoke
from tests.reports.conftest import BOOTSTRAP
from tests.reports.study_fixture import MODELS, make_study

TEXT = {c: str for c in ("dataset", "data", "arch", "model", "modalities", "configuration", "run", "layers", "layer",
                         "pathway", "heads", "intervention", "site", "method", "definition", "true", "predicted",
                         "check", "quantity", "planted", "unit")}


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
    assert ids == ["accuracy", "channels", "layer_drop", "layer_heatmap", "compare", "compare_layers", "shift_vs_drop",
                   "curves", "confusion", "planted"]
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


def test_summaries_equal_a_naive_loop_over_the_input(study_report):
    root, document = study_report
    figures = {f["id"]: pd.DataFrame(f["rows"]) for f in document["figures"]}
    runs = pd.read_csv(root / "tables" / "runs.csv", dtype=TEXT)
    for row in figures["accuracy"].itertuples():
        rows = runs[(runs.arch == row.arch) & (runs.modalities == row.modalities)]
        mean, subject_means = _naive(rows, "accuracy")
        assert row.accuracy == pytest.approx(mean, rel=1e-12)
        assert (row.accuracy_ci_low, row.accuracy_ci_high) == pytest.approx(_loop_bootstrap(subject_means, BOOTSTRAP, 0))
        assert (row.unit, row.n, row.runs) == ("subjects", 3, 6)
    ablation = pd.read_csv(root / "tables" / "ablation.csv", dtype=TEXT)
    drops = figures["layer_drop"]
    assert set(drops.pathway) == {"uni", "cross", "relay", "readout"} and set(drops.layers) == {"L1", "L2", "L3", "L4", "L5"}
    for row in drops.itertuples():
        rows = ablation[(ablation.arch == row.arch) & (ablation.modalities == row.modalities) & (ablation.layers == row.layers)
                        & (ablation.pathway == row.pathway)]
        assert row.null_by_construction == rows.null_by_construction.all()
        if row.null_by_construction:  # marked, never a number
            assert row.drop is None or math.isnan(row.drop)
        else:
            assert row.drop == pytest.approx(_naive(rows, "drop")[0], rel=1e-12)
    shift = pd.read_csv(root / "tables" / "shift.csv", dtype=TEXT)
    for row in figures["shift_vs_drop"].itertuples():
        last = shift[(shift.arch == row.arch) & (shift.modalities == row.modalities) & (shift.intervention == row.intervention)
                     & (shift.site == "final CLS")]
        assert row.site == "final CLS"
        assert row.drop == pytest.approx(_naive(last.assign(d=last.base_accuracy - last.accuracy), "d")[0], rel=1e-12)
        assert row.mmd2 == pytest.approx(_naive(last, "mmd2")[0], rel=1e-12)
    planted = pd.read_csv(root / "tables" / "planted.csv", dtype=TEXT)
    for row in figures["planted"].itertuples():
        rows = planted[(planted.arch == row.arch) & (planted.modalities == row.modalities) & (planted.check == row.check)]
        assert row.passed_runs == rows.passed.sum() and row.passed == rows.passed.all()
    shares = figures["confusion"].groupby(["run", "true"]).share.sum()
    assert np.allclose(shares, 1.0) and figures["confusion"].run.nunique() == 2
    curves = pd.read_csv(root / "tables" / "curves.csv", dtype=TEXT)
    first = curves[curves.run.isin(curves.run.drop_duplicates().head(2))].reset_index(drop=True)
    assert figures["curves"].val_accuracy.tolist() == first.val_accuracy.tolist()
    # the channel figure's accuracies are the accuracy figure's, its cross drops the widest cross masking's
    channels = figures["channels"]
    accuracy = figures["accuracy"][figures["accuracy"].arch == "hierarchical"].set_index("modalities").accuracy
    for row in channels[channels.measure == "accuracy"].itertuples():
        assert row.value == accuracy[row.modalities]
    assert sorted(channels.semg_channels.unique()) == [4, 12]
    for row in channels[channels.measure == "relative_drop"].itertuples():
        rows = ablation[(ablation.arch == row.arch) & (ablation.modalities == row.modalities) & (ablation.layers == "L1-L5")
                        & (ablation.pathway == "cross")]
        assert row.layers == "L1-L5" and row.value == pytest.approx(_naive(rows, "relative_drop")[0], rel=1e-12)


def test_headline_and_summary_state_the_compare_mask_share(study_report):
    root, document = study_report
    compare = pd.DataFrame(next(f for f in document["figures"] if f["id"] == "compare")["rows"])
    mask = compare[(compare.method == "mask (IsoNet)") & (compare.arch == "hierarchical")].iloc[0]
    headline = document["headline"]
    assert (headline["source"], headline["arch"], headline["unit"], headline["n"]) == ("compare.csv", "hierarchical", "subjects", 3)
    assert (headline["share"], headline["ci_low"], headline["ci_high"]) == (mask.estimate, mask.ci_low, mask.ci_high)
    assert f"{mask.estimate:.1%}" in document["summary"] and "3 subjects" in document["summary"]
    assert document["title"] == "Test study" and document["provenance"] == {"isoprobe": "0.1.0", "commit": "abc123"}


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


@pytest.mark.parametrize(("subjects", "seeds", "unit", "n"), [((1, 2, 3, 4), (0, 1, 2), "subjects", 4),
                                                                ((7,), (0, 1, 2), "seeds", 3), ((7,), (0,), "segments", 18)])
def test_unit_of_resampling(subjects, seeds, unit, n):
    table = _runs(subjects, seeds, np.random.default_rng(1))
    measure = Measure("accuracy", "accuracy_ci_low", "accuracy_ci_high")
    row = summarise(table, [measure], aggregate.MODEL_COLUMNS[:3], bootstrap=500, seed=3).iloc[0]
    assert (row.unit, row.n, row.runs) == (unit, n, len(table))
    if unit == "segments":  # the run's own CI, untouched
        assert (row.accuracy, row.accuracy_ci_low, row.accuracy_ci_high) == tuple(table.iloc[0][["accuracy", "accuracy_ci_low", "accuracy_ci_high"]])
        return
    level = "subject" if unit == "subjects" else "seed"
    values = [float(np.mean(table.accuracy[table[level] == v])) for v in sorted(set(table[level]))]
    assert row.accuracy == pytest.approx(np.mean(values), rel=1e-12)
    assert (row.accuracy_ci_low, row.accuracy_ci_high) == pytest.approx(_loop_bootstrap(values, 500, 3), rel=1e-12)
    if unit == "subjects":  # negative control: another seed gives another interval (with 3 seeds both are min, max)
        other = summarise(table, [measure], aggregate.MODEL_COLUMNS[:3], bootstrap=500, seed=4).iloc[0]
        assert (other.accuracy_ci_low, other.accuracy_ci_high) != (row.accuracy_ci_low, row.accuracy_ci_high)


def test_seeds_are_averaged_within_subjects_before_the_bootstrap():
    """A subject with many seeds weighs as much as one with a single seed."""
    table = _runs((1, 2), (0,), np.random.default_rng(0))
    extra = table[table.subject == 1].iloc[[0, 0, 0]].assign(seed=[1, 2, 3], accuracy=[0.1, 0.1, 0.1])
    table = pd.concat([table, extra], ignore_index=True)
    row = summarise(table, [Measure("accuracy")], ["arch"], bootstrap=200).iloc[0]
    first = np.mean([table.accuracy[0], 0.1, 0.1, 0.1])
    assert row.accuracy == pytest.approx((first + table.accuracy[1]) / 2)


def test_null_by_construction_rows_keep_the_mark_and_get_no_number():
    table = _runs((1, 2), (0, 1), np.random.default_rng(0)).assign(drop=0.0, null_by_construction=True)
    row = summarise(table, [Measure("drop")], ["arch", "null_by_construction"], bootstrap=200).iloc[0]
    assert row.null_by_construction and math.isnan(row["drop"]) and math.isnan(row.drop_ci_low)
    assert (row.unit, row.n) == ("subjects", 2)


def test_a_repeated_subject_and_seed_is_an_error():
    table = _runs((1,), (0,), np.random.default_rng(0))
    with pytest.raises(aggregate.IsoprobeError, match="subject 1, seed 0 appears in more than one row"):
        summarise(pd.concat([table, table.assign(run="again")]), [Measure("accuracy")], ["arch"], name="runs.csv")


# --- what is missing, what is wrong -----------------------------------------------------------------

def test_a_missing_table_leaves_its_figures_out_with_a_note(tmp_path):
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]],
                      skip=("ablation", "compare", "compare_layers", "shift", "curves", "confusion", "planted"))
    result = invoke("report", root, "--bootstrap", 200)
    assert_ok(result)
    assert "layer_drop left out: tables/ablation.csv not found" in result.output
    document = json.loads((root / "report" / "report.json").read_text(encoding="utf-8"))
    assert [f["id"] for f in document["figures"]] == ["accuracy"]
    assert {n["figure"] for n in document["left_out"]} == {"layer_drop", "layer_heatmap", "compare", "compare_layers",
                                                           "shift_vs_drop", "curves", "confusion", "planted"}
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
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]], skip=("curves", "confusion", "planted"))
    ablation = pd.read_csv(root / "tables" / "ablation.csv")
    ablation.drop(columns=["drop_ci_low"]).to_csv(root / "tables" / "ablation.csv", index=False)
    assert_user_error(invoke("report", root), "ablation.csv", "drop_ci_low")
    assert not (root / "report").exists() and not list(root.glob(".report*"))


def test_an_option_out_of_range_names_the_flag(tmp_path):
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]])
    assert_user_error(invoke("report", root, "--runs-shown", 0), "--runs-shown", "≥ 1")


def test_a_failed_report_leaves_the_previous_one_untouched(tmp_path, monkeypatch):
    root = make_study(tmp_path, subjects=(1,), seeds=(0,), models=[MODELS[0]],
                      skip=("compare", "compare_layers", "shift", "curves", "confusion", "planted"))
    config = ReportConfig(bootstrap=200)
    write_report(root, config)
    before = {p.relative_to(root): p.read_bytes() for p in (root / "report").rglob("*") if p.is_file()}

    def broken(table):
        raise RuntimeError("drawing failed")

    monkeypatch.setitem(plots.STATIC, "layer_heatmap", broken)  # after accuracy and layer_drop are written
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
                      skip=("compare", "compare_layers", "shift", "curves", "planted"))
    write_report(root, ReportConfig(bootstrap=200))
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
    assert (top["source"], top["arch"], top["layers"], top["unit"], top["n"]) == ("ablation.csv", "hierarchical", "L1-L5", "subjects", 2)
    assert top["share"] == pytest.approx(rows.relative_drop.mean(), rel=1e-12)
