"""Model configuration files (models/*.toml): every file loads and builds its model, the model cards'
parameter counts are the built models' counts, bad files are refused naming the file and the key, and
`isoprobe train --model-config` takes the file's values with explicit options overriding them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from isoprobe.errors import ConfigError, DataFormatError
from isoprobe.models import build_model
from isoprobe.training.runspec import ModelSpec, default_model_spec, load_model_config
from isoprobe.models.sizing import model_config_for
from isoprobe.training.checkpoint import load_checkpoint

from tests.cli_helpers import assert_ok, assert_user_error, invoke

MODELS = Path(__file__).resolve().parents[2] / "models"
FILES = sorted(MODELS.glob("*.toml"))
EXPECTED = {f"{arch}-{data}.toml" for arch in ("mlp", "mmt", "hierarchical") for data in ("db2", "hdsemg")}


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def card_parameters(name: str) -> int:
    """The parameter count written in the model card of `name` (its `## name` section of models/README.md)."""
    text = (MODELS / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
    return int(re.search(r"\*\*Parameters: ([\d,]+)\*\*", section).group(1).replace(",", ""))


def write(tmp_path: Path, text: str, name: str = "model.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
dataset = "ninapro-db2"
modalities = "emg,acc"
[model]
arch = "hierarchical"
d_model = 16
n_heads = 2
d_mlp = 32
n_layers = 1
[training]
epochs = 2
head_switch = 0.5
"""


# --- the files in models/ ---------------------------------------------------------------------------


def test_one_file_per_architecture_and_data_set():
    assert {p.name for p in FILES} == EXPECTED


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_loads_and_builds_its_model(path):
    spec = load_model_config(path)
    arch, data = path.stem.split("-")
    assert spec.arch == arch and spec.dataset == {"db2": "ninapro-db2", "hdsemg": "hdsemg65"}[data]
    assert spec.resolved_modalities == {"db2": "emg,acc", "hdsemg": "hdsemg,force"}[data]
    config = spec.reference_config()
    model = build_model(config).eval()
    windows = [torch.zeros(2, g.window, len(g.channels)) for g in config.groups]
    with torch.no_grad():
        logits = model(*windows)
    assert logits.shape == (2, config.n_classes)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_model_card_states_the_true_parameter_count(path):
    model = build_model(load_model_config(path).reference_config())
    assert card_parameters(path.name) == n_parameters(model)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_files_hold_the_papers_numbers(path):
    """DESIGN §1: 2000 epochs with λ reaching 1 at epoch 750, a 5-layer shared stage; §2.4: 200 ms windows."""
    spec = load_model_config(path)
    assert spec.training.epochs == 2000 and spec.training.head_switch_fraction == 0.375
    assert spec.window.window_ms == 200.0
    if spec.arch == "hierarchical":
        assert spec.reference_config().n_layers == 5


@pytest.mark.parametrize("dataset, modalities", [("ninapro-db2", "emg,acc"), ("hdsemg65", "hdsemg,force")])
def test_reference_config_sizes_models_as_the_data_pipeline_does(prepared, dataset, modalities):
    """The data-free sizing (channel counts of the real recordings) against patchifying prepared windows:
    the synthetic files hold the real channel counts, so every group must come out the same."""
    name = {"ninapro-db2": "hierarchical-db2.toml", "hdsemg65": "hierarchical-hdsemg.toml"}[dataset]
    spec = load_model_config(MODELS / name)
    data = prepared(modalities, dataset)
    assert spec.reference_config().groups == model_config_for(data, spec.arch, spec.token, **spec.model_options()).groups


# --- ModelSpec -------------------------------------------------------------------------------------


def test_round_trip_through_plain_values(tmp_path):
    spec = load_model_config(MODELS / "mlp-hdsemg.toml")
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # lists for tuples
    data = spec.to_dict()
    data["model"]["hidden"] = [1]
    data["training"]["epochs"] = 1
    assert spec.model_options()["hidden"] == (256, 128) and spec.training.epochs == 2000  # a copy, not live state


