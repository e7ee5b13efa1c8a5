"""The engine on a HookedRootModule that is not one of isoprobe's models (DESIGN §4): a two-layer
attention-only model written here with TransformerLens HookPoints, given a token -> group vector.
It has no stages, so the grid falls back to one run per condition; results equal a direct masked
computation that uses no hooks at all."""

from __future__ import annotations

import math

import pytest
import torch
from einops import einsum
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from isoprobe.engine.ablate import AblationConfig, plan_grid
from isoprobe.engine.grid import Condition, InterventionEngine, attention_layers, head_count
from isoprobe.errors import ConfigError

from tests.engine.reference import as_tensor, naive_edges
from tests.tolerance import FLOAT64, assert_close

D_MODEL, N_HEADS, D_HEAD, N_CLASSES = 8, 2, 4, 3
GROUPS = torch.tensor([0, 1, 1, 1, 2, 2, 3])  # CLS, three "left", two "right", one "force"
NAMES = ("left", "right", "force")


class TinyAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.randn(N_HEADS, D_MODEL, D_HEAD, dtype=torch.float64))
                                        for _ in range(3))
        self.W_O = nn.Parameter(torch.randn(N_HEADS, D_HEAD, D_MODEL, dtype=torch.float64) / 2)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x):
        q = self.hook_q(einsum(x, self.W_Q, "batch pos d_model, head d_model d_head -> batch pos head d_head"))
        k = self.hook_k(einsum(x, self.W_K, "batch pos d_model, head d_model d_head -> batch pos head d_head"))
        v = self.hook_v(einsum(x, self.W_V, "batch pos d_model, head d_model d_head -> batch pos head d_head"))
        scores = einsum(q, k, "batch q head d_head, batch k head d_head -> batch head q k") / math.sqrt(D_HEAD)
        pattern = self.hook_pattern(torch.softmax(self.hook_attn_scores(scores), dim=-1))
        z = self.hook_z(einsum(pattern, v, "batch head q k, batch k head d_head -> batch q head d_head"))
        return einsum(z, self.W_O, "batch q head d_head, head d_head d_model -> batch q d_model")


class TinyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = TinyAttention()
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x):
        x = self.hook_resid_pre(x)
        return self.hook_resid_post(x + self.hook_attn_out(self.attn(x)))


class TinyModel(HookedRootModule):
    """tokens [batch, pos, d_model] -> logits [batch, class] read from position 0 and the mean of all positions."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.blocks = nn.ModuleList(TinyBlock() for _ in range(2))
        self.unembed = nn.Parameter(torch.randn(D_MODEL, N_CLASSES, dtype=torch.float64))
        self.setup()

    def forward(self, tokens):
        x = tokens
        for block in self.blocks:
            x = block(x)
        return (x[:, 0] + x.mean(dim=1)) @ self.unembed


def direct(model: TinyModel, tokens, masks: dict[int, torch.Tensor] | None = None,
           replace: dict[int, tuple[torch.Tensor, object]] | None = None, parts: dict | None = None):
    """The model's function written out with an additive −inf mask per layer [head, q, k] (no hooks),
    or with a pathway's contribution replaced: replace[layer] = (edges [q, k], contribution -> new one).
    `parts` collects each replaced layer's clean contribution [batch, q, head, d_head]."""
    masks, replace = masks or {}, replace or {}
    x = tokens
    for layer, block in enumerate(model.blocks):
        a = block.attn
        q, k, v = (torch.einsum("bpd,hde->bphe", x, w) for w in (a.W_Q, a.W_K, a.W_V))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(D_HEAD)
        if layer in masks:
            scores = scores + torch.zeros_like(masks[layer], dtype=scores.dtype).masked_fill(masks[layer], float("-inf"))
        pattern = torch.softmax(scores, dim=-1)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        if layer in replace:
            edges, new = replace[layer]
            part = torch.einsum("bhqk,bkhe->bqhe", pattern * edges, v)
            if parts is not None:
                parts[layer] = part
            z = z - part + new(part)
        x = x + torch.einsum("bqhe,hed->bqd", z, a.W_O)
    return (x[:, 0] + x.mean(dim=1)) @ model.unembed


