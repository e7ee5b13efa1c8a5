"""Pathway dropout in training (DESIGN §5): rate 0 is bit-identical to ordinary training; rate 1
removes the pathway structurally (its attention weights are exactly 0 in every training step and at
evaluation, read through hook_pattern); rates in between drop each window's edges per layer with
that probability, from a seeded stream that resumes exactly; bad options are refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.errors import ConfigError
from isoprobe.training.checkpoint import load_checkpoint
from isoprobe.training.dropout import PathwayDropout, parse_pathway_dropout
from isoprobe.training.trainer import TrainConfig, train
from tests.cli_helpers import assert_user_error, invoke
from tests.training.conftest import RUN_CONFIG, state_equal, tiny_model, without_timing

SHORT = replace(RUN_CONFIG, epochs=2)


def test_rate_zero_is_bit_identical_to_ordinary_training(db2_data, tmp_path):
    plain = train(tiny_model(db2_data), db2_data, SHORT, tmp_path / "plain", progress=False)
    zero = train(tiny_model(db2_data), db2_data, replace(SHORT, pathway_dropout=(("cross", 0.0),)), tmp_path / "zero",
                 progress=False)
    assert state_equal(plain.checkpoint.state_dict, zero.checkpoint.state_dict)
    assert without_timing(plain.history) == without_timing(zero.history)


def _pattern_on(model, edges: torch.Tensor, seen: list[float]):
    """Hooks recording, at every shared layer, the largest attention weight on `edges`."""
    def record(pattern, hook):
        seen.append(float(pattern.detach()[..., edges].abs().max()))
    return [(f"blocks.{layer}.attn.hook_pattern", record) for layer in range(len(model.blocks))]


@pytest.mark.parametrize("pathway", ["cross", "cls->acc"])
def test_rate_one_removes_the_pathway_in_training_and_evaluation(db2_data, tmp_path, pathway):
    model = tiny_model(db2_data, n_layers=2, removed_pathways=(pathway,))
    edges = InterventionEngine(model).edges(pathway)
    seen: list[float] = []
    steps = []
    model.blocks[0].register_forward_hook(lambda *args: steps.append(1))
    for name, hook in _pattern_on(model, edges, seen):
        model.hook_dict[name].add_hook(hook)
    try:
        train(model, db2_data, SHORT, tmp_path, progress=False)
        n_training_steps = SHORT.epochs * -(-len(db2_data.splits["train"]) // SHORT.batch_size)
        assert len(steps) > n_training_steps  # training steps and the validation passes were all seen
        assert len(seen) == 2 * len(steps) and max(seen) == 0.0
    finally:
        model.reset_hooks()
    # the checkpoint keeps the pathway removed: evaluation of the rebuilt model
    rebuilt = load_checkpoint(tmp_path / "checkpoint.pt").build_model()
    assert rebuilt.config.removed_pathways == (pathway,)
    inputs = [torch.as_tensor(db2_data.splits["test"].x[name][:8]) for name in rebuilt.modality_names]
    _, cache = rebuilt.run_with_cache(*inputs)
    for layer in range(len(rebuilt.blocks)):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert pattern[..., edges].abs().max() == 0.0
        assert pattern[..., ~edges].abs().max() > 0  # the other edges still attend
    # the engine knows: masking a removed pathway is null by construction
    assert InterventionEngine(rebuilt).null_by_construction(Condition((0, 1), pathway))


def test_the_multimodal_transformer_removes_pathways_too(db2_data):
    model = tiny_model(db2_data, arch="mmt", n_layers=2, removed_pathways=("emg->emg",))
    edges = InterventionEngine(model).edges("emg->emg")
    inputs = [torch.as_tensor(db2_data.splits["test"].x[name][:8]) for name in model.modality_names]
    _, cache = model.run_with_cache(*inputs)
    assert cache["blocks.1.attn.hook_pattern"][..., edges].abs().max() == 0.0
    assert cache["blocks.1.attn.hook_pattern"][..., InterventionEngine(model).edges("acc->acc")].max() > 0


def test_an_ordinary_model_attends_on_those_edges(db2_data):
    """The control for the test above: without removal, the same edges carry attention."""
    model = tiny_model(db2_data, n_layers=2)
    edges = InterventionEngine(model).edges("cross")
    inputs = [torch.as_tensor(db2_data.splits["test"].x[name][:8]) for name in model.modality_names]
    _, cache = model.run_with_cache(*inputs)
    assert cache["blocks.0.attn.hook_pattern"][..., edges].max() > 1e-3


def test_intermediate_rates_drop_each_windows_edges_per_layer(db2_data):
    model = tiny_model(db2_data, n_layers=3)
    dropout = PathwayDropout(model, [("cross", 0.3), ("relay", 0.0)], seed=4)
    cross = InterventionEngine(model).edges("cross")
    hooks = dropout.hooks(2000, torch.device("cpu"))
    assert len(hooks) == 3 and all(name.endswith("hook_attn_scores") for name, _ in hooks)
    for _, hook in hooks:
        scores = hook(torch.zeros(2000, 2, len(cross), len(cross)))
        dropped = scores.isneginf()
        assert not dropped[..., ~cross].any()  # only cross edges, never any other
        per_window = dropped[:, 0][:, cross].all(dim=1)  # a window's cross edges go together
        assert torch.equal(per_window, dropped[:, 0][:, cross].any(dim=1))
        assert abs(per_window.float().mean().item() - 0.3) < 0.04  # 4.4 binomial SDs at n = 2000
    again = PathwayDropout(model, [("cross", 0.3)], seed=4).hooks(2000, torch.device("cpu"))
    assert torch.equal(again[0][1](torch.zeros(2000, 2, len(cross), len(cross))),
                       hooks[0][1](torch.zeros(2000, 2, len(cross), len(cross))))


def test_resume_with_dropout_equals_the_uninterrupted_run(db2_data, tmp_path):
    config = replace(RUN_CONFIG, pathway_dropout=(("cross", 0.5),))
    whole = train(tiny_model(db2_data), db2_data, config, tmp_path / "whole", progress=False)
    train(tiny_model(db2_data), db2_data, config, tmp_path / "parts", progress=False, stop_after=2)
    resumed = train(tiny_model(db2_data, seed=9), db2_data, config, tmp_path / "parts", resume=True, progress=False)
    assert state_equal(whole.checkpoint.state_dict, resumed.checkpoint.state_dict)
    plain = train(tiny_model(db2_data), db2_data, RUN_CONFIG, tmp_path / "plain", progress=False)
    assert not state_equal(whole.checkpoint.state_dict, plain.checkpoint.state_dict)  # the dropout does act


@pytest.mark.parametrize("spec, fragment", [("cross:1.5", "[0, 1]"), ("cross:-0.1", "[0, 1]"), ("cross", "pathway:rate"),
                                            ("cross:high", "pathway:rate"), (":0.3", "pathway:rate")])
def test_bad_specifications_are_refused(spec, fragment):
    with pytest.raises(ConfigError, match="pathway_dropout") as caught:
        parse_pathway_dropout(spec)
    assert fragment in str(caught.value)


def test_parsing_and_the_training_config():
    assert parse_pathway_dropout("cross:0.3, cls->acc:1") == (("cross", 0.3), ("cls->acc", 1.0))
    assert parse_pathway_dropout(None) == ()
    with pytest.raises(ConfigError, match="removed_pathways"):
        TrainConfig(pathway_dropout=(("cross", 1.0),))


def test_unknown_pathways_are_refused(db2_data):
    with pytest.raises(ConfigError, match="pathway_dropout"):
        PathwayDropout(tiny_model(db2_data), [("crossy", 0.2)], seed=0)
    with pytest.raises(ConfigError, match="removed_pathways"):
        tiny_model(db2_data, removed_pathways=("emg->foo",))


@pytest.mark.parametrize("options, fragments", [
    (["--pathway-dropout", "cross:2"], ["--pathway-dropout", "[0, 1]"]),
    (["--pathway-dropout", "crossy:0.2"], ["--pathway-dropout", "crossy"]),
    (["--pathway-dropout", "cross:0.2", "--arch", "mlp"], ["--pathway-dropout", "MLP"]),
])
def test_the_cli_refuses_bad_dropout(db2_redundant, tmp_path, options, fragments):
    assert_user_error(invoke("train", "--data", db2_redundant, "--out", tmp_path / "run", "--epochs", 1, *options),
                      *fragments)
    assert not (tmp_path / "run").exists()