def test_what_fit_takes(tmp_path):
    spec = load_model_config(write(tmp_path, GOOD))
    train = spec.train_config(seed=3, device="cpu")
    assert (train.epochs, train.head_switch_fraction, train.seed, train.device) == (2, 0.5, 3, "cpu")
    assert spec.model_options() == {"d_mlp": 32, "d_model": 16, "n_heads": 2, "n_layers": 1}
    data = spec.data_config(tmp_path, subject=4)
    assert (data.dataset, data.subject, data.modalities, data.window) == ("ninapro-db2", 4, "emg,acc", spec.window)
    with pytest.raises(TypeError, match="epochs"):
        spec.train_config(epochs=5)  # the schedule comes from the spec; only run fields are set here


def test_overrides_replace_keys_and_keep_the_rest(tmp_path):
    spec = load_model_config(write(tmp_path, GOOD))
    changed = spec.with_overrides(epochs=7, d_model=32, patch="channel", window_ms=100.0)
    assert changed.training.epochs == 7 and changed.training.head_switch_fraction == 0.5
    assert changed.model_options()["d_model"] == 32 and changed.model_options()["n_heads"] == 2
    assert changed.token.patch == "channel" and changed.window.window_ms == 100.0
    assert changed.source == spec.source


def test_override_errors_name_the_key(tmp_path):
    spec = load_model_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError) as caught:
        spec.with_overrides(epochs=0)
    assert caught.value.option == "epochs"  # the CLI turns this into --epochs
    with pytest.raises(ConfigError, match="not a model configuration key"):
        spec.with_overrides(epoch=3)
    with pytest.raises(ConfigError, match=r"\[model\] n_layers, which mlp does not have") as caught:
        spec.with_overrides(arch="mlp")
    assert caught.value.option == "arch"


def test_default_spec_is_every_class_default():
    spec = default_model_spec("hdsemg65", "mmt")
    assert spec.model == () and spec.modalities is None and spec.resolved_modalities == "hdsemg,force"
    assert spec.reference_config().n_layers == 3


