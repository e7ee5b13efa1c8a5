"""The trainer: an interrupted and resumed run equals an uninterrupted one bit for bit on CPU, runs
repeat exactly from a seed, resuming with other options is refused clearly, every architecture trains
and round-trips through its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.errors import ConfigError, DataFormatError
from isoprobe.training.checkpoint import load_checkpoint
from isoprobe.training.metrics import predict_logits
from isoprobe.training.run import fit
from isoprobe.training.trainer import TrainConfig, train

from tests.training.conftest import RUN_CONFIG, TINY, state_equal, tiny_model, without_timing


def test_resume_after_interruption_equals_uninterrupted_run(db2_data, hierarchical_run, tmp_path):
    assert hierarchical_run.model.config.dropout > 0  # dropout draws random numbers: their state must resume too
    interrupted = train(tiny_model(db2_data), db2_data, RUN_CONFIG, tmp_path, progress=False, stop_after=2)
    # what a kill after epoch 2 leaves behind: last.pt and two epochs of metrics, no final checkpoint
    assert not (tmp_path / "checkpoint.pt").exists()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert len(interrupted.history) == 2 and interrupted.test == {}
    assert load_checkpoint(tmp_path / "last.pt").extra["trainer"]["epoch"] == 2

    # a new process would build the model from scratch, with whatever initial weights: resume must not care
    resumed = train(tiny_model(db2_data, seed=99), db2_data, RUN_CONFIG, tmp_path, resume=True, progress=False)
    uninterrupted = load_checkpoint(hierarchical_run.out / "checkpoint.pt")
    after_resume = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state_equal(after_resume.state_dict, uninterrupted.state_dict)
    assert without_timing(after_resume.history) == without_timing(uninterrupted.history)
    assert without_timing(resumed.history) == without_timing(hierarchical_run.result.history)
    assert after_resume.metrics == uninterrupted.metrics
    assert resumed.test == hierarchical_run.result.test
    # the final weights too (not only the best epoch's), from the two last.pt files
    last = load_checkpoint(tmp_path / "last.pt").extra["trainer"]
    reference = load_checkpoint(hierarchical_run.out / "last.pt").extra["trainer"]
    assert state_equal(last["model"], reference["model"])
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]


def test_resume_restores_random_state_not_only_weights(db2_data, hierarchical_run, tmp_path):
    """Control for the test above: continuing from the epoch-2 weights with a fresh random state
    (what a resume that ignored RNG state would do) ends elsewhere, so the comparison can fail."""
    train(tiny_model(db2_data), db2_data, RUN_CONFIG, tmp_path / "a", progress=False, stop_after=2)
    path = tmp_path / "a" / "last.pt"
    payload = torch.load(path, weights_only=True)
    payload["extra"]["trainer"]["torch_rng"] = torch.manual_seed(12345).get_state()
    torch.save(payload, path)
    train(tiny_model(db2_data), db2_data, RUN_CONFIG, tmp_path / "a", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "a" / "last.pt").extra["trainer"]["model"]
    b = load_checkpoint(hierarchical_run.out / "last.pt").extra["trainer"]["model"]  # the uninterrupted run
    assert not state_equal(a, b)


@pytest.mark.parametrize("change, fragment", [
    (dict(train=dict(lr=5e-4)), "training lr: 0.001 in last.pt, 0.0005 now"),
    (dict(train=dict(epochs=6)), "training epochs: 4 in last.pt, 6 now"),
    (dict(model=dict(d_model=8)), "model d_model: 16 in last.pt, 8 now"),
    (dict(arch="mmt"), "model arch: 'hierarchical' in last.pt, 'mmt' now"),
    (dict(data=dict(modalities="acc,emg")), "data modalities: 'emg,acc' in last.pt, 'acc,emg' now"),
], ids=["lr", "epochs", "d_model", "arch", "modalities"])
def test_resume_with_other_options_is_refused(db2_data, db2_redundant, tmp_path, change, fragment):
    train(tiny_model(db2_data), db2_data, RUN_CONFIG, tmp_path, progress=False, stop_after=1)
    before = (tmp_path / "last.pt").read_bytes()
    config = TrainConfig(**{**RUN_CONFIG.__dict__, **change.get("train", {})})
    data = prepare(DataConfig(root=str(db2_redundant), **change["data"]), cache_dir=None) if "data" in change else db2_data
    model = tiny_model(data, change.get("arch", "hierarchical"), **change.get("model", {}))
    with pytest.raises(DataFormatError) as raised:
        train(model, data, config, tmp_path, resume=True, progress=False)
    message = str(raised.value)
    assert message.startswith(str(tmp_path / "last.pt"))
    assert "other options" in message and fragment in message, message
    assert (tmp_path / "last.pt").read_bytes() == before  # nothing was overwritten
    assert not (tmp_path / "checkpoint.pt").exists()


def test_resume_from_a_moved_data_folder_is_allowed(db2_data, db2_redundant, tmp_path):
    import shutil

    train(tiny_model(db2_data), db2_data, RUN_CONFIG, tmp_path / "run", progress=False, stop_after=3)
    moved = shutil.copytree(db2_redundant, tmp_path / "moved")
    data = prepare(DataConfig(root=str(moved)), cache_dir=None)
    result = train(tiny_model(data), data, RUN_CONFIG, tmp_path / "run", resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]


def test_resume_from_a_final_checkpoint_is_refused(db2_data, hierarchical_run, tmp_path):
    import shutil

    shutil.copy(hierarchical_run.out / "checkpoint.pt", tmp_path / "last.pt")
    with pytest.raises(DataFormatError, match="no training state to resume from"):
        train(tiny_model(db2_data), db2_data, RUN_CONFIG, tmp_path, resume=True, progress=False)


def test_same_seed_repeats_exactly_other_seed_differs(db2_redundant, tmp_path):
    """Through run.fit, as `isoprobe train` calls it: the seed decides initialisation, shuffling and dropout,
    whatever the global random state was before (two runs in one process)."""
    data_config = DataConfig(root=str(db2_redundant))
    options = dict(TINY)

    def weights(seed: int, folder: str) -> dict[str, torch.Tensor]:
        torch.manual_seed(len(folder))  # a different global random state before each run
        fit(data_config, "hierarchical", TrainConfig(epochs=2, seed=seed, device="cpu"), tmp_path / folder,
            model_options=options, progress=False)
        checkpoint = load_checkpoint(tmp_path / folder / "checkpoint.pt")
        return {**checkpoint.state_dict, **{f"last.{k}": v for k, v in checkpoint_last(tmp_path / folder).items()}}

    first, again, other = weights(3, "a"), weights(3, "bb"), weights(4, "ccc")
    assert state_equal(first, again)
    assert not state_equal(first, other)
    assert without_timing(load_checkpoint(tmp_path / "a" / "checkpoint.pt").history) == \
        without_timing(load_checkpoint(tmp_path / "bb" / "checkpoint.pt").history)


def checkpoint_last(folder) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder / "last.pt").extra["trainer"]["model"]


@pytest.mark.parametrize("arch", ["mlp", "mmt"])
def test_single_head_architectures_train_and_round_trip(db2_data, tmp_path, arch):
    model = tiny_model(db2_data, arch)
    result = train(model, db2_data, TrainConfig(epochs=2, device="cpu"), tmp_path, progress=False)
    assert all("loss_avg" not in r and r["loss"] == r["loss_main"] for r in result.history)
    rebuilt = load_checkpoint(tmp_path / "checkpoint.pt").build_model()
    assert rebuilt.config.arch == arch
    names = tuple(g.name for g in model.config.groups)
    test = db2_data.splits["test"]
    assert torch.equal(predict_logits(rebuilt, test, names), predict_logits(model, test, names))
    assert 0.0 <= result.test["accuracy"] <= 1.0 and result.test["n"] == len(test)


def test_hdsemg_hierarchical_trains_and_round_trips(hd_redundant, tmp_path):
    data = prepare(DataConfig(root=str(hd_redundant), dataset="hdsemg65", modalities="hdsemg[::8],force"), cache_dir=None)
    config = TrainConfig(epochs=2, device="cpu")
    train(tiny_model(data), data, config, tmp_path, progress=False, stop_after=1)
    # resuming checks that model and data configuration (electrode grids included) survive last.pt unchanged
    model = tiny_model(data, seed=1)
    result = train(model, data, config, tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2]
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint.model_config.groups[0].grids  # the HD-sEMG group keeps its grids
    assert checkpoint.data_config.dataset == "hdsemg65" and checkpoint.synth["layout"] == "hdsemg65"
    assert checkpoint.class_names == data.class_names
    names = tuple(g.name for g in model.config.groups)
    assert names == ("hdsemg[::8]", "force")
    test = data.splits["test"]
    assert torch.equal(predict_logits(checkpoint.build_model(), test, names), predict_logits(model, test, names))
    assert checkpoint.metrics["test_accuracy"] == result.test["accuracy"]


def test_training_learns_the_redundant_data(hierarchical_run):
    """Both modalities separate every class: four tiny epochs already beat chance by far."""
    chance = 1 / hierarchical_run.data.n_classes
    history = hierarchical_run.result.history
    assert history[-1]["loss_main"] < history[0]["loss_main"]
    assert hierarchical_run.result.test["accuracy"] > 2 * chance


def test_best_epoch_is_the_first_with_the_best_validation_accuracy(hierarchical_run):
    history = hierarchical_run.result.history
    best = max(r["val_accuracy"] for r in history)
    first = next(r["epoch"] for r in history if r["val_accuracy"] == best)
    assert hierarchical_run.result.best_epoch == first
    checkpoint = load_checkpoint(hierarchical_run.out / "checkpoint.pt")
    assert checkpoint.metrics["best_epoch"] == first and checkpoint.metrics["validation_accuracy"] == best


@pytest.mark.parametrize("field, value, option", [("epochs", 0, "epochs"), ("batch_size", 0, "batch_size"),
                                                  ("device", "tpu", "device"), ("head_switch_fraction", 1.5, "head_switch_fraction")])
def test_train_config_rejects_bad_values(field, value, option):
    with pytest.raises(ConfigError) as raised:
        TrainConfig(**{field: value})
    assert str(raised.value).startswith(f"{option}: got {value!r}")