@pytest.fixture(scope="module")
def model():
    return TinyModel().eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randn(5, len(GROUPS), D_MODEL, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def edges_of(pathway: str, mask_self: bool = False) -> torch.Tensor:
    return as_tensor(naive_edges(GROUPS.tolist(), pathway, NAMES, mask_self))


def test_engine_finds_the_layers_and_runs_without_stages(model):
    engine = InterventionEngine(model, GROUPS, NAMES)
    assert engine.n_layers == attention_layers(model) == 2
    assert not engine.staged


@pytest.mark.parametrize("condition", [
    Condition((0,), "cross"),
    Condition((1,), "uni", (1,)),
    Condition((0, 1), "cls"),
    Condition((0, 1), "left->right+force->left", (0,)),
    Condition((1,), "all"),
])
def test_masking_equals_a_direct_masked_computation(model, tokens, condition):
    engine = InterventionEngine(model, GROUPS.tolist(), NAMES)
    heads = torch.zeros(N_HEADS, dtype=torch.bool)
    heads[list(condition.heads) if condition.heads is not None else slice(None)] = True
    mask = edges_of(condition.pathway)[None] & heads[:, None, None]
    expected = direct(model, tokens, {layer: mask for layer in condition.layers})
    run = engine.run_grid([tokens], [condition])
    clean, (out,) = run.clean, run.logits
    (naive,) = engine.run_naive([tokens], [condition])
    # float64 logits of a few hundred: 1e-12 of their size (an absolute 1e-12 was ~35 ulps)
    assert_close(clean, direct(model, tokens), FLOAT64)
    assert_close(out, expected, FLOAT64)
    assert_close(naive, expected, FLOAT64)
    assert (out - clean).abs().max() > 1e-3


def test_resample_equals_a_direct_replacement(model, tokens):
    """Every intervened layer takes the donor's clean contribution, computed here without hooks."""
    donors = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    donor_parts = {}
    direct(model, donors, replace={layer: (edges_of("cross"), lambda part: part) for layer in (0, 1)}, parts=donor_parts)
    expected = direct(model, tokens, replace={layer: (edges_of("cross"), lambda part, d=donor_parts[layer]: d) for layer in (0, 1)})
    engine = InterventionEngine(model, GROUPS, NAMES)
    run = engine.run_grid([tokens], [Condition((0, 1), "cross", None, "resample")], donors=[[donors]])
    assert_close(run.logits[0], expected, FLOAT64)
    assert (run.logits[0] - run.clean).abs().max() > 1e-3


def test_mean_equals_a_direct_replacement(model, tokens):
    reference = torch.randn(9, len(GROUPS), D_MODEL, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    condition = Condition((0,), "uni+cls", (1,), "mean")
    engine = InterventionEngine(model, GROUPS, NAMES)
    engine.fit([[reference[:4]], [reference[4:]]], [condition])
    parts = {}
    direct(model, reference, replace={0: (edges_of("uni+cls"), lambda part: part)}, parts=parts)
    mean = parts[0].mean(dim=0)  # [q, head, d_head]
    assert_close(engine.strategy("mean").means[(0, "uni+cls")], mean)  # stored in float32

    def head_1_only(part):
        new = part.clone()
        new[:, :, 1] = engine.strategy("mean").means[(0, "uni+cls")].double()[:, 1]  # the engine stores means in float32
        return new

    expected = direct(model, tokens, replace={0: (edges_of("uni+cls"), head_1_only)})
    run = engine.run_grid([tokens], [condition])
    clean, (out,) = run.clean, run.logits
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    assert (out - clean).abs().max() > 1e-3


def test_a_model_without_attention_hooks_is_refused():
    class NoAttention(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.hook_x = HookPoint()
            self.setup()

        def forward(self, x):
            return self.hook_x(x)

    with pytest.raises(ConfigError, match="hook_attn_scores"):
        InterventionEngine(NoAttention(), GROUPS, NAMES)


def test_the_head_count_and_a_whole_ablation_grid_work_on_a_foreign_model(model):
    """The head count comes from one place (configuration, or the W_Q layout) that also serves a
    HookedRootModule written here, which has neither isoprobe's config nor its attention class."""
    engine = InterventionEngine(model, GROUPS, NAMES)
    assert head_count(model) == engine.n_heads == N_HEADS
    conditions = plan_grid(model, AblationConfig(layers="1-2", pathway="cross,left->right", heads="1"), engine=engine).conditions
    assert [(c.layers, c.pathway, c.heads) for c in conditions] == [
        ((0,), "cross", (1,)), ((0,), "left->right", (1,)), ((1,), "cross", (1,)), ((1,), "left->right", (1,)),
        ((0, 1), "cross", (1,)), ((0, 1), "left->right", (1,))]
    with pytest.raises(ConfigError, match="heads are numbered 0–1"):
        plan_grid(model, AblationConfig(heads="2"), engine=engine)


def test_head_count_prefers_the_configuration():
    class Configured(TinyModel):
        def __init__(self):
            super().__init__()
            self.cfg = type("Cfg", (), {"n_heads": 5})()  # a TransformerLens HookedTransformerConfig has n_heads

    assert head_count(Configured()) == 5


def test_cross_and_relay_masked_everywhere_isolate_each_modality(model, tokens):
    """With cross+relay masked in every layer a modality's token states depend on its own input
    alone: changing the `right` tokens leaves every `left` and `force` token's final state exactly
    as it was. With cross alone, `left` still hears `right` through CLS from the second layer on."""
    engine = InterventionEngine(model, GROUPS, NAMES)
    changed = tokens.clone()
    right = GROUPS == 2
    changed[:, right] = torch.randn(changed[:, right].shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    final = "blocks.1.hook_resid_post"
    conditions = [Condition((0, 1), "cross+relay"), Condition((0, 1), "cross")]
    before = engine.run_grid([tokens], conditions, capture=[final]).activations
    after = engine.run_grid([changed], conditions, capture=[final]).activations
    others = (GROUPS != 2) & (GROUPS != 0)
    assert torch.equal(before[0][final][:, others], after[0][final][:, others])
    assert (before[1][final][:, GROUPS == 1] - after[1][final][:, GROUPS == 1]).abs().max() > 1e-3


def test_nothing_is_null_by_construction_on_a_model_that_does_not_say_what_it_reads(model):
    """The model reads position 0 and the mean of all positions, and declares neither: only an empty
    edge set or head set is null by construction."""
    engine = InterventionEngine(model, GROUPS, NAMES)
    assert not engine.null_by_construction(Condition((1,), "uni"))
    assert engine.null_by_construction(Condition((1,), "uni", ()))
    assert engine.null_by_construction(Condition((0, 1), "force->force"))  # one force token: only a self edge
