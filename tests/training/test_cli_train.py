"""`isoprobe train` and `isoprobe eval` through typer's CliRunner: the run folder, the evaluation files,
accuracy agreeing with the checkpoint, synthetic data generated and regenerated, and exit code 2 with
one message (no traceback) for unknown options and bad checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.errors import ConfigError
from isoprobe.models.sizing import model_config_for
from isoprobe.training.checkpoint import VERSION, load_checkpoint

from tests.conftest import make_synth
from tests.training import test_checkpoint as bad_files
from tests.cli_helpers import invoke, assert_ok, assert_user_error

TINY_CLI = ["--d-model", "16", "--n-layers", "1", "--no-progress", "--device", "cpu"]


def printed_accuracy(output: str) -> float:
    # "... on the test split: accuracy 0.8561, balanced accuracy ..."
    return float(output.split("accuracy ", 1)[1].split(",", 1)[0])


@pytest.fixture(scope="module")
def cli_run(db2_redundant, tmp_path_factory):
    """One `isoprobe train` and one `isoprobe eval --out`, with a window cache of their own."""
    folder = tmp_path_factory.mktemp("cli_run")
    env = {"ISOPROBE_CACHE": str(folder / "cache")}
    run, evaluation = folder / "run", folder / "eval"
    trained = invoke("train", "--data", db2_redundant, "--out", run, "--epochs", 2, *TINY_CLI, env=env)
    evaluated = invoke("eval", run / "checkpoint.pt", "--out", evaluation, env=env)
    return trained, evaluated, run, evaluation


def test_train_writes_the_run_folder(cli_run, db2_redundant):
    trained, _, run, _ = cli_run
    assert_ok(trained)
    assert {p.name for p in run.iterdir()} == {"checkpoint.pt", "last.pt", "metrics.jsonl", "provenance.json"}  # no partial files
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint.model_config.arch == "hierarchical"
    assert checkpoint.model_config.d_model == 16 and checkpoint.model_config.n_layers == 1
    assert checkpoint.data_config.root == str(db2_redundant)
    assert checkpoint.train_config["epochs"] == 2 and checkpoint.history == records
    assert f"test accuracy {checkpoint.metrics['test_accuracy']:.4f}" in trained.stdout
    assert str(run / "checkpoint.pt") in trained.stdout


def test_eval_prints_and_writes_the_checkpoints_accuracy(cli_run):
    _, evaluated, run, evaluation = cli_run
    assert_ok(evaluated)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["accuracy"] == checkpoint.metrics["test_accuracy"]
    assert metrics["balanced_accuracy"] == checkpoint.metrics["test_balanced_accuracy"]
    assert printed_accuracy(evaluated.stdout) == pytest.approx(metrics["accuracy"], abs=5e-5)
    assert metrics["class_names"] == list(checkpoint.class_names)
    assert sum(map(sum, metrics["confusion"])) == metrics["n"] > 0
    per_class = pd.read_csv(evaluation / "per_class.csv")
    assert list(per_class["class"]) == list(checkpoint.class_names) and per_class["n"].sum() == metrics["n"]
    confusion = pd.read_csv(evaluation / "confusion.csv", index_col=0)
    assert confusion.to_numpy().tolist() == metrics["confusion"]
    assert (evaluation / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in checkpoint.class_names:
        assert name in evaluated.stdout  # the confusion table


def test_eval_on_another_split(cli_run, tmp_path):
    _, _, run, _ = cli_run
    result = invoke("eval", run / "checkpoint.pt", "--split", "validation")
    assert_ok(result)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert "validation split" in result.stdout
    assert printed_accuracy(result.stdout) == pytest.approx(checkpoint.metrics["validation_accuracy"], abs=5e-5)
    assert_user_error(invoke("eval", run / "checkpoint.pt", "--split", "holdout"), "--split", "'holdout'", "train, validation, test")


def test_train_without_data_uses_generated_synthetic_data(tmp_path):
    result = invoke("train", "--out", tmp_path / "run", "--epochs", 1, *TINY_CLI)
    assert_ok(result)
    assert "no --data: training on synthetic ninapro-db2 data (redundant)" in result.stdout
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    root = Path(checkpoint.data_config.root)
    assert root.is_relative_to(tmp_path / "cache" / "synth")  # generated in the (per-test) cache
    assert checkpoint.synth is not None and checkpoint.synth["preset"] == "redundant"
    assert checkpoint.synth["layout"] == "ninapro-db2" and checkpoint.synth["gestures"] == 9
    assert len(checkpoint.class_names) == 9 and "rest" not in checkpoint.class_names  # rest windows dropped by default
    evaluated = invoke("eval", tmp_path / "run" / "checkpoint.pt")
    assert_ok(evaluated)
    assert printed_accuracy(evaluated.stdout) == pytest.approx(checkpoint.metrics["test_accuracy"], abs=5e-5)


def test_eval_regenerates_deleted_synthetic_data(tmp_path):
    data = make_synth(tmp_path / "data", gestures=4)
    trained = invoke("train", "--data", data, "--out", tmp_path / "run", "--epochs", 2, *TINY_CLI)
    assert_ok(trained)
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    shutil.rmtree(data)
    shutil.rmtree(tmp_path / "cache")  # no cached windows either: the data must really be rebuilt
    result = invoke("eval", tmp_path / "run" / "checkpoint.pt", "--out", tmp_path / "eval")
    assert_ok(result)
    regenerated = list((tmp_path / "cache" / "synth").iterdir())
    assert len(regenerated) == 1 and regenerated[0].name.startswith("ninapro-db2-redundant-")
    assert not data.exists()
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] == checkpoint.metrics["test_accuracy"]
    assert metrics["n"] == sum(map(sum, metrics["confusion"])) > 0


def test_resume_with_other_options_through_cli(db2_redundant, tmp_path):
    run = tmp_path / "run"
    assert_ok(invoke("train", "--data", db2_redundant, "--out", run, "--epochs", 1, *TINY_CLI))
    before = (run / "last.pt").read_bytes()
    result = invoke("train", "--data", db2_redundant, "--out", run, "--epochs", 1, "--resume", "--d-model", "8",
                    *TINY_CLI[2:])
    assert_user_error(result, str(run / "last.pt"), "other options", "d_model: 16 in last.pt, 8 now")
    assert (run / "last.pt").read_bytes() == before


# ---------------------------------------------------------------------------------------------- unknown names

def test_unknown_architecture_lists_the_valid_ones(tmp_path):
    result = invoke("train", "--out", tmp_path / "run", "--arch", "foo", *TINY_CLI)
    assert_user_error(result, "--arch", "'foo'", "mlp, mmt, hierarchical")
    assert not (tmp_path / "run").exists()


def test_unknown_modality_lists_the_valid_ones(db2_redundant, tmp_path):
    result = invoke("train", "--data", db2_redundant, "--out", tmp_path / "run", "--modalities", "emg,foo", *TINY_CLI)
    assert_user_error(result, "--modalities", "'foo'", "emg, acc")
    assert not (tmp_path / "run").exists()


def test_unknown_hdsemg_modality_lists_the_valid_ones(hd_redundant, tmp_path):
    result = invoke("train", "--data", hd_redundant, "--dataset", "hdsemg65", "--out", tmp_path / "run",
                    "--modalities", "hdsemg,acc", *TINY_CLI)
    assert_user_error(result, "--modalities", "'acc'", "hdsemg, force")


def test_model_config_for_unknown_architecture(db2_data):
    with pytest.raises(ConfigError) as raised:
        model_config_for(db2_data, "foo")
    assert str(raised.value) == "arch: got 'foo'; choose one of mlp, mmt, hierarchical"  # the field; the CLI names its flag


def test_prepare_unknown_modality(db2_redundant):
    with pytest.raises(ConfigError, match="this data set has emg, acc"):
        prepare(DataConfig(root=str(db2_redundant), modalities="emg,foo"), cache_dir=None)


# ---------------------------------------------------------------------------------------------- bad checkpoints

@pytest.mark.parametrize("writer, fragment", [
    pytest.param(writer, fragment, id=writer.__name__.removeprefix("write_")) for writer, fragment in [
        (bad_files.write_text, "not a zip archive"),
        (bad_files.write_plain_dict, "is not an isoprobe checkpoint"),
        (bad_files.write_reducing_object, "will not unpickle"),
        (bad_files.write_stateful_object, "will not unpickle"),
        (bad_files.write_checkpoint_with_object_inside, "will not unpickle"),
        (bad_files.write_newer_version, f"format version {VERSION + 1}"),
        (bad_files.write_truncated, "truncated"),
    ]])
def test_eval_of_a_bad_checkpoint_exits_2_without_traceback(tmp_path, hierarchical_run, writer, fragment):
    path = tmp_path / "BAD.pt"
    writer(path, hierarchical_run)
    bad_files.UNPICKLED.clear()
    result = invoke("eval", path)
    assert_user_error(result, str(path), fragment)
    assert bad_files.UNPICKLED == []
    assert result.stdout == ""


def test_eval_of_weights_that_do_not_fit_exits_2(tmp_path, hierarchical_run):
    payload = torch.load(hierarchical_run.out / "checkpoint.pt", weights_only=True)
    payload["model_config"]["d_model"] = 32
    torch.save(payload, tmp_path / "wide.pt")
    assert_user_error(invoke("eval", tmp_path / "wide.pt"), str(tmp_path / "wide.pt"), "weights do not fit")


def test_eval_of_a_missing_checkpoint_exits_2(tmp_path):
    assert_user_error(invoke("eval", tmp_path / "none.pt"), str(tmp_path / "none.pt"), "checkpoint not found")


def test_eval_on_an_unknown_device_exits_2(cli_run):
    _, _, run, _ = cli_run
    assert_user_error(invoke("eval", run / "checkpoint.pt", "--device", "tpu"), "--device", "'tpu'", "cpu or cuda")


def test_eval_on_cuda_without_a_gpu_exits_2(cli_run, monkeypatch):
    _, _, run, _ = cli_run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_user_error(invoke("eval", run / "checkpoint.pt", "--device", "cuda"), "--device", "no CUDA device")
