"""Attention attribution (Hao et al. 2021): completeness per layer against an independently computed
F(0), exact zeros on edges the model cannot use (the mmt's cross edges, a pathway masked by the
engine), an independent quadrature written here without captum, the edge partition against the
engine's pathways, the table's schema, a foreign HookedRootModule, batch-size independence, the
model's mode, gradients and hooks left as they were, and configuration errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from isoprobe.attribution.attention import (
    ALL_EDGES, ALL_LAYERS, COLUMNS, AttentionConfig, AttentionResult, attention_attributions, attribute, edge_parts,
    layer_attributions)
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.grid import Condition, InterventionEngine, attached
from isoprobe.models.pathways import Pathway
from isoprobe.errors import ConfigError

from tests.engine.conftest import small, windows
from tests.engine.test_foreign_model import D_HEAD, D_MODEL, GROUPS, NAMES, TinyModel
from tests.tolerance import FLOAT32

FAST = dict(steps=6, bootstrap=20)


@pytest.fixture(scope="module")
def split(db2) -> WindowSet:
    """Six test windows over several gestures and segments."""
    test = db2.splits["test"]
    return test.take(np.linspace(0, len(test) - 1, 6).round().astype(int))


@pytest.fixture(scope="module")
def tiny() -> TinyModel:
    return TinyModel(seed=3).eval()


@pytest.fixture(scope="module")
def tiny_split() -> WindowSet:
    """Seven float64 token sequences for the TinyModel, in three segments."""
    tokens = torch.randn(7, len(GROUPS), D_MODEL, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    label = np.array([0, 0, 1, 1, 1, 2, 2])
    return WindowSet({"tokens": tokens.numpy()}, label, label, np.ones(7, dtype=np.int64), np.arange(7))


def zero_pattern_logit(model, inputs, target, layer) -> torch.Tensor:
    """F(0): the target logit with layer `layer`'s attention pattern replaced by zeros, [batch]."""
    with torch.no_grad():
        logits = model.run_with_hooks(*inputs, fwd_hooks=[(f"blocks.{layer}.attn.hook_pattern",
                                                           lambda pattern, hook: torch.zeros_like(pattern))])
    return logits.gather(1, target[:, None])[:, 0]


def clean_logit(model, inputs, target) -> torch.Tensor:
    with torch.no_grad():
        return model(*inputs).gather(1, target[:, None])[:, 0]


def attention_table_of(model, split, config, **options) -> pd.DataFrame:
    return attribute(model, split, config, **options).table


def test_completeness_per_layer(db2, hier):
    """Σ Attr + δ = F(1) − F(0) for each layer and window, F(0) computed here by zeroing the pattern;
    with 20 Gauss–Legendre nodes δ is small next to F(1) − F(0)."""
    xs, y = windows(db2, 4, "test")
    effects = []
    for layer in range(3):
        attr, delta = layer_attributions(hier, xs, y, layer, steps=20)
        n_pos = len(hier.token_modalities)
        assert attr.shape == (4, 2, n_pos, n_pos) and delta.shape == (4,)
        effect = clean_logit(hier, xs, y) - zero_pattern_logit(hier, xs, y, layer)
        torch.testing.assert_close(attr.sum(dim=(1, 2, 3)) - delta, effect, atol=1e-4, rtol=1e-4)
        assert (delta.abs() <= 1e-4 * (1 + effect.abs())).all()  # Hao's right Riemann sum: up to 10% here
        effects.append(effect)
    assert max(e.abs().max() for e in effects) > 1e-2  # the layers matter, so the identity is not 0 = 0


def test_completeness_through_the_pipeline_and_the_table(db2, hier, split):
    """The per-window part sums plus δ give F(1) − F(0) per layer; the table's "all" rows hold their means."""
    config = AttentionConfig(**FAST)
    data = attention_attributions(hier, split, config)
    xs = [torch.from_numpy(split.x[name]) for name in hier.modality_names]
    y = torch.from_numpy(split.y)
    effect = np.stack([(clean_logit(hier, xs, y) - zero_pattern_logit(hier, xs, y, layer)).numpy() for layer in range(3)], 1)
    np.testing.assert_allclose(data.signed.sum(axis=2) - data.delta, effect, atol=1e-4, rtol=1e-4)
    table = attention_table_of(hier, split, config)
    for layer in range(3):
        rows = table[(table.site == f"L{layer + 1}") & (table.part == ALL_EDGES)].set_index("quantity").estimate
        assert rows["sum"] - rows["delta"] == pytest.approx(effect[:, layer].mean(), abs=1e-4)
        assert rows["abs_delta"] >= abs(rows["delta"]) - 1e-12



