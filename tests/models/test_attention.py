"""Attention: the fused (SDPA) and explicit (hooked) paths compute the same function, both match an
independent per-head reference, and safe_softmax never produces NaN (DESIGN §3, §4)."""

from __future__ import annotations

import math

import pytest
import torch

from isoprobe.models.components import attention as attention_module
from isoprobe.models.components.attention import Attention, safe_softmax
from isoprobe.models.components.block import Block
from tests.models.helpers import batch, small_model
from tests.tolerance import assert_close


def _noop(activation, hook):
    return None


def _block_diagonal(weight_groups: torch.Tensor) -> torch.Tensor:
    """Additive [query_pos, key_pos] mask: 0 within a group, -inf across groups (the mmt mask)."""
    same = weight_groups[:, None] == weight_groups[None, :]
    return torch.zeros(same.shape).masked_fill(~same, float("-inf"))


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial parameters everywhere, biases and grouped weights included."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


class _CountSDPA:
    """Wraps scaled_dot_product_attention to record whether the fused path ran."""

    def __init__(self, original):
        self.original, self.calls = original, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.original(*args, **kwargs)


@pytest.fixture
def sdpa_calls(monkeypatch) -> _CountSDPA:
    counter = _CountSDPA(attention_module.F.scaled_dot_product_attention)
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", counter)
    return counter


CASES = {
    # name: (n_groups, token groups over 9 positions, use the block-diagonal mask)
    "plain": (1, None, False),
    "grouped": (3, [0, 0, 0, 1, 1, 2, 2, 2, 2], False),
    "grouped-block-diagonal": (3, [0, 0, 0, 1, 1, 2, 2, 2, 2], True),
    "plain-block-diagonal": (1, [0, 0, 1, 1, 1, 1, 2, 2, 2], True),
}


def _case(name: str, seed: int = 0):
    n_groups, groups, masked = CASES[name]
    attn = Attention(d_model=12, n_heads=3, n_groups=n_groups)
    _randomise(attn, seed)
    attn.eval()
    weight_groups = None if groups is None else torch.tensor(groups)
    weight_groups_arg = weight_groups if n_groups > 1 else None
    mask = _block_diagonal(weight_groups) if masked else None
    x = torch.randn(4, 9, 12, generator=torch.Generator().manual_seed(seed + 1))
    return attn, x, weight_groups_arg, mask, weight_groups


