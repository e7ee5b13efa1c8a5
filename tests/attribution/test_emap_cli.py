"""`isoprobe emap` through typer's CliRunner, on an app built here: the table printed and written, its
numbers equal to the library's, and exit code 2 with one message, nothing written, for bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from isoprobe.analysis import load_analysis
from isoprobe.attribution.emap import COLUMNS, EmapConfig
from isoprobe.attribution.emap import emap as run
from isoprobe.cli.emap import emap

from tests.cli_helpers import assert_ok, assert_user_error

app = typer.Typer()
app.command("emap")(emap)
app.command("other")(lambda: None)  # two commands: `emap` is a subcommand, as under isoprobe


def invoke(*args):
    return CliRunner().invoke(app, ["emap", *(str(a) for a in args)], env={"COLUMNS": "400"})


@pytest.mark.parametrize("options, exact", [([], True), (["--partners", "4", "--exact-below", "0"], False)],
                         ids=["exact", "sampled"])
def test_prints_and_writes_the_table(trained, tmp_path, options, exact):
    result = invoke(trained, *options, "--bootstrap", 50, "--out", tmp_path)
    assert_ok(result)
    for fragment in ("EMAP on the test split", "model accuracy", "EMAP accuracy", "gap (model − EMAP)", "per class",
                     "every pair of windows" if exact else "4 partners per window", "emap.csv"):
        assert fragment in result.stdout, fragment
    table = pd.read_csv(tmp_path / "emap.csv", dtype={"class": str, "label": str})
    assert tuple(table.columns) == COLUMNS and table.exact.all() == exact
    analysis = load_analysis(trained)
    config = EmapConfig(partners=4 if not exact else 32, exact_below=0 if not exact else 256, bootstrap=50)
    expected = run(analysis.model, analysis.windows, config).table
    np.testing.assert_allclose(table.estimate, expected.estimate, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table.ci_low, expected.ci_low, rtol=0, atol=1e-12)
    for name in analysis.class_names:
        assert name in result.stdout
    meta = json.loads((tmp_path / "emap.json").read_text())["meta"]
    assert meta["partners"] == (32 if exact else 4) and meta["split"] == "test" and "provenance" in meta


@pytest.mark.parametrize("options, fragments", [
    (["--partners", "lots"], ["--partners", "lots", "exact"]),
    (["--partners", "0"], ["--partners", "0"]),
    (["--exact-below", "-1"], ["--exact-below", "-1"]),
    (["--batch-size", "0"], ["--batch-size", "0"]),
    (["--split", "dev"], ["--split", "dev"]),
])
def test_bad_options_exit_2_and_write_nothing(trained, tmp_path, options, fragments):
    assert_user_error(invoke(trained, *options, "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


def test_a_missing_checkpoint_exits_2(tmp_path):
    assert_user_error(invoke(tmp_path / "nothing.pt", "--out", tmp_path / "out"), "nothing.pt")
    assert not (tmp_path / "out").exists()
