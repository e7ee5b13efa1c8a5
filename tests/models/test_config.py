"""Model configurations: plain-dict round trips and errors that name the option at fault."""

from __future__ import annotations

import dataclasses
import json

import pytest

from isoprobe.data.tokens import TokenConfig
from isoprobe.errors import ConfigError
from isoprobe.models import CONFIGS, HierarchicalConfig, MLPConfig, MMTConfig, ModelConfig, build_model
from isoprobe.models.sizing import model_config_for

ROUND_TRIP = {
    "hierarchical": {"d_model": 32, "n_heads": 8, "n_layers": 3, "n_encoder_layers": 2, "dropout": 0.2},
    "mmt": {"d_model": 24, "n_heads": 3, "n_layers": 2, "d_mlp": 40},
    "mlp": {"features": "classic", "hidden": (64, 32, 16), "dropout": 0.0},
}


@pytest.mark.parametrize("arch", list(ROUND_TRIP))
def test_round_trip(prepared, arch):
    config = model_config_for(prepared("emg[0:6],acc"), arch, TokenConfig(patch_ms=10.0), **ROUND_TRIP[arch])
    assert type(config) is CONFIGS[arch]
    data = config.to_dict()
    assert data["arch"] == arch
    assert ModelConfig.from_dict(data) == config
    # Through JSON (tuples become lists), as a checkpoint or report stores it.
    assert ModelConfig.from_dict(json.loads(json.dumps(data))) == config


@pytest.mark.parametrize("arch", list(ROUND_TRIP))
def test_round_trip_with_electrode_grids(prepared, arch):
    config = model_config_for(prepared("hdsemg", "hdsemg65"), arch, TokenConfig(patch="grid", tile=(2, 4)))
    assert config.groups[0].grids  # the grids travel in the configuration
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.groups[0].grids == config.groups[0].grids
    assert restored.token.tile == (2, 4)


def test_to_dict_hands_out_a_copy(prepared):
    config = model_config_for(prepared("emg,acc"), "mlp", hidden=(8,))
    data = config.to_dict()
    data["groups"][0]["channels"] = [99]
    data["token"]["patch"] = "channel"
    assert config.groups[0].channels[0] == 0 and config.token.patch == "time"


def test_restored_config_builds_the_same_model(prepared):
    config = model_config_for(prepared("emg,acc"), "hierarchical", d_model=16, n_heads=2, n_layers=1)
    original = build_model(config)
    restored = build_model(ModelConfig.from_dict(config.to_dict()))
    assert original.state_dict().keys() == restored.state_dict().keys()
    assert all(original.state_dict()[k].shape == v.shape for k, v in restored.state_dict().items())


def test_defaults_per_architecture(prepared):
    data = prepared("emg,acc")
    assert isinstance(model_config_for(data, "hierarchical"), HierarchicalConfig)
    assert model_config_for(data, "mmt").n_layers == 3
    mlp = model_config_for(data, "mlp")
    assert isinstance(mlp, MLPConfig) and mlp.features == "patches"
    assert isinstance(model_config_for(data, "mmt"), MMTConfig)


# --- errors -------------------------------------------------------------------------------------


def _raises(option: str, call):
    with pytest.raises(ConfigError) as caught:
        call()
    assert caught.value.option == option
    assert str(caught.value).startswith(f"{option}:")
    return caught.value


def test_unknown_arch_lists_valid_ones(prepared):
    error = _raises("arch", lambda: model_config_for(prepared("emg,acc"), "transformer"))
    assert error.value == "transformer"
    for arch in ("mlp", "mmt", "hierarchical"):
        assert arch in str(error)


def test_unknown_arch_in_a_stored_config(prepared):
    data = model_config_for(prepared("emg,acc"), "mmt").to_dict()
    data["arch"] = "cnn"
    error = _raises("arch", lambda: ModelConfig.from_dict(data))
    assert "mlp, mmt, hierarchical" in str(error)
    del data["arch"]
    _raises("arch", lambda: ModelConfig.from_dict(data))


def test_unknown_field_in_a_stored_config(prepared):
    data = model_config_for(prepared("emg,acc"), "mmt").to_dict()
    data["features"] = "classic"  # an mlp field
    error = _raises("model config", lambda: ModelConfig.from_dict(data))
    assert "features" in str(error)


@pytest.mark.parametrize("arch", ["hierarchical", "mmt", "mlp"])
@pytest.mark.parametrize("n_heads", [3, 5, 0, -2])
def test_n_heads_must_divide_d_model(prepared, arch, n_heads):
    error = _raises("n_heads", lambda: model_config_for(prepared("emg,acc"), arch, d_model=16, n_heads=n_heads))
    assert error.value == n_heads


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_out_of_range(prepared, dropout):
    error = _raises("dropout", lambda: model_config_for(prepared("emg,acc"), "hierarchical", dropout=dropout))
    assert "[0, 1)" in str(error)


@pytest.mark.parametrize("features", ["rms", "Patches", ""])
def test_bad_mlp_features(prepared, features):
    error = _raises("features", lambda: model_config_for(prepared("emg,acc"), "mlp", features=features))
    assert "patches" in str(error) and "classic" in str(error)


@pytest.mark.parametrize(("option", "values"), [("d_model", {"d_model": 0}), ("d_mlp", {"d_mlp": 0})])
def test_sizes_must_be_positive(prepared, option, values):
    _raises(option, lambda: model_config_for(prepared("emg,acc"), "mmt", **values))


def test_layer_counts(prepared):
    data = prepared("emg,acc")
    _raises("n_layers", lambda: model_config_for(data, "hierarchical", n_layers=0))
    _raises("n_layers", lambda: model_config_for(data, "mmt", n_layers=0))
    error = _raises("n_encoder_layers", lambda: model_config_for(data, "hierarchical", n_encoder_layers=-1))
    assert error.value == -1
    assert model_config_for(data, "hierarchical", n_encoder_layers=0).n_encoder_layers == 0  # no encoders is valid


def test_valid_values_at_the_edges_are_accepted(prepared):
    data = prepared("emg,acc")
    assert model_config_for(data, "mmt", dropout=0.0).dropout == 0.0
    assert model_config_for(data, "mmt", dropout=0.99).dropout == 0.99
    assert model_config_for(data, "mmt", d_model=16, n_heads=16).n_heads == 16


def test_configs_are_frozen(prepared):
    config = model_config_for(prepared("emg,acc"), "mmt")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.d_model = 8  # type: ignore[misc]


def test_n_classes_and_groups_are_checked(prepared):
    config = model_config_for(prepared("emg,acc"), "mmt")
    _raises("n_classes", lambda: dataclasses.replace(config, n_classes=1))
    _raises("modalities", lambda: dataclasses.replace(config, groups=()))
