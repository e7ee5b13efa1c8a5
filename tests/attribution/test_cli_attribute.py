"""`isoprobe attribute` through typer's CliRunner: tables printed and written, numbers equal to the
library's, and exit code 2 with one message, nothing written, for every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from isoprobe.analysis import load_analysis
from isoprobe.attribution.common import COLUMNS
from isoprobe.attribution.ig import IGConfig, attribute
from tests.cli_helpers import assert_user_error, invoke


def test_ig_prints_and_writes_the_table(trained, tmp_path):
    result = invoke("attribute", trained, "--method", "ig", "--steps", 4, "--bootstrap", 50, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    for fragment in ("ig on the test split", "segments", "emg", "acc", "share", "completeness", "attribution.csv"):
        assert fragment in result.stdout, fragment
    table = pd.read_csv(tmp_path / "attribution.csv")
    assert tuple(table.columns[: len(COLUMNS)]) == COLUMNS
    analysis = load_analysis(trained)
    expected = attribute(analysis.model, analysis.windows, IGConfig(steps=4, bootstrap=50), reference=analysis.reference).table
    np.testing.assert_allclose(table.estimate, expected.estimate, rtol=1e-6, atol=1e-9)
    assert set(table[table.quantity == "share"].part) == {"emg", "acc"}
    meta = json.loads((tmp_path / "attribution.json").read_text())["meta"]
    assert meta["method"] == "ig" and meta["steps"] == 4
    # captum's infidelity and max-sensitivity of the same attributions, printed and written beside them
    assert "ig metrics: infidelity" in result.stdout and "sensitivity_max" in result.stdout
    metrics = pd.read_csv(tmp_path / "ig-metrics.csv")
    assert set(metrics.metric) == {"infidelity", "sensitivity_max"} and np.isfinite(metrics.estimate).all()


def test_attention_per_layer_and_pathway(trained, tmp_path):
    result = invoke("attribute", trained, "--method", "attention", "--steps", 3, "--layers", "2", "--bootstrap", 20,
                    "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    table = pd.read_csv(tmp_path / "attribution.csv")
    assert set(table.site) == {"L2", "all layers"}
    assert {"cross", "relay", "readout", "self", "uni:emg", "uni:acc"} <= set(table.part)
    assert "readout" in result.stdout


@pytest.mark.parametrize("options, fragments", [
    (["--method", "shap"], ["--method", "shap", "ig", "layer-ig", "attention"]),
    (["--baseline", "median"], ["--baseline", "median", "zero", "mean"]),
    (["--method", "attention", "--baseline", "zero"], ["--baseline", "no baseline"]),
    (["--method", "attention", "--layers", "4"], ["--layers", "4"]),
    (["--method", "attention", "--layers", "2-1"], ["--layers", "backwards"]),
    (["--method", "ig", "--layers", "1"], ["--layers", "attention"]),
    (["--target", "best"], ["--target", "best", "true", "predicted"]),
    (["--steps", "0"], ["--steps", "0"]),
    (["--split", "dev"], ["--split", "dev"]),
])
def test_bad_options_exit_2_and_write_nothing(trained, tmp_path, options, fragments):
    assert_user_error(invoke("attribute", trained, *options, "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


def test_attention_on_the_mlp_is_refused(trained_mlp, tmp_path):
    assert_user_error(invoke("attribute", trained_mlp, "--method", "attention", "--out", tmp_path / "out"),
                      "MLP", "no attention")
    assert not (tmp_path / "out").exists()


def test_a_method_registered_here_joins_the_attribute_command(trained, tmp_path):
    """One module (tests/attribution/toy_attribution.py) and one registration: no other file names it."""
    from isoprobe.attribution.methods import ATTRIBUTIONS, AttributionMethod, register_attribution

    register_attribution(AttributionMethod("toy", "one half each", "tests.attribution.toy_attribution", "ToyConfig"))
    try:
        refused = invoke("attribute", trained, "--method", "nope", "--out", tmp_path / "refused")
        assert_user_error(refused, "--method", "toy")
        assert_user_error(invoke("attribute", trained, "--method", "toy", "--layers", "1", "--out", tmp_path / "bad"),
                          "--layers", "toy takes no layers", "attention")
        result = invoke("attribute", trained, "--method", "toy", "--steps", 2, "--out", tmp_path)
        assert result.exit_code == 0, (result.output, result.exception)
        assert "toy on the test split" in result.stdout
        table = pd.read_csv(tmp_path / "attribution.csv")
        assert set(table.method) == {"toy"} and (table.estimate == 0.5).all()
        assert json.loads((tmp_path / "attribution.json").read_text())["meta"]["steps"] == 2
    finally:
        del ATTRIBUTIONS["toy"]
