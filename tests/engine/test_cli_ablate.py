"""`isoprobe ablate` through typer's CliRunner: the table printed and written (CSV, JSON, Markdown),
numbers agreeing with the library, and exit code 2 with one message and no traceback for every kind
of bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from isoprobe.analysis import load_analysis
from isoprobe.engine.ablate import COLUMNS, AblationConfig, run_ablation
from tests.cli_helpers import invoke, assert_user_error


@pytest.fixture(scope="module")
def ablated(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate_out") / "tables"
    return invoke("ablate", trained, "--layers", "1-2", "--pathway", "cross", "--bootstrap", 50, "--out", out), out


def test_ablate_prints_and_writes_the_table(ablated, trained):
    result, out = ablated
    assert result.exit_code == 0, (result.output, result.exception)
    for fragment in ("L1", "L2", "L1-L2", "cross", "95% CI", "test split", "base accuracy", "ablation.csv", "segments",
                     "Holm", "∅: null by construction"):
        assert fragment in result.stdout, fragment
    assert {p.name for p in out.iterdir()} == {"ablation.csv", "ablation.json", "ablation.md"}
    table = pd.read_csv(out / "ablation.csv")
    assert tuple(table.columns) == COLUMNS
    assert list(table.layers) == ["L1", "L2", "L1-L2"]
    assert (table.pathway == "cross").all() and (table.intervention == "mask").all()
    assert list(table.null_by_construction) == [False, True, False]  # cross in the last layer cannot reach CLS
    document = json.loads((out / "ablation.json").read_text())
    assert len(document["rows"]) == 3 and document["rows"][2]["layers"] == "L1-L2"
    assert document["rows"][1]["p_holm"] is None  # JSON null, not NaN
    assert document["meta"]["pathway"] == "cross" and document["meta"]["bootstrap"] == 50
    assert document["meta"]["checkpoint"] == str(trained)
    markdown = (out / "ablation.md").read_text()
    assert markdown.startswith("|") and "L1-L2" in markdown and "base_accuracy" in markdown


def test_ablate_terminal_table_has_one_line_per_condition(ablated):
    """At the 80 columns of a plain terminal no cell wraps: each row reads on its own line, ending
    with its KL as written to the CSV."""
    result, out = ablated
    table = pd.read_csv(out / "ablation.csv")
    lines = result.stdout.splitlines()
    for row in table.itertuples():
        matching = [line for line in lines if line.split()[:2] == [row.layers, row.pathway]]
        assert len(matching) == 1, (row.layers, lines)
        assert len(matching[0]) <= 80
        cells = matching[0].split()
        assert cells[-1] == f"{row.kl:.3f}" and f"[{row.drop_ci_low:+.3f}," in cells


def test_ablate_numbers_equal_the_library(ablated, trained):
    _, out = ablated
    table = pd.read_csv(out / "ablation.csv")
    analysis = load_analysis(trained)
    expected = run_ablation(analysis.model, analysis.windows, AblationConfig(layers="1-2", pathway="cross", bootstrap=50),
                            reference=analysis.reference).table
    assert table.windows.iloc[0] == len(analysis.windows) and table.segments.iloc[0] == 12
    for column in ("base_accuracy", "accuracy", "drop", "drop_ci_low", "drop_ci_high", "p_value", "p_holm", "kl",
                   "logit_margin", "chance_corrected_drop"):
        np.testing.assert_allclose(table[column], expected[column], atol=1e-9, err_msg=column)


def test_resample_with_draws_and_other_class_donors(trained, tmp_path):
    result = invoke("ablate", trained, "--layers", "1", "--pathway", "cls,cross+relay", "--intervention", "resample",
                    "--donor", "other-class", "--draws", 3, "--bootstrap", 20, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "donor draws" in result.stdout and "cross+relay" in result.stdout
    table = pd.read_csv(tmp_path / "ablation.csv")
    assert list(table.pathway) == ["cls", "cross+relay"] and (table.draws == 3).all()
    assert table.accuracy_draw_sd.notna().all()
    meta = json.loads((tmp_path / "ablation.json").read_text())["meta"]
    assert meta["donor"] == "other-class" and meta["draws"] == 3
    rows = [line for line in result.stdout.splitlines() if line.startswith("L1 ")]
    assert len(rows) == 2 and all(len(line) <= 80 for line in rows), rows


def test_ablate_without_out_only_prints(trained):
    result = invoke("ablate", trained, "--layers", "2", "--pathway", "uni,emg->acc", "--heads", "1", "--bootstrap", 20,
                    "--intervention", "resample")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "written to" not in result.stdout
    assert "uni" in result.stdout and "emg->acc" in result.stdout and "resample" in result.stdout


def test_missing_checkpoint(tmp_path):
    assert_user_error(invoke("ablate", tmp_path / "nope.pt"), "nope.pt", "not found")


def test_mlp_checkpoint_is_refused(trained_mlp):
    assert_user_error(invoke("ablate", trained_mlp), "MLP", "no attention", "mmt or hierarchical")


@pytest.mark.parametrize("options, fragments", [
    (["--layers", "1-9"], ["--layers", "1-9", "1 to 2"]),
    (["--layers", "0"], ["--layers"]),
    (["--layers", "two"], ["--layers", "two"]),
    (["--layers", "2-1"], ["--layers", "'2-1'", "runs backwards", "write 1-2"]),
    (["--layers", "5-1"], ["--layers", "'5-1'", "runs backwards", "write 1-5"]),
    (["--pathway", "cross+emg->foo"], ["--pathway", "foo", "emg, acc"]),
    (["--pathway", "cross+foo"], ["--pathway", "foo", "joined with +"]),
    (["--donor", "same"], ["--donor", "same", "any", "other-class"]),
    (["--draws", "0"], ["--draws", "0"]),
    (["--draws", "2"], ["--draws", "2", "resample"]),
    (["--permutations", "-1"], ["--permutations", "-1"]),
    (["--pathway", "diagonal"], ["--pathway", "diagonal", "uni", "cross", "relay", "readout", "cls", "all", "emg->acc"]),
    (["--pathway", "emg->foo"], ["--pathway", "foo", "emg, acc"]),
    (["--pathway", "cross,emg->foo"], ["--pathway", "foo"]),
    (["--heads", "5"], ["--heads", "5", "0–1"]),
    (["--heads", "first"], ["--heads", "first"]),
    (["--intervention", "zero"], ["--intervention", "zero", "mask", "mean", "resample"]),
    (["--mode", "sequential"], ["--mode", "sequential", "single", "cumulative", "joint"]),
    (["--split", "dev"], ["--split", "dev"]),
    (["--device", "tpu"], ["--device", "tpu"]),
    (["--batch-size", "0"], ["--batch-size", "0", "≥ 1"]),
    (["--batch-size", "-4"], ["--batch-size", "-4"]),
])
def test_bad_options_exit_2_with_one_message(trained, options, fragments):
    assert_user_error(invoke("ablate", trained, *options, "--bootstrap", 10), *fragments)


def test_approx_prints_estimates_agreement_and_writes_files(trained, tmp_path):
    result = invoke("ablate", trained, "--layers", "all", "--pathway", "cross,cls", "--approx", "--check", "2",
                    "--bootstrap", 20, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    for fragment in ("attribution patching", "agreement with the exact grid on 2 conditions", "Spearman", "saturating"):
        assert fragment in result.stdout, fragment
    table = pd.read_csv(tmp_path / "ablation-approx.csv")
    assert list(table.pathway) == ["cross", "cls"] * 3 and table.exact.notna().sum() == 2
    meta = json.loads((tmp_path / "ablation-approx.json").read_text())["meta"]
    assert meta["agreement"]["checked"] == 2 and meta["check"] == 2


def test_approx_of_another_intervention_is_refused(trained, tmp_path):
    assert_user_error(invoke("ablate", trained, "--approx", "--intervention", "mean", "--out", tmp_path / "x"),
                      "--intervention", "mask")
    assert not (tmp_path / "x").exists()


def test_options_are_checked_against_the_model_before_the_data_are_read(trained, tmp_path):
    """A bad grid fails at once, before a missing (or slow to read) data folder is touched."""
    assert_user_error(invoke("ablate", trained, "--layers", "5-1", "--data", tmp_path / "missing"), "--layers", "backwards")
    assert_user_error(invoke("ablate", trained, "--layers", "1", "--data", tmp_path / "missing"), "missing")


def test_negative_bootstrap_is_refused(trained):
    assert_user_error(invoke("ablate", trained, "--bootstrap", -3), "--bootstrap", "-3")