# --- bad files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, where, fragments", [
    (GOOD.replace("d_model = 16", "d_modle = 16"), "[model] d_modle", ("valid keys", "d_model", "n_encoder_layers")),
    (GOOD.replace("d_model = 16", "features = 'classic'"), "[model] features", ("for hierarchical",)),
    (GOOD + "[optimizer]\nbeta = 0.9\n", "optimizer", ("unknown key", "[training]")),
    (GOOD.replace("dataset =", "dataset_name = 'x'\ndataset ="), "dataset_name", ("unknown key",)),
    (GOOD.replace("epochs = 2", "seed = 2"), "[training] seed", ("valid keys", "head_switch")),
    (GOOD.replace("d_model = 16", 'd_model = "16"'), "[model] d_model", ("must be an integer",)),
    (GOOD.replace("n_heads = 2", "n_heads = 3"), "[model] n_heads", ("must divide d_model",)),
    (GOOD.replace("epochs = 2", "epochs = 0"), "[training] epochs", ("at least one epoch",)),
    (GOOD.replace("head_switch = 0.5", "head_switch = 1.5"), "[training] head_switch", ("[0, 1]",)),
    (GOOD + "[tokens]\npatch_ms = 30.0\n", "[tokens] patch_ms", ("whole patches",)),
    (GOOD + "[tokens]\npatch = 'grid'\n", "[tokens] patch", ("no electrode grid",)),
    (GOOD + "[tokens]\ntile = [4]\n", "[tokens] tile", ("a list of 2 integers",)),
    (GOOD + "[windows]\nkeep_rest = 1\n", "[windows] keep_rest", ("true or false",)),
    (GOOD.replace('"emg,acc"', '"emg,gyro"'), "modalities", ("gyro",)),
    (GOOD.replace('"hierarchical"', '"transformer"'), "[model] arch", ("mlp, mmt, hierarchical",)),
    (GOOD.replace('arch = "hierarchical"', ""), "[model] arch", ("required",)),
    (GOOD.replace('dataset = "ninapro-db2"', ""), "dataset", ("required",)),
    (GOOD.replace('"ninapro-db2"', '"db3"'), "dataset", ("hdsemg65",)),
    ("dataset = 'ninapro-db2'\nmodel = 3\n", "model", ("table",)),
])
def test_bad_file_is_refused_naming_file_and_key(tmp_path, text, where, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_model_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {where}:"), message
    for fragment in fragments:
        assert fragment in message, message


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        load_model_config(tmp_path / "missing.toml")
    with pytest.raises(DataFormatError, match=r"is not valid TOML \(.*line 2"):
        load_model_config(write(tmp_path, "dataset = 'ninapro-db2'\n[model\n"))


def test_negative_control_a_good_file_loads(tmp_path):
    """The bad-file cases differ from this file by one line each: each refusal is that line's doing."""
    spec = load_model_config(write(tmp_path, GOOD))
    assert spec.arch == "hierarchical" and spec.reference_config().d_model == 16


# --- isoprobe train --model-config -------------------------------------------------------------------

RUN = ["--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def config_runs(db2_redundant, tmp_path_factory):
    """Two runs from one file: the file's values, then with --epochs and --d-model given explicitly."""
    folder = tmp_path_factory.mktemp("model_config")
    path = write(folder, GOOD + "[windows]\nstride_ms = 150.0\n")
    env = {"ISOPROBE_CACHE": str(folder / "cache")}
    plain = invoke("train", "--model-config", path, "--data", db2_redundant, "--out", folder / "plain", *RUN, env=env)
    overridden = invoke("train", "--model-config", path, "--data", db2_redundant, "--out", folder / "overridden",
                        "--epochs", 1, "--d-model", 8, *RUN, env=env)
    return plain, overridden, folder


def test_train_takes_the_files_values(config_runs):
    plain, _, folder = config_runs
    assert_ok(plain)
    checkpoint = load_checkpoint(folder / "plain" / "checkpoint.pt")
    assert checkpoint.train_config["epochs"] == 2 and len(checkpoint.history) == 2
    assert checkpoint.train_config["head_switch_fraction"] == 0.5  # the file's, not the option's default 0.375
    config = checkpoint.model_config
    assert (config.arch, config.d_model, config.n_heads, config.d_mlp, config.n_layers) == ("hierarchical", 16, 2, 32, 1)
    assert checkpoint.data_config.window.stride_ms == 150.0


def test_explicit_options_override_the_file(config_runs):
    _, overridden, folder = config_runs
    assert_ok(overridden)
    checkpoint = load_checkpoint(folder / "overridden" / "checkpoint.pt")
    assert checkpoint.train_config["epochs"] == 1 and len(checkpoint.history) == 1
    assert checkpoint.model_config.d_model == 8
    assert checkpoint.model_config.n_heads == 2 and checkpoint.train_config["head_switch_fraction"] == 0.5  # still the file's


def test_train_refuses_a_bad_file_in_one_line(tmp_path):
    path = write(tmp_path, GOOD.replace("d_model = 16", "d_modle = 16"))
    result = invoke("train", "--model-config", path, "--out", tmp_path / "run", *RUN)
    message = assert_user_error(result, str(path), "[model] d_modle", "valid keys")
    assert message.strip().count("\n") == 0
    assert not (tmp_path / "run").exists()  # refused before any data were read or written


def test_train_refuses_a_missing_file(tmp_path):
    result = invoke("train", "--model-config", tmp_path / "missing.toml", "--out", tmp_path / "run", *RUN)
    assert_user_error(result, "missing.toml", "not found")


def test_train_names_the_flag_of_a_bad_override(tmp_path):
    path = write(tmp_path, GOOD)
    result = invoke("train", "--model-config", path, "--epochs", 0, "--out", tmp_path / "run", *RUN)
    assert_user_error(result, "--epochs: got 0")
