"""Checkpoints (DESIGN §6): a faithful round trip, plain tensors and values only, and a clear
DataFormatError naming the file, never unpickling, for anything that is not a readable checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from isoprobe.errors import DataFormatError
from isoprobe.training.checkpoint import FORMAT, VERSION, load_checkpoint
from isoprobe.training.metrics import predict_logits

from tests.training.conftest import state_equal

# Side effects of unpickling, recorded here: any entry means isoprobe ran code from a checkpoint file.
UNPICKLED: list[str] = []


def _record(what: str) -> str:
    UNPICKLED.append(what)
    return what


class Reducing:
    """Unpickling this calls `_record` (what a malicious pickle would do with os.system)."""

    def __reduce__(self):
        return (_record, ("__reduce__",))


class Stateful:
    """Unpickling this calls __setstate__."""

    def __init__(self):
        self.payload = 1

    def __setstate__(self, state):
        UNPICKLED.append("__setstate__")
        self.__dict__.update(state)


@pytest.fixture(autouse=True)
def _clear_unpickled():
    UNPICKLED.clear()
    yield
    UNPICKLED.clear()


def group_names(model) -> tuple[str, ...]:
    return tuple(g.name for g in model.config.groups)


# ---------------------------------------------------------------------------------------------- round trip

def test_round_trip_gives_identical_logits(hierarchical_run):
    checkpoint = load_checkpoint(hierarchical_run.out / "checkpoint.pt")
    rebuilt = checkpoint.build_model()
    assert not rebuilt.training
    assert rebuilt.config == hierarchical_run.model.config
    test = hierarchical_run.data.splits["test"]
    names = group_names(rebuilt)
    expected = predict_logits(hierarchical_run.model, test, names)
    got = predict_logits(rebuilt, test, names)
    assert got.shape == (len(test), hierarchical_run.data.n_classes)
    assert torch.equal(got, expected)
    # the trained model was left holding the best-validation weights, and those are what was saved
    assert state_equal(checkpoint.state_dict, {k: v.cpu() for k, v in hierarchical_run.model.state_dict().items()})
    accuracy = float((got.argmax(-1).numpy() == test.y).mean())
    assert checkpoint.metrics["test_accuracy"] == pytest.approx(accuracy)


def test_checkpoint_loads_with_plain_weights_only_torch_load(hierarchical_run):
    payload = torch.load(hierarchical_run.out / "checkpoint.pt", weights_only=True)
    data, model = hierarchical_run.data, hierarchical_run.model
    assert payload["format"] == FORMAT == "isoprobe-checkpoint"
    assert payload["version"] == VERSION
    assert payload["model_config"] == model.config.to_dict()
    assert payload["model_config"]["arch"] == "hierarchical"
    assert payload["data_config"] == data.config.to_dict()
    assert set(payload["zscore"]) and payload["zscore"] == data.zscore.to_dict()
    assert payload["class_names"] == list(data.class_names)
    assert payload["class_labels"] == list(data.class_labels)
    assert payload["synth"] == data.synth and payload["synth"]["preset"] == "redundant"
    assert [r["epoch"] for r in payload["history"]] == [1, 2, 3, 4]
    assert payload["history"] == hierarchical_run.result.history
    assert payload["train_config"]["epochs"] == 4
    assert payload["metrics"]["best_epoch"] == hierarchical_run.result.best_epoch
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())
    assert payload["state_dict"].keys() == model.state_dict().keys()
    # last.pt carries the resumable training state, and is just as plain
    last = torch.load(hierarchical_run.out / "last.pt", weights_only=True)
    assert last["format"] == FORMAT and last["extra"]["trainer"]["epoch"] == 4


def test_loaded_normalisation_matches_training(hierarchical_run):
    checkpoint = load_checkpoint(hierarchical_run.out / "checkpoint.pt")
    for name, mean in hierarchical_run.data.zscore.mean.items():
        np.testing.assert_array_equal(np.asarray(checkpoint.zscore.mean[name]), np.asarray(mean))
        np.testing.assert_array_equal(np.asarray(checkpoint.zscore.std[name]), np.asarray(hierarchical_run.data.zscore.std[name]))
    assert checkpoint.data_config == hierarchical_run.data.config
    assert checkpoint.class_names == hierarchical_run.data.class_names


# ---------------------------------------------------------------------------------------------- bad files

def _payload(run) -> dict:
    return torch.load(run.out / "checkpoint.pt", weights_only=True)


def write_text(path: Path, run) -> str:
    path.write_text("model weights, honest\n")
    return "not a zip archive"


def write_plain_dict(path: Path, run) -> str:
    torch.save({"weights": torch.zeros(3)}, path)
    return "not an isoprobe checkpoint"


def write_other_format(path: Path, run) -> str:
    payload = _payload(run)
    payload["format"] = "lightning-checkpoint"
    torch.save(payload, path)
    return "'lightning-checkpoint'"


def write_plain_tensor(path: Path, run) -> str:
    torch.save(torch.zeros(3), path)
    return "not an isoprobe checkpoint"


def write_reducing_object(path: Path, run) -> str:
    torch.save(Reducing(), path)
    return "will not unpickle (it refers to tests.training.test_checkpoint._record)"


def write_stateful_object(path: Path, run) -> str:
    torch.save(Stateful(), path)
    return "will not unpickle (it refers to tests.training.test_checkpoint.Stateful)"


def write_checkpoint_with_object_inside(path: Path, run) -> str:
    payload = _payload(run)
    payload["extra"] = {"note": Reducing(), "other": Stateful()}
    torch.save(payload, path)
    return "will not unpickle (it refers to tests.training.test_checkpoint."


def write_newer_version(path: Path, run) -> str:
    payload = _payload(run)
    payload["version"] = VERSION + 1
    torch.save(payload, path)
    return "newer than this isoprobe reads"


def write_truncated(path: Path, run) -> str:
    content = (run.out / "checkpoint.pt").read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return "truncated"


def write_empty(path: Path, run) -> str:
    path.write_bytes(b"")
    return "truncated"


def write_missing_field(path: Path, run) -> str:
    payload = _payload(run)
    del payload["zscore"]
    torch.save(payload, path)
    return "'zscore'"


BAD_FILES = [write_text, write_plain_dict, write_other_format, write_plain_tensor, write_reducing_object,
             write_stateful_object, write_checkpoint_with_object_inside, write_newer_version, write_truncated,
             write_empty, write_missing_field]


def test_malicious_pickles_really_run_code_when_unpickled(tmp_path, hierarchical_run):
    """Control: the bad files above would execute code under a plain pickle load."""
    for writer in (write_reducing_object, write_stateful_object):
        writer(tmp_path / "bad.pt", hierarchical_run)
        torch.load(tmp_path / "bad.pt", weights_only=False)
    assert UNPICKLED == ["__reduce__", "__setstate__"]


@pytest.mark.parametrize("writer", BAD_FILES, ids=lambda w: w.__name__.removeprefix("write_"))
def test_bad_file_gives_one_clear_error_and_unpickles_nothing(tmp_path, hierarchical_run, writer):
    path = tmp_path / "bad.pt"
    fragment = writer(path, hierarchical_run)
    with pytest.raises(DataFormatError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message
    assert "\n" not in message and "\x1b" not in message
    assert "weights_only" not in message  # no advice to load the file unsafely
    # no chained exception behind it: one error, not a traceback of torch/pickle internals
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__
    assert UNPICKLED == []


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataFormatError, match="checkpoint not found") as raised:
        load_checkpoint(tmp_path / "nowhere.pt")
    assert raised.value.path == tmp_path / "nowhere.pt"


def _edit_state_dict_shape(payload: dict) -> str:
    name = "head_cls.weight"
    payload["state_dict"][name] = torch.zeros(payload["state_dict"][name].shape[0] + 1, payload["state_dict"][name].shape[1])
    return "head_cls.weight (shape"


def _edit_d_model(payload: dict) -> str:
    payload["model_config"]["d_model"] = 2 * payload["model_config"]["d_model"]
    return "config expects"


def _drop_weight(payload: dict) -> str:
    del payload["state_dict"]["head_avg.bias"]
    return "missing head_avg.bias"


def _extra_weight(payload: dict) -> str:
    payload["state_dict"]["blocks.7.attn.qkv.weight"] = torch.zeros(3, 3)
    return "blocks.7.attn.qkv.weight"


def _other_arch(payload: dict) -> str:
    payload["model_config"]["arch"] = "mmt"
    payload["model_config"]["n_layers"] = 1
    del payload["model_config"]["n_encoder_layers"]
    return "weights do not fit"


@pytest.mark.parametrize("edit", [_edit_state_dict_shape, _edit_d_model, _drop_weight, _extra_weight, _other_arch],
                         ids=lambda e: e.__name__.strip("_"))
def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, hierarchical_run, edit):
    payload = _payload(hierarchical_run)
    fragment = edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    checkpoint = load_checkpoint(path)  # the file itself reads; building the model checks the fit
    with pytest.raises(DataFormatError) as raised:
        checkpoint.build_model()
    message = str(raised.value)
    assert message.startswith(str(path)), message
    assert "weights do not fit the model configuration" in message
    assert fragment in message, message


def test_unreadable_model_config_is_a_format_error(tmp_path, hierarchical_run):
    payload = _payload(hierarchical_run)
    payload["model_config"]["arch"] = "resnet"
    torch.save(payload, tmp_path / "arch.pt")
    with pytest.raises(DataFormatError, match="resnet") as raised:
        load_checkpoint(tmp_path / "arch.pt")
    assert str(raised.value).startswith(str(tmp_path / "arch.pt"))
    assert "hierarchical" in str(raised.value)  # the valid architectures are listed


def test_copied_checkpoint_still_loads(tmp_path, hierarchical_run):
    """Nothing in the file ties it to its folder: a copy elsewhere rebuilds the same model."""
    shutil.copy(hierarchical_run.out / "checkpoint.pt", tmp_path / "copy.pt")
    checkpoint = load_checkpoint(tmp_path / "copy.pt")
    assert checkpoint.extra["path"] == str(tmp_path / "copy.pt")
    assert state_equal(checkpoint.build_model().state_dict(), load_checkpoint(hierarchical_run.out / "checkpoint.pt").state_dict)
