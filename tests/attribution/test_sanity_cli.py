"""`isoprobe sanity` through typer's CliRunner, on an app built here (the command's registration in
`isoprobe.cli.app` is one line): the table printed and written equal to the library's, flagged methods
named, and exit code 2 with one message, nothing written, for bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from isoprobe.analysis import load_analysis
from isoprobe.attribution.sanity import SANITY_METHODS, SanityConfig, SanityMethod
from isoprobe.attribution.sanity import sanity as run_sanity
from isoprobe.cli.sanity import sanity
from tests.attribution.test_sanity import input_magnitude
from tests.cli_helpers import assert_user_error

app = typer.Typer()
app.command("sanity")(sanity)
app.command("other")(lambda: None)  # two commands, so `sanity` is a subcommand as under isoprobe's app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def test_prints_and_writes_the_table(trained, tmp_path):
    options = ["--methods", "ig,mask", "--windows", 10, "--steps", 3, "--bootstrap", 30]
    result = invoke("sanity", trained, *options, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    for fragment in ("sanity checks on the test split", "10 of", "trained", "head", "L2", "L1", "encoders", "embeddings",
                     "random target", "ig", "mask", "sanity.csv"):
        assert fragment in result.stdout, fragment
    assert "flagged" not in result.stdout
    table = pd.read_csv(tmp_path / "sanity.csv")
    analysis = load_analysis(trained)
    expected = run_sanity(analysis.model, analysis.windows, SanityConfig(methods="ig,mask", windows=10, steps=3,
                                                                          bootstrap=30)).table
    assert list(table.method) == list(expected.method) and list(table.step) == list(expected.step)
    np.testing.assert_allclose(table.spearman, expected.spearman, rtol=1e-9, atol=1e-12)
    meta = json.loads((tmp_path / "sanity.json").read_text())["meta"]
    assert meta["methods"] == ["ig", "mask"] and meta["windows"] == 10 and meta["threshold"] == 0.5


def test_a_flagged_method_is_named(trained, monkeypatch):
    monkeypatch.setitem(SANITY_METHODS, "input-magnitude", SanityMethod("input-magnitude", input_magnitude))
    result = invoke("sanity", trained, "--methods", "input-magnitude", "--windows", 6, "--bootstrap", 0)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "flagged" in result.stdout and "input-magnitude ⚑" in result.stdout


@pytest.mark.parametrize("options, fragments", [
    (["--methods", "shap"], ["--methods", "shap", "ig", "attention", "mask"]),
    (["--threshold", "1.5"], ["--threshold", "1.5"]),
    (["--methods", "mask", "--pathways", "sideways"], ["--pathways", "sideways", "cross"]),
])
def test_bad_input_exits_2_with_one_message_and_writes_nothing(trained, tmp_path, options, fragments):
    assert_user_error(invoke("sanity", trained, *options, "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()
