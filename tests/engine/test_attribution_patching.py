"""Attribution patching (`ablate --approx`): exact for a model that is linear in its attention
pattern (one attention layer, linear read-out, defined here), the exact pattern change against a
loop that masks and renormalises each row, per-layer effects adding up for multi-layer conditions,
and the agreement numbers computed against the exact grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from einops import einsum
from scipy.stats import spearmanr
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from isoprobe.engine.ablate import AblationConfig, ablation_logits
from isoprobe.engine.attribution_patching import agreement, checked_subset, estimate_masking, pattern_change_effect, run_attribution_patching
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.engine.stats import logit_margin
from isoprobe.errors import ConfigError
from tests.engine.conftest import windows

D_MODEL, N_HEADS, D_HEAD = 8, 2, 4
GROUPS = torch.tensor([0, 1, 1, 1, 2, 2])  # CLS, three emg tokens, two acc tokens
NAMES = ("emg", "acc")


class LinearAttention(nn.Module):
    """Softmax attention whose output, added to the residual, is read out linearly: the logits are
    linear in the pattern of the layer."""

    def __init__(self, generator):
        super().__init__()
        shape = (N_HEADS, D_MODEL, D_HEAD)
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.randn(shape, generator=generator, dtype=torch.float64))
                                        for _ in range(3))
        self.W_O = nn.Parameter(torch.randn(N_HEADS, D_HEAD, D_MODEL, generator=generator, dtype=torch.float64))
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()

    def forward(self, x):
        q = einsum(x, self.W_Q, "batch pos d_model, head d_model d_head -> batch pos head d_head")
        k = einsum(x, self.W_K, "batch pos d_model, head d_model d_head -> batch pos head d_head")
        v = einsum(x, self.W_V, "batch pos d_model, head d_model d_head -> batch pos head d_head")
        scores = self.hook_attn_scores(einsum(q, k, "batch q head d, batch k head d -> batch head q k") / math.sqrt(D_HEAD))
        # an emptied row attends to nothing, as isoprobe's attention does
        empty = scores.amax(dim=-1, keepdim=True).isneginf()
        pattern = self.hook_pattern(torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0))
        z = einsum(pattern, v, "batch head q k, batch k head d -> batch q head d")
        return einsum(z, self.W_O, "batch q head d, head d d_model -> batch q d_model")


class Block(nn.Module):
    def __init__(self, generator):
        super().__init__()
        self.attn = LinearAttention(generator)

    def forward(self, x):
        return x + self.attn(x)


class PatternLinear(HookedRootModule):
    """tokens [batch, pos, d_model] -> 2 logits read from CLS and the mean of all positions: with one
    layer, linear in its pattern (two classes, so the logit margin is a difference of logits, linear too)."""

    def __init__(self, n_layers: int = 1, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.blocks = nn.ModuleList(Block(generator) for _ in range(n_layers))
        self.unembed = nn.Parameter(torch.randn(D_MODEL, 2, generator=generator, dtype=torch.float64))
        self.setup()

    def forward(self, tokens):
        x = tokens
        for block in self.blocks:
            x = block(x)
        return (x[:, 0] + x.mean(dim=1)) @ self.unembed


@pytest.fixture(scope="module")
def tokens():
    return torch.randn(7, len(GROUPS), D_MODEL, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


CONDITIONS = [Condition((0,), p, h) for p, h in [("cross", None), ("uni", (1,)), ("cls", None), ("relay", None),
                                                 ("readout", (0,)), ("all", None), ("emg->acc+cls", None)]]


def test_estimates_are_exact_for_a_model_linear_in_the_pattern(tokens):
    """The pattern change is computed exactly and the rest is linear: estimate = exact masking effect
    per window, for every pathway, head subset, union and an emptied row (`all`)."""
    model = PatternLinear()
    engine = InterventionEngine(model, GROUPS, NAMES, mask_self=True)
    target = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    estimates = estimate_masking(engine, [tokens], CONDITIONS, target)
    run = engine.run_grid([tokens], CONDITIONS)
    base = logit_margin(run.clean, target)
    for index, (condition, logits) in enumerate(zip(CONDITIONS, run.logits)):
        exact = logit_margin(logits, target) - base
        torch.testing.assert_close(estimates.estimates[:, index].double(), exact, atol=1e-4, rtol=1e-4,
                                   msg=lambda m, c=condition: f"{c}: {m}")
        assert exact.abs().max() > 1e-2, condition  # each condition has an effect to estimate


def test_a_condition_over_several_layers_adds_its_layers_first_order_effects(tokens):
    model = PatternLinear(n_layers=2, seed=1)
    engine = InterventionEngine(model, GROUPS, NAMES)
    target = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    conditions = [Condition((0,), "cross"), Condition((1,), "cross"), Condition((0, 1), "cross")]
    estimates = estimate_masking(engine, [tokens], conditions, target).estimates
    torch.testing.assert_close(estimates[:, 2], estimates[:, 0] + estimates[:, 1], atol=1e-5, rtol=0)
    # the last layer alone feeds a linear read-out: its estimate is exact
    run = engine.run_grid([tokens], conditions[1:2])
    exact = logit_margin(run.logits[0], target) - logit_margin(run.clean, target)
    torch.testing.assert_close(estimates[:, 1].double(), exact, atol=1e-4, rtol=1e-4)


def test_pattern_change_effect_against_a_loop_that_masks_and_renormalises():
    generator = torch.Generator().manual_seed(5)
    pattern = torch.softmax(torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64), dim=-1)
    pattern[0, 1, 2] = 0.0  # a row that attends to nothing already
    gradient = torch.randn(pattern.shape, generator=generator, dtype=torch.float64)
    masks = torch.rand(5, 2, 4, 4, generator=generator) < 0.4
    masks[4, :, 1] = True  # a condition emptying row 1 in both heads
    got = pattern_change_effect(pattern, gradient, masks.double())
    for b in range(3):
        for c in range(5):
            total = 0.0
            for h in range(2):
                for q in range(4):
                    row = pattern[b, h, q].clone()
                    kept = row * (~masks[c, h, q]).double()
                    new = kept / kept.sum() * row.sum() if kept.sum() > 1e-12 else torch.zeros_like(row)
                    total += float((gradient[b, h, q] * (new - row)).sum())
            assert got[b, c].item() == pytest.approx(total, abs=1e-10)


def test_conditions_null_by_construction_are_estimated_exactly_zero(hier, mmt, db2):
    """What cannot change the prediction gets an estimate of exactly 0, as its exact effect is: uni and
    cross in the hierarchical model's last layer (its head reads CLS alone), no head at all, the mmt's
    cross edges (which it never uses). A condition that acts, on each model, is the negative control."""
    inputs, target = windows(db2, 6)
    cases = [(hier, [Condition((2,), "uni"), Condition((2,), "cross"), Condition((0, 1), "all", ())], Condition((2,), "cls")),
             (mmt, [Condition((0,), "cross"), Condition((0, 1), "emg->acc+acc->emg")], Condition((1,), "uni"))]
    for model, null, acting in cases:
        engine = InterventionEngine(model)
        assert all(engine.null_by_construction(c) for c in null) and not engine.null_by_construction(acting)
        estimates = estimate_masking(engine, inputs, null + [acting], target).estimates
        assert (estimates[:, :-1] == 0).all()
        assert estimates[:, -1].abs().max() > 1e-3
    test = db2.splits["test"].take(np.arange(0, len(db2.splits["test"]), 6))
    table = run_attribution_patching(mmt, test, AblationConfig(layers="all", pathway="cross,uni", bootstrap=20), check=-1).table
    cross = table[table.pathway == "cross"]
    assert (cross[["estimate", "ci_low", "ci_high", "exact", "abs_error"]] == 0).all().all()
    assert (table[table.pathway == "uni"].exact.abs() > 1e-3).all()


def test_run_attribution_patching_reports_its_agreement_with_the_exact_grid(hier, db2):
    test = db2.splits["test"].take(np.arange(0, len(db2.splits["test"]), 4))
    config = AblationConfig(layers="all", pathway="uni,cross,cls", heads="1", bootstrap=100)
    result = run_attribution_patching(hier, test, config, check=-1)
    table = result.table
    exact = ablation_logits(hier, test, config)
    target = torch.as_tensor(test.y)
    base = logit_margin(exact.clean, target)
    expected = [float((logit_margin(exact.logits[c], target) - base).mean()) for c in exact.conditions]
    np.testing.assert_allclose(table.exact, expected, atol=1e-5)
    assert result.agreement["checked"] == len(table) == 12
    assert result.agreement["spearman"] == pytest.approx(spearmanr(table.estimate, table.exact).statistic)
    assert result.agreement["mean_abs_error"] == pytest.approx(np.mean(np.abs(table.estimate - table.exact)))
    assert (table.ci_low <= table.estimate).all() and (table.estimate <= table.ci_high).all()
    # masking cls empties CLS's own row in head 1: flagged, and outside the linear-regime agreement
    assert set(table[table.pathway == "cls"].regime) == {"saturating"}
    assert set(table[table.pathway != "cls"].regime) == {"linear"}
    assert result.agreement["linear"]["checked"] == 8
    assert result.to_dict()["agreement"]["checked"] == 12


def test_only_a_subset_is_checked_when_asked(hier, db2):
    test = db2.splits["test"].take(np.arange(0, len(db2.splits["test"]), 6))
    result = run_attribution_patching(hier, test, AblationConfig(layers="all", pathway="uni,cross", bootstrap=20), check=3)
    assert result.table.exact.notna().sum() == 3 == result.agreement["checked"]
    assert checked_subset(8, 3) == [0, 4, 7] and checked_subset(8, -1) == list(range(8)) and checked_subset(8, 0) == []


def test_agreement_numbers():
    estimate, exact = np.array([0.1, -0.2, 0.3, 0.0001]), np.array([0.2, -0.1, 0.5, -0.0001])
    numbers = agreement(estimate, exact)
    assert numbers["spearman"] == pytest.approx(spearmanr(estimate, exact).statistic)
    assert numbers["mean_abs_error"] == pytest.approx(np.mean(np.abs(estimate - exact)))
    assert numbers["sign_agreement"] == 1.0  # the near-zero pair (below 5% of the largest effect) is not compared


def test_only_masking_is_estimated(hier, db2):
    with pytest.raises(ConfigError, match="mask"):
        run_attribution_patching(hier, db2.splits["test"], AblationConfig(intervention="mean"))
