"""The report opened the way a reader opens it: index.html from disk in headless Chromium, with every
network request refused. Needs Debian's chromium (`.ci/ensure-chromium` installs it) and the playwright
package (the `test` extra); playwright's own browser download is never used.

On the study fixture (two subjects, as analyses/quick.toml) the page must say only what its data can
support: no pooled CI over two subjects, each subject drawn with its own CI; every row null by
construction a hollow ∅; every planted rule's threshold drawn; an MMD² of exactly 0 shown as 0."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from tests.reports.browser import chromium_path, visit
from tests.reports.study_fixture import CAVEAT


@pytest.fixture(scope="module")
def seen(study_report, tmp_path_factory):
    if chromium_path() is None:
        pytest.fail("no chromium at /usr/bin/chromium: run .ci/ensure-chromium")
    root, _ = study_report
    scratch = tmp_path_factory.mktemp("browser")
    artifacts = Path(os.environ.get("ISOPROBE_TEST_ARTIFACTS", scratch))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "report-index.png"
    visited = visit(root / "report" / "index.html", scratch / "profile", screenshot)
    print(f"\nscreenshot of the report: {screenshot}")
    return visited, screenshot


def _rows(document: dict, figure_id: str) -> pd.DataFrame:
    return pd.DataFrame(next(f for f in document["figures"] if f["id"] == figure_id)["rows"])


def _finite(values) -> list[float]:
    return [v for v in (values or []) if v is not None and not (isinstance(v, float) and math.isnan(v))]


def test_report_opens_offline_with_every_figure_drawn(study_report, seen):
    root, document = study_report
    seen, screenshot = seen
    assert seen.blocked == [], f"the page tried to reach the network: {seen.blocked}"
    assert seen.console_errors == [] and seen.page_errors == [], (seen.console_errors, seen.page_errors)
    assert seen.title == document["title"]
    for figure in document["figures"]:
        assert seen.plots.get(figure["div"], 0) > 0, f"{figure['id']}: no plot with data ({seen.plots})"
    assert screenshot.stat().st_size > 50_000


def test_two_subjects_get_no_pooled_ci_and_each_subject_its_own(study_report, seen):
    _, document = study_report
    seen, _ = seen
    rows = _rows(document, "accuracy")
    pooled, units = rows[rows.level == "pooled"], rows[rows.level == "subject"]
    assert (pooled.n == 2).all() and pooled.accuracy_ci_low.isna().all()
    drawn = seen.drawn["figure-accuracy"]
    assert drawn["bar_error_bars"] == 0  # the mean over two subjects: no error bar
    assert drawn["point_error_bars"] == len(units) == 2 * len(pooled)  # each subject with its run's CI
    each = [t for t in drawn["traces"] if t["name"].startswith("each subject") and _finite(t["y"])]
    assert sorted(v for t in each for v in t["y"]) == pytest.approx(sorted(units.accuracy))
    assert "no pooled CI" in seen.captions["accuracy"] and "fewer than 5 subjects" in seen.captions["accuracy"]
    # no figure draws an error bar on a pooled summary: every one drawn is a unit's (or a planted run's)
    for figure in ("layer_drop", "compare", "compare_layers", "shift_vs_drop", "channels"):
        traces = seen.drawn[f"figure-{figure}"]["traces"]
        pooled_bars = [v for t in traces if not t["name"].startswith("each ")
                       for v in _finite(t["error_y"]) + _finite(t["error_x"])]
        assert pooled_bars == [], figure


def test_every_null_row_is_a_hollow_mark_without_a_number(study_report, seen):
    _, document = study_report
    seen, _ = seen
    for figure in ("layer_drop", "compare_layers", "layer_heatmap"):  # channels: tests/reports/test_channels.py
        rows = _rows(document, figure)
        null = rows[rows.null_by_construction.astype(bool)]
        value = "estimate" if figure == "compare_layers" else "drop"
        assert len(null) > 0 and null[value].isna().all(), figure
        assert "level" not in rows or (null.level == "pooled").all(), figure  # a null row has no unit rows
        drawn = seen.drawn[f"figure-{figure}"]
        assert drawn["null_texts"] == len(null), figure
        if figure == "layer_heatmap":  # a ∅ cell is left unfilled: no value behind it
            heat = [t for t in drawn["traces"] if t["type"] == "heatmap"]
            cells = [(z, text) for t in heat for zs, texts in zip(t["z"], t["text"]) for z, text in zip(zs, texts)]
            null_cells = [z for z, text in cells if text == "∅"]
            assert len(null_cells) == len(null) and _finite(null_cells) == []
        else:
            assert drawn["null_points"] == drawn["null_hollow"] == len(null), figure
    # the mmt's margin share was float noise (±1e-8) in its null rows: nothing of it is drawn
    for trace in seen.drawn["figure-compare_layers"]["traces"]:
        assert not [y for y in _finite(trace["y"]) if 0 < abs(y) < 1e-6], trace["name"]
    table = seen.tables["compare_layers"]
    estimate = table["headers"].index("estimate")
    null_column = table["headers"].index("null_by_construction")
    assert {row[estimate] for row in table["rows"] if row[null_column] == "True"} == {""}


def test_each_planted_rule_draws_its_threshold_and_each_run_its_verdict(study_report, seen):
    _, document = study_report
    seen, _ = seen
    rows = _rows(document, "planted")
    runs = rows[rows.level == "run"]
    drawn = seen.drawn["figure-planted"]
    assert len(drawn["shapes"]) == drawn["shapes_drawn"] == len(runs)  # one region per run
    thresholds = _finite(v for t in drawn["traces"] if t["name"] == "rule threshold" for v in t["x"])
    bounds = [b for b in pd.concat([runs.low, runs.high]) if pd.notna(b)]
    assert sorted(set(thresholds)) == pytest.approx(sorted(set(bounds)))
    for verdict, name in ((True, "run passed its rule"), (False, "run failed its rule")):
        found = [v for t in drawn["traces"] if t["name"] == name for v in t["x"]]
        assert sorted(found) == pytest.approx(sorted(runs[runs.passed == verdict].found)), name
    assert (~runs.passed).any() and runs.passed.any()


def test_an_mmd2_of_exactly_zero_reads_0(study_report, seen):
    _, document = study_report
    seen, _ = seen
    rows = _rows(document, "shift_vs_drop")
    still = rows[rows.arch == "mmt"]
    assert len(still) > 0 and (still.mmd2 == 0).all()
    table = seen.tables["shift_vs_drop"]
    arch, mmd2 = table["headers"].index("arch"), table["headers"].index("mmd2")
    assert {row[mmd2] for row in table["rows"] if row[arch] == "mmt"} == {"0"}


def test_a_few_segment_caveat_is_said_under_its_figures(study_report, seen):
    seen, _ = seen
    for figure in ("layer_drop", "layer_heatmap", "channels"):
        assert CAVEAT in seen.captions[figure] and "runs/s2/hierarchical-emg,acc/seed0" in seen.captions[figure], figure
    assert CAVEAT not in seen.captions["accuracy"]