@pytest.mark.parametrize("hook_name", ["hook_attn_scores", "hook_pattern"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_and_explicit_paths_agree(case, hook_name, sdpa_calls):
    attn, x, weight_groups, mask, _ = _case(case)
    assert not attn.needs_explicit_scores
    fused = attn(x, weight_groups, mask)
    assert sdpa_calls.calls == 1, "without hooks on the scores the fused path must run"

    fired = []
    getattr(attn, hook_name).add_hook(lambda activation, hook: fired.append(activation.shape))
    try:
        assert attn.needs_explicit_scores
        explicit = attn(x, weight_groups, mask)
    finally:
        getattr(attn, hook_name).remove_hooks("fwd")
    assert sdpa_calls.calls == 1, "a hook on the scores or pattern must force the explicit path"
    assert fired == [torch.Size([4, 3, 9, 9])]
    assert not attn.needs_explicit_scores

    assert_close(explicit, fused)
    # The output is not trivially small, so agreement to 1e-5 means something.
    assert fused.abs().max() > 1e-2


@pytest.mark.parametrize("case", ["plain", "grouped-block-diagonal"])
def test_fused_and_explicit_gradients_agree(case):
    attn, x, weight_groups, mask, _ = _case(case, seed=3)
    x = x.requires_grad_(True)
    attn(x, weight_groups, mask).pow(2).sum().backward()
    fused_grads = [x.grad.clone()] + [p.grad.clone() for p in attn.parameters()]
    x.grad = None
    attn.zero_grad()
    attn.hook_pattern.add_hook(_noop)
    try:
        attn(x, weight_groups, mask).pow(2).sum().backward()
    finally:
        attn.hook_pattern.remove_hooks("fwd")
    explicit_grads = [x.grad] + [p.grad for p in attn.parameters()]
    for fused_grad, explicit_grad in zip(fused_grads, explicit_grads):
        # Gradients here reach a few hundred: an absolute tolerance scaled to each tensor, since float32
        # kernels (SDPA against einsum, varying with the CPU's vector width) differ by ~3e-7 of the scale
        # (1e-6 of it left a margin of 4): 1e-4 of the scale, while a wrong gradient is off by ~all of it.
        assert_close(explicit_grad, fused_grad, rel=1e-4)


def _naive_attention(x, weights, biases, n_heads, weight_groups, mask):
    """Reference multi-head attention written with per-token, per-head loops.

    weights[g] = (W_Q, W_K, W_V [head, d_model, d_head], W_O [head, d_head, d_model]) and
    biases[g] = (b_Q, b_K, b_V [head, d_head], b_O [d_model]) for token group g."""
    batch, n_pos, d_model = x.shape
    groups = weight_groups.tolist() if weight_groups is not None else [0] * n_pos
    out = torch.zeros(batch, n_pos, d_model, dtype=torch.float64)
    for b in range(batch):
        for h in range(n_heads):
            q = torch.stack([x[b, i] @ weights[groups[i]][0][h] + biases[groups[i]][0][h] for i in range(n_pos)])
            k = torch.stack([x[b, i] @ weights[groups[i]][1][h] + biases[groups[i]][1][h] for i in range(n_pos)])
            v = torch.stack([x[b, i] @ weights[groups[i]][2][h] + biases[groups[i]][2][h] for i in range(n_pos)])
            d_head = q.shape[-1]
            for i in range(n_pos):
                scores = [float(q[i] @ k[j]) / math.sqrt(d_head) + (0.0 if mask is None else float(mask[i, j])) for j in range(n_pos)]
                top = max(scores)
                exps = [math.exp(s - top) for s in scores]
                total = sum(exps)
                z = sum((e / total) * v[j] for j, e in enumerate(exps))
                out[b, i] += z @ weights[groups[i]][3][h]
        for i in range(n_pos):
            out[b, i] += biases[groups[i]][3]
    return out


def _per_group_views(attn: Attention, group: int):
    """Per-head weights of one token group, by the same TransformerLens convention as W_Q/W_K/W_V/W_O."""
    n_heads, d_head = attn.n_heads, attn.d_head
    d_model = n_heads * d_head
    w = attn.qkv.weight[group].detach().double()  # [d_model, 3 * d_model]
    w_q, w_k, w_v = (w[:, i * d_model:(i + 1) * d_model].reshape(d_model, n_heads, d_head).permute(1, 0, 2) for i in range(3))
    w_o = attn.out.weight[group].detach().double().reshape(n_heads, d_head, d_model)
    b = attn.qkv.bias[group].detach().double()
    b_q, b_k, b_v = (b[i * d_model:(i + 1) * d_model].reshape(n_heads, d_head) for i in range(3))
    return (w_q, w_k, w_v, w_o), (b_q, b_k, b_v, attn.out.bias[group].detach().double())


@pytest.mark.parametrize("case", list(CASES))
def test_attention_matches_naive_reference(case):
    attn, x, weight_groups, mask, _ = _case(case, seed=7)
    n_groups = attn.qkv.weight.shape[0]
    views = [_per_group_views(attn, g) for g in range(n_groups)]
    if n_groups == 1:
        # The public TransformerLens-shaped views are the ones the reference uses for group 0.
        torch.testing.assert_close(attn.W_Q.detach().double(), views[0][0][0])
        torch.testing.assert_close(attn.W_K.detach().double(), views[0][0][1])
        torch.testing.assert_close(attn.W_V.detach().double(), views[0][0][2])
        torch.testing.assert_close(attn.W_O.detach().double(), views[0][0][3])
        weights = [(attn.W_Q.detach().double(), attn.W_K.detach().double(), attn.W_V.detach().double(), attn.W_O.detach().double())]
        biases = [views[0][1]]
    else:
        weights, biases = [v[0] for v in views], [v[1] for v in views]
    expected = _naive_attention(x.double(), weights, biases, attn.n_heads, weight_groups, mask).float()

    assert_close(attn(x, weight_groups, mask), expected)
    attn.hook_attn_scores.add_hook(_noop)
    try:
        assert_close(attn(x, weight_groups, mask), expected)
    finally:
        attn.hook_attn_scores.remove_hooks("fwd")


def test_weight_views_have_transformer_lens_shapes():
    attn = Attention(d_model=12, n_heads=3)
    assert attn.W_Q.shape == attn.W_K.shape == attn.W_V.shape == (3, 12, 4)
    assert attn.W_O.shape == (3, 4, 12)


def test_explicit_hooks_have_documented_shapes_and_semantics():
    attn, x, weight_groups, mask, groups = _case("grouped-block-diagonal", seed=2)
    seen = {}

    def record(activation, hook):
        seen[hook.name] = activation.detach().clone()

    for name in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"):
        hook = getattr(attn, name)
        hook.name = name
        hook.add_hook(record)
    try:
        attn(x, weight_groups, mask)
    finally:
        for name in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"):
            getattr(attn, name).remove_hooks("fwd")
    for name in ("hook_q", "hook_k", "hook_v", "hook_z"):
        assert seen[name].shape == (4, 9, 3, 4), name
    assert seen["hook_attn_scores"].shape == seen["hook_pattern"].shape == (4, 3, 9, 9)
    # Scores are scaled by 1/sqrt(d_head), include the structural mask, and the pattern is their softmax.
    expected_scores = torch.einsum("bqhd,bkhd->bhqk", seen["hook_q"], seen["hook_k"]) / 2.0 + mask
    torch.testing.assert_close(seen["hook_attn_scores"], expected_scores)
    torch.testing.assert_close(seen["hook_pattern"], torch.softmax(expected_scores, dim=-1))
    cross = groups[:, None] != groups[None, :]
    assert torch.isneginf(seen["hook_attn_scores"][..., cross]).all()
    assert (seen["hook_pattern"][..., cross] == 0).all()
    torch.testing.assert_close(seen["hook_pattern"].sum(-1), torch.ones(4, 3, 9))


def test_hook_editing_the_pattern_changes_the_output():
    """The explicit path really uses what hook_pattern returns (interventions depend on it)."""
    attn, x, weight_groups, mask, _ = _case("plain", seed=4)
    clean = attn(x)
    attn.hook_pattern.add_hook(lambda pattern, hook: torch.zeros_like(pattern))
    try:
        zeroed = attn(x)
    finally:
        attn.hook_pattern.remove_hooks("fwd")
    # With a zero pattern z is zero and the output is the output bias alone.
    torch.testing.assert_close(zeroed, attn.out.bias[0].expand_as(zeroed))
    assert not torch.allclose(clean, zeroed)


def test_block_passes_the_mask_and_groups_through():
    block = Block(d_model=12, n_heads=3, d_mlp=24, n_groups=2)
    _randomise(block, 5)
    block.eval()
    groups = torch.tensor([0, 0, 0, 1, 1])
    mask = _block_diagonal(groups)
    x = torch.randn(2, 5, 12)
    fused = block(x, groups, mask)
    block.attn.hook_pattern.add_hook(_noop)
    try:
        explicit = block(x, groups, mask)
    finally:
        block.attn.hook_pattern.remove_hooks("fwd")
    assert_close(explicit, fused)
    # Without the mask, tokens of group 0 read group 1 and the output changes.
    assert not torch.allclose(block(x, groups, None), fused, atol=1e-4)


# --- safe_softmax --------------------------------------------------------------------------------


def _scores_with_empty_rows() -> torch.Tensor:
    scores = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    scores[0, 1, 2] = float("-inf")  # one query row with every key masked
    scores[1, :, 4] = float("-inf")  # the same row masked in every head
    scores[0, 0, 0, [1, 3]] = float("-inf")  # a partially masked row
    return scores


def test_safe_softmax_zero_rows_and_plain_softmax_elsewhere():
    scores = _scores_with_empty_rows()
    pattern = safe_softmax(scores)
    assert torch.isfinite(pattern).all()
    empty = torch.isneginf(scores).all(dim=-1)
    assert empty.sum() == 4
    assert (pattern[empty] == 0).all()
    torch.testing.assert_close(pattern[~empty], torch.softmax(scores, dim=-1)[~empty])
    # The partially masked row puts exactly zero weight on its masked keys and sums to one.
    assert (pattern[0, 0, 0, [1, 3]] == 0).all()
    torch.testing.assert_close(pattern[0, 0, 0].sum(), torch.tensor(1.0))
    # Plain softmax would give NaN here: the check above is not vacuous.
    assert torch.isnan(torch.softmax(scores, dim=-1)[empty]).all()


def test_safe_softmax_gradients_are_finite_and_match_softmax():
    scores = _scores_with_empty_rows().requires_grad_(True)
    weights = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    (safe_softmax(scores) * weights).sum().backward()
    assert torch.isfinite(scores.grad).all()
    empty = torch.isneginf(scores.detach()).all(dim=-1)
    assert (scores.grad[empty] == 0).all()

    reference = scores.detach().clone().requires_grad_(True)
    (torch.softmax(reference, dim=-1) * weights).sum().backward()
    torch.testing.assert_close(scores.grad[~empty], reference.grad[~empty])


def test_explicit_path_with_a_fully_masked_query_row_has_finite_output_and_gradients():
    """Masking every key of one query (what the intervention engine can do) leaves z = 0 for that
    query, never NaN, in the forward and the backward pass."""
    attn, x, _, _, _ = _case("plain", seed=6)
    x = x.requires_grad_(True)

    def mask_row(scores, hook):
        scores = scores.clone()
        scores[:, :, 2, :] = float("-inf")
        return scores

    captured = {}
    attn.hook_attn_scores.add_hook(mask_row)
    attn.hook_z.add_hook(lambda z, hook: captured.setdefault("z", z))
    try:
        out = attn(x)
        out.sum().backward()
    finally:
        attn.hook_attn_scores.remove_hooks("fwd")
        attn.hook_z.remove_hooks("fwd")
    assert torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all()
    assert (captured["z"][:, 2] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters())


# --- whole models under both paths --------------------------------------------------------------


@pytest.mark.parametrize("arch", ["hierarchical", "mmt"])
@pytest.mark.parametrize("hook_suffix", ["hook_attn_scores", "hook_pattern"])
def test_whole_models_agree_under_both_paths(prepared, arch, hook_suffix, sdpa_calls):
    data = prepared("emg,acc")
    model = small_model(data, arch, dropout=0.1).eval()  # dropout inactive in eval mode
    _randomise(model, 11)  # away from the near-identity initialisation, so attention matters
    xs, _ = batch(data, 6)
    with torch.no_grad():
        fused = model.forward_heads(*xs)
        fused_calls = sdpa_calls.calls
        explicit = model.run_with_hooks(*xs, fwd_hooks=[(lambda name: name.endswith(hook_suffix), _noop)])
        with model.hooks(fwd_hooks=[(lambda name: name.endswith(hook_suffix), _noop)]):
            explicit_heads = model.forward_heads(*xs)
    n_attention = sum(isinstance(m, Attention) for m in model.modules())
    assert fused_calls == n_attention, "every attention layer takes the fused path without hooks"
    assert sdpa_calls.calls == fused_calls, "hooked runs must take the explicit path in every layer"
    assert not any(m.needs_explicit_scores for m in model.modules() if isinstance(m, Attention)), "hooks were left attached"
    assert_close(explicit, fused["main"])
    assert explicit_heads.keys() == fused.keys()
    for key in fused:
        assert_close(explicit_heads[key], fused[key])


@pytest.mark.parametrize("arch", ["hierarchical", "mmt"])
def test_run_with_cache_matches_the_fused_forward(prepared, arch):
    data = prepared("emg[0:6],emg[6:12]")
    model = small_model(data, arch).eval()
    _randomise(model, 12)
    xs, _ = batch(data, 5)
    with torch.no_grad():
        fused = model(*xs)
        cached_logits, cache = model.run_with_cache(*xs)
    assert_close(cached_logits, fused)
    assert "blocks.0.attn.hook_pattern" in cache