def test_cross_edges_the_mmt_cannot_use_get_exactly_zero(mmt, split):
    """The multimodal transformer's block-diagonal mask leaves no cross edge: the part keeps its rows,
    sums over no edge the model has, and is exactly 0."""
    data = attention_attributions(mmt, split, AttentionConfig(**FAST))
    assert not data.parts["cross"].any() and data.parts["uni:emg"].any()
    table = attention_table_of(mmt, split, AttentionConfig(**FAST))
    cross = table[table.part == "cross"]
    assert set(cross.site) == {"L1", "L2", ALL_LAYERS} and (cross.edges == 0).all()
    assert (cross[["estimate", "ci_low", "ci_high"]] == 0).all().all()
    assert not {"relay", "readout"} & set(table.part)  # no CLS token
    uni = table[(table.part.str.startswith("uni:")) & (table.quantity == "share")]
    assert uni.estimate.sum() > 0


@pytest.mark.parametrize("pathway", ["cross", "relay"])
def test_a_pathway_masked_for_the_whole_run_gets_zero_attribution(hier, split, pathway):
    engine = InterventionEngine(hier)
    with attached(hier, engine.hooks(Condition((0, 1, 2), pathway))):
        data = attention_attributions(hier, split, AttentionConfig(**FAST))
    index = list(data.parts).index(pathway)
    clean = attention_attributions(hier, split, AttentionConfig(**FAST))
    # the zeros come from the mask (at the last layer only the CLS row reaches the head: 0 there anyway)
    assert (clean.absolute[:, :-1, index] > 0).all()
    assert (data.signed[:, :, index] == 0).all() and (data.absolute[:, :, index] == 0).all()
    assert (data.absolute.sum(axis=2) > 0).all()
    assert not any(point.fwd_hooks for point in hier.hook_dict.values())


def gated_direct(model: TinyModel, tokens: torch.Tensor, layer: int, gate: torch.Tensor) -> torch.Tensor:
    """The TinyModel's function written out (no hooks), layer `layer`'s pattern multiplied by `gate`."""
    x = tokens
    for index, block in enumerate(model.blocks):
        a = block.attn
        q, k, v = (torch.einsum("bpd,hde->bphe", x, w) for w in (a.W_Q, a.W_K, a.W_V))
        pattern = torch.softmax(torch.einsum("bqhe,bkhe->bhqk", q, k) / D_HEAD**0.5, dim=-1)
        if index == layer:
            pattern = pattern * gate
        x = x + torch.einsum("bqhe,hed->bqd", torch.einsum("bhqk,bkhe->bqhe", pattern, v), a.W_O)
    return (x[:, 0] + x.mean(dim=1)) @ model.unembed


