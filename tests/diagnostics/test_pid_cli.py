"""`isoprobe data pid FOLDER` and `isoprobe pid CHECKPOINT` through typer's CliRunner, on an app built
here: the tables printed and written, the numbers those of the library on the same data, and bad
options refused with one message, exit code 2 and nothing written."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from isoprobe.cli.pid import data_pid_command, pid
from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.data.synth.generate import read_ground_truth
from isoprobe.diagnostics.pid import PIDConfig, data_pid
from tests.cli_helpers import assert_ok, assert_user_error

app = typer.Typer()
app.command("pid")(pid)
app.command("data-pid")(data_pid_command)

FAST = ["--ks", "4,8", "--permutations", "3", "--bootstrap", "0"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def test_data_pid_prints_and_writes_the_librarys_numbers(db2_redundant, tmp_path):
    result = invoke("data-pid", db2_redundant, *FAST, "--out", tmp_path)
    assert_ok(result)
    for fragment in ("PID of the labels on the test split", "K = 4 codes per modality", "K = 8 codes per modality",
                     "redundancy", "unique_emg", "unique_acc", "synergy", "floor 95%", "planted", "2.585"):
        assert fragment in result.stdout, fragment
    table = pd.read_csv(tmp_path / "pid.csv")
    assert len(table) == 10 and (tmp_path / "pid.json").is_file() and (tmp_path / "pid.md").is_file()
    data = prepare(DataConfig(root=str(db2_redundant)), cache_dir=None)
    library = data_pid(data.splits["test"], data.splits["train"], PIDConfig(ks=(4, 8), permutations=3, bootstrap=0),
                       read_ground_truth(db2_redundant)).table
    np.testing.assert_allclose(table.bits, library.bits, atol=1e-9)
    np.testing.assert_allclose(table.expected_bits, [math.log2(6), 0, 0, 0, math.log2(6)] * 2, atol=1e-5)


def test_pid_of_a_checkpoint(trained, tmp_path):
    result = invoke("pid", trained, "--ks", "4", "--permutations", "2", "--bootstrap", "4", "--out", tmp_path)
    assert_ok(result)
    assert "PID of the predictions on the test split" in result.stdout and "K = 4 codes per modality" in result.stdout
    table = pd.read_csv(tmp_path / "pid.csv")
    assert set(table.target) == {"predictions"} and list(table.k) == [4] * 5
    assert table.bits.iloc[:4].sum() == pytest.approx(table.bits.iloc[4], abs=1e-5)


@pytest.mark.parametrize("options, fragments", [(["--ks", "1,4"], ["--ks", "1,4"]),
                                                (["--target", "logits"], ["--target", "logits"]),
                                                (["--components", "0"], ["--components"])])
def test_pid_refuses_bad_options(trained, tmp_path, options, fragments):
    assert_user_error(invoke("pid", trained, *options, "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


def test_data_pid_refuses_one_modality(db2_redundant, tmp_path):
    result = invoke("data-pid", db2_redundant, "--modalities", "emg", *FAST, "--out", tmp_path / "out")
    assert_user_error(result, "--modalities", "exactly two")
    assert not (tmp_path / "out").exists()
