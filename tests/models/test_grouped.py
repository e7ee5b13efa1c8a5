"""Per-modality (grouped) layers against naive per-token references, and the multimodal
transformer's forward free of data-dependent ops (each one a host-device sync on CUDA)."""

from __future__ import annotations

import pytest
import torch
from einops import reduce

from isoprobe.models.components.grouped import GroupedLayerNorm, GroupedLinear
from tests.models.helpers import batch, cached_run, small_model
from tests.tolerance import assert_close

# Groups interleaved and of unequal size: nothing may assume one contiguous run per group.
TOKEN_GROUPS = torch.tensor([0, 1, 0, 2, 1, 1, 0])


def test_grouped_linear_matches_a_per_token_loop_in_float64():
    torch.manual_seed(0)
    layer = GroupedLinear(5, 3, n_groups=3)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, len(TOKEN_GROUPS), 5, requires_grad=True)
    out = layer(x, TOKEN_GROUPS)
    out.pow(2).sum().backward()

    x64 = x.detach().double().requires_grad_()
    weight64 = layer.weight.detach().double().requires_grad_()
    bias64 = layer.bias.detach().double().requires_grad_()
    expected = torch.stack([x64[:, p] @ weight64[g] + bias64[g] for p, g in enumerate(TOKEN_GROUPS.tolist())], dim=1)
    expected.pow(2).sum().backward()

    assert out.shape == (4, len(TOKEN_GROUPS), 3)
    # float32 against float64, gradients up to ~50: tolerances scaled to each tensor
    assert_close(out, expected)
    assert_close(x.grad, x64.grad)
    assert_close(layer.weight.grad, weight64.grad)
    assert_close(layer.bias.grad, bias64.grad)


def test_grouped_linear_keeps_the_autocast_dtype():
    layer = GroupedLinear(8, 4, n_groups=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(2, len(TOKEN_GROUPS), 8), TOKEN_GROUPS)
    assert out.dtype == torch.bfloat16


def test_grouped_layer_norm_uses_each_tokens_group_parameters():
    torch.manual_seed(0)
    norm = GroupedLayerNorm(6, n_groups=3)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, len(TOKEN_GROUPS), 6)
    out = norm(x, TOKEN_GROUPS)
    for p, g in enumerate(TOKEN_GROUPS.tolist()):
        expected = torch.nn.functional.layer_norm(x[:, p], (6,), norm.weight[g], norm.bias[g])
        torch.testing.assert_close(out[:, p], expected)


def test_mmt_pools_each_modality_by_its_own_tokens(prepared):
    model, cache = cached_run(prepared("emg[0:6],emg[6:12],acc"), "mmt", 3)
    with torch.no_grad():
        final = model.ln_final(cache[f"blocks.{model.config.n_layers - 1}.hook_resid_post"], model.token_modalities - 1)
    ids = model.token_modalities
    expected = torch.stack([reduce(final[:, ids == m], "batch pos d -> batch d", "mean") for m in (1, 2, 3)], dim=1)
    torch.testing.assert_close(cache["hook_pooled"], expected)


SYNCING_OPS = {"aten::nonzero", "aten::item", "aten::_local_scalar_dense", "aten::masked_select"}


@pytest.mark.parametrize("explicit", [False, True], ids=["fused", "explicit"])
def test_mmt_forward_and_backward_have_no_data_dependent_ops(prepared, explicit):
    """Boolean selection of a modality's tokens calls nonzero, which waits for the GPU: the
    multimodal transformer ran launch-bound on an H100 (the same time at batch 1024 and 4096)."""
    data = prepared("emg,acc")
    model = small_model(data, "mmt").train()
    xs, y = batch(data, 4)
    hooks = [(lambda name: name.endswith("hook_pattern"), lambda t, hook: None)] if explicit else []
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        logits = model.run_with_hooks(*xs, fwd_hooks=hooks)
        torch.nn.functional.cross_entropy(logits, y).backward()
    ops = {event.key for event in profile.key_averages()}
    assert "aten::baddbmm" in ops  # the profile did see the grouped layers
    assert not ops & SYNCING_OPS, sorted(ops & SYNCING_OPS)