@pytest.mark.parametrize("rule", ["riemann_right", "gausslegendre"])
@pytest.mark.parametrize("layer", [0, 1])
def test_an_independent_quadrature_of_the_gradients_agrees(tiny, tiny_split, rule, layer):
    """Hao et al.'s Eq. 3 (right Riemann sum, α = i/m, weights 1/m) and Gauss–Legendre nodes, each
    summed here from autograd gradients of a hook-free forward, match the method for the same m."""
    steps = 7
    tokens = torch.from_numpy(tiny_split.x["tokens"])
    target = torch.from_numpy(tiny_split.y)
    if rule == "riemann_right":
        alphas, weights = np.arange(1, steps + 1) / steps, np.full(steps, 1 / steps)
    else:
        nodes, w = np.polynomial.legendre.leggauss(steps)
        alphas, weights = (nodes + 1) / 2, w / 2
    shape = (len(tokens), 2, len(GROUPS), len(GROUPS))
    expected = torch.zeros(shape, dtype=torch.float64)
    for alpha, weight in zip(alphas, weights):
        gate = torch.full(shape, float(alpha), dtype=torch.float64, requires_grad=True)
        logit = gated_direct(tiny, tokens, layer, gate).gather(1, target[:, None]).sum()
        expected += weight * torch.autograd.grad(logit, gate)[0]  # × (input − baseline) = 1
    attr, _ = layer_attributions(tiny, [tokens], target, layer, steps=steps, method=rule)
    # captum rounds its nodes and weights to float32: agreement to ~1e-7 of the scale, not 1e-15
    torch.testing.assert_close(attr, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    assert expected.abs().max() > 1e-2


def test_the_partition_covers_every_edge_once_and_matches_the_pathways(hier):
    groups, names = hier.token_modalities, tuple(hier.modality_names)
    parts = edge_parts(groups, names)
    assert list(parts) == [f"uni:{n}" for n in names] + ["cross", "relay", "readout", "self"]
    count = sum(edges.long() for edges in parts.values())
    assert (count == 1).all()
    def pathway(name):
        return Pathway(name).edges(groups, names)
    assert torch.equal(parts["cross"], pathway("cross"))
    assert torch.equal(parts["relay"], pathway("relay")) and torch.equal(parts["readout"], pathway("readout"))
    assert torch.equal(sum(parts[f"uni:{n}"].long() for n in names).bool(), pathway("uni"))
    for n in names:
        assert torch.equal(parts[f"uni:{n}"], pathway(f"{n}->{n}"))
    assert torch.equal(parts["self"], torch.eye(len(groups), dtype=torch.bool))
    assert torch.equal(parts["self"] | pathway("all"), torch.ones_like(parts["self"]))


def test_the_partition_leaves_out_parts_without_edges_and_keeps_several_cls_tokens_apart():
    # a single force token: no uni:force
    assert list(edge_parts(GROUPS, NAMES)) == ["uni:left", "uni:right", "cross", "relay", "readout", "self"]
    parts = edge_parts(torch.tensor([0, 0, 1, 1]), ("emg",))
    assert list(parts) == ["uni:emg", "uni:cls", "relay", "readout", "self"]
    assert (sum(edges.long() for edges in parts.values()) == 1).all()


def test_table_schema_shares_and_aggregates(hier, split):
    result = attribute(hier, split, AttentionConfig(**FAST))
    assert isinstance(result, AttentionResult) and result.kind == "attribution"
    table = result.to_frame()
    assert tuple(table.columns) == COLUMNS
    assert set(table.method) == {"attention"}
    assert list(dict.fromkeys(table.site)) == ["L1", "L2", "L3", ALL_LAYERS]
    parts = ["uni:emg", "uni:acc", "cross", "relay", "readout", "self"]
    assert list(dict.fromkeys(table.part)) == parts + [ALL_EDGES]
    assert set(table.quantity) == {"share", "sum", "delta", "abs_delta"}
    assert (table.windows == len(split)).all() and (table.segments == len(np.unique(split.segment))).all()
    shares = table[table.quantity == "share"]
    # a share lies in [0, 1]; its CI (estimate ± t·SD over the bootstrap, isoprobe.engine.stats) may reach past
    assert shares.estimate.between(0, 1).all() and (shares.ci_low <= shares.estimate).all()
    assert (shares.estimate <= shares.ci_high).all()
    grid = result.shares()
    assert list(grid.index) == ["L1", "L2", "L3", ALL_LAYERS] and list(grid.columns) == parts
    # the all-layers sums and δ add the layers' (means are linear); its shares are of the pooled |Attr|
    for part, quantity in [("cross", "sum"), (ALL_EDGES, "sum"), (ALL_EDGES, "delta"), (ALL_EDGES, "abs_delta")]:
        rows = table[(table.part == part) & (table.quantity == quantity)].set_index("site").estimate
        assert rows[ALL_LAYERS] == pytest.approx(rows[["L1", "L2", "L3"]].sum(), rel=1e-9, abs=1e-12)
    edges = table.drop_duplicates("part").set_index("part").edges
    n = len(hier.token_modalities)
    assert edges[ALL_EDGES] == n * n and edges["self"] == n
    document = result.to_dict()
    assert document["kind"] == "attribution" and document["config"]["steps"] == 6
    assert len(document["rows"]) == len(table)


def test_layers_select_the_sites(hier, split):
    table = attention_table_of(hier, split, AttentionConfig(layers="2-3", **FAST))
    assert list(dict.fromkeys(table.site)) == ["L2", "L3", ALL_LAYERS]


def test_a_foreign_hooked_root_module_with_explicit_token_groups(tiny, tiny_split):
    """The TinyModel declares neither token_modalities nor modality_names; its one input is the
    token sequence. Completeness holds per window against F(0) computed here, in float64."""
    config = AttentionConfig(target="predicted", **FAST)
    data = attention_attributions(tiny, tiny_split, config, token_groups=GROUPS, modality_names=NAMES)
    tokens = torch.from_numpy(tiny_split.x["tokens"])
    predicted = tiny(tokens).argmax(dim=1)
    assert np.array_equal(data.target, predicted.numpy())
    effect = np.stack([(clean_logit(tiny, [tokens], predicted)
                        - zero_pattern_logit(tiny, [tokens], predicted, layer)).numpy() for layer in range(2)], 1)
    np.testing.assert_allclose(data.signed.sum(axis=2) - data.delta, effect, atol=1e-9, rtol=1e-9)
    table = attention_table_of(tiny, tiny_split, config, token_groups=GROUPS, modality_names=NAMES)
    assert list(dict.fromkeys(table.part)) == ["uni:left", "uni:right", "cross", "relay", "readout", "self", ALL_EDGES]
    with pytest.raises(ConfigError) as error:
        attribute(tiny, tiny_split, config)
    assert error.value.option == "token_groups"
    with pytest.raises(ConfigError) as error:
        attribute(tiny, tiny_split, config, token_groups=GROUPS[:-1], modality_names=NAMES)
    assert error.value.option == "token_groups"


def test_numbers_do_not_depend_on_the_batch_size(hier, split):
    one = attention_table_of(hier, split, AttentionConfig(batch_size=6, **FAST))
    other = attention_table_of(hier, split, AttentionConfig(batch_size=4, internal_batch_size=8, **FAST))
    # other batch sizes sum in another order: float32 rounding (shares ≤ 1, sums larger: rtol with a 1e-5 floor)
    pd.testing.assert_frame_equal(one, other, check_exact=False, atol=FLOAT32, rtol=FLOAT32)


def test_mode_gradients_and_hooks_are_left_as_they_were(hier, split):
    """Eval mode inside (restored afterwards), gradients on inside a caller's no_grad, no hook left
    behind — also when the run fails half-way."""
    config = AttentionConfig(layers="1", **FAST)
    expected = attention_table_of(hier, split, config)
    hier.train()
    try:
        with torch.no_grad():
            got = attention_table_of(hier, split, config)
            assert not torch.is_grad_enabled()
        assert hier.training and all(module.training for module in hier.modules())
    finally:
        hier.eval()
    pd.testing.assert_frame_equal(expected, got)
    assert all(p.grad is None for p in hier.parameters())

    def fail(done, total):
        raise RuntimeError("stop")
    with pytest.raises(RuntimeError, match="stop"):
        attribute(hier, split, AttentionConfig(batch_size=2, **FAST), progress=fail)
    assert not any(point.fwd_hooks for point in hier.hook_dict.values())


@pytest.mark.parametrize("field, value", [
    ("target", "logit"), ("steps", 1), ("method", "riemann_trapezoid"), ("batch_size", 0),
    ("internal_batch_size", 4), ("bootstrap", -1), ("seed", -1), ("level", 1.0), ("layers", " "),
])
def test_bad_configuration_values_name_their_field(field, value):
    with pytest.raises(ConfigError) as error:
        AttentionConfig(**{"batch_size": 8, field: value})
    assert error.value.option == field


@pytest.mark.parametrize("layers", ["3-1", "4", "0", "two"])
def test_layers_are_checked_against_the_model(hier, split, layers):
    with pytest.raises(ConfigError) as error:
        attribute(hier, split, AttentionConfig(layers=layers, **FAST))
    assert error.value.option == "layers"


def test_config_round_trips_through_a_dict():
    config = AttentionConfig(target="predicted", steps=9, layers="2,3", internal_batch_size=64)
    assert AttentionConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError) as error:
        AttentionConfig.from_dict({"stepz": 3})
    assert error.value.option == "AttentionConfig" and "stepz" in str(error.value)


def test_a_model_without_attention_hooks_is_refused(db2, split):
    with pytest.raises(ConfigError) as error:
        attribute(small(db2, "mlp", hidden=(8,)), split, AttentionConfig(**FAST))
    assert error.value.option == "model"
