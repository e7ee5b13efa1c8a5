"""Hook points named as DESIGN §3 says, their shapes, token modality ids, and the multimodal
transformer's lack of cross-modal attention by construction."""

from __future__ import annotations

import pytest
import torch

from isoprobe.data.tokens import TokenConfig
from isoprobe.models.config import HierarchicalConfig
from isoprobe.models.sizing import model_config_for
from isoprobe.models import build_model
from tests.models.helpers import SMALL, batch, cached_run, small_model
from tests.tolerance import assert_close

BLOCK_HOOKS = (
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_mlp_out",
    "hook_resid_post",
)


def _design_names(prefix: str, n_layers: int) -> set[str]:
    return {f"{prefix}blocks.{layer}.{hook}" for layer in range(n_layers) for hook in BLOCK_HOOKS}


def test_hierarchical_defaults_to_five_shared_layers(prepared):
    config = model_config_for(prepared("emg,acc"), "hierarchical")
    assert isinstance(config, HierarchicalConfig)
    assert config.n_layers == 5


def test_hierarchical_hook_names_follow_design(prepared):
    data = prepared("emg[0:6],emg[6:12]")
    torch.manual_seed(0)
    model = build_model(model_config_for(data, "hierarchical", **SMALL))  # default depth: L1–L5
    names = set(model.hook_dict)

    assert "hook_embed" in names
    shared = {n for n in names if n.startswith("blocks.")}
    # Exactly five shared layers (0..4), each with every DESIGN §3 name; the only other names are the
    # two TransformerLens also has (resid_mid, mlp.hook_post).
    extras = {f"blocks.{layer}.{hook}" for layer in range(5) for hook in ("hook_resid_mid", "mlp.hook_post")}
    assert shared == _design_names("", 5) | extras
    # Encoders are keyed by module name (emg[0:6] -> emg_0_6) and carry the same per-block names.
    assert {g.module_name for g in model.config.groups} == {"emg_0_6", "emg_6_12"}
    for group in model.config.groups:
        encoder = {n for n in names if n.startswith(f"encoders.{group.module_name}.")}
        assert model.config.n_encoder_layers == 1
        assert _design_names(f"encoders.{group.module_name}.", 1) <= encoder
        assert {n.split(".")[3] for n in encoder} == {"0"}
    # Nothing outside the embed hook, the head inputs, encoders and shared blocks.
    assert {n for n in names if not n.startswith(("blocks.", "encoders."))} == {"hook_embed", "hook_cls", "hook_avg"}
    # Every name resolves to the module at that path (the engine looks hooks up by name).
    for name, hook in model.hook_dict.items():
        assert model.get_submodule(name) is hook


def test_hierarchical_run_with_cache_shapes(prepared):
    data = prepared("emg,acc")
    model = small_model(data, "hierarchical").eval()
    xs, _ = batch(data, 3)
    n_pos = 1 + sum(g.n_tokens for g in model.config.groups)
    n_heads, d_head = model.config.n_heads, model.config.d_model // model.config.n_heads
    with torch.no_grad():
        logits, cache = model.run_with_cache(*xs)
    assert logits.shape == (3, data.n_classes)
    assert cache["hook_embed"].shape == (3, n_pos, 16)
    for layer in range(model.config.n_layers):
        prefix = f"blocks.{layer}"
        assert cache[f"{prefix}.attn.hook_attn_scores"].shape == (3, n_heads, n_pos, n_pos)
        assert cache[f"{prefix}.attn.hook_pattern"].shape == (3, n_heads, n_pos, n_pos)
        for hook in ("hook_q", "hook_k", "hook_v", "hook_z"):
            assert cache[f"{prefix}.attn.{hook}"].shape == (3, n_pos, n_heads, d_head)
        for hook in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post"):
            assert cache[f"{prefix}.{hook}"].shape == (3, n_pos, 16)
        # The shared stage attends across all tokens: no structural mask, every pattern row sums to one.
        assert torch.isfinite(cache[f"{prefix}.attn.hook_attn_scores"]).all()
        torch.testing.assert_close(cache[f"{prefix}.attn.hook_pattern"].sum(-1), torch.ones(3, n_heads, n_pos))
    # Residual stream bookkeeping: post = pre + attn_out + mlp_out, and layer l+1 starts where l ends.
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"],
                               cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"] + cache["blocks.0.hook_mlp_out"])
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], cache["blocks.0.hook_resid_post"])
    # Encoders see one modality's tokens only.
    emg = model.config.groups[0]
    assert cache["encoders.emg.blocks.0.attn.hook_pattern"].shape == (3, n_heads, emg.n_tokens, emg.n_tokens)


def test_hierarchical_token_modalities_and_names(prepared):
    data = prepared("emg,acc[0:12]")
    model = small_model(data, "hierarchical")
    ids = model.token_modalities
    n_emg, n_acc = (g.n_tokens for g in model.config.groups)
    assert ids.dtype == torch.long
    assert ids.tolist() == [0] + [1] * n_emg + [2] * n_acc  # CLS first
    assert model.modality_names == ("emg", "acc[0:12]")


@pytest.mark.parametrize("arch", ["mmt", "mlp"])
def test_token_modalities_without_cls(prepared, arch):
    data = prepared("emg[0:6],emg[6:12]")
    model = small_model(data, arch)
    n_first, n_second = (g.n_tokens for g in model.config.groups)
    assert model.token_modalities.dtype == torch.long
    assert model.token_modalities.tolist() == [1] * n_first + [2] * n_second
    assert model.modality_names == ("emg[0:6]", "emg[6:12]")


def test_channel_patches_give_one_token_per_channel(prepared):
    data = prepared("emg,acc")
    model = small_model(data, "hierarchical", token=TokenConfig(patch="channel"))
    assert [g.n_tokens for g in model.config.groups] == [12, 36]
    assert model.token_modalities.tolist() == [0] + [1] * 12 + [2] * 36


def test_mmt_exposes_the_same_block_hooks(prepared):
    data = prepared("emg,acc")
    model = small_model(data, "mmt", n_layers=3)
    assert _design_names("", 3) <= set(model.hook_dict)
    assert {"hook_embed", "hook_pooled"} <= set(model.hook_dict)


@pytest.mark.parametrize("arch", ["hierarchical", "mmt", "mlp"])
def test_forward_heads(prepared, arch):
    data = prepared("emg,acc")
    model = small_model(data, arch).eval()
    xs, _ = batch(data, 4)
    with torch.no_grad():
        heads = model.forward_heads(*xs)
        logits = model(*xs)
    assert set(heads) == ({"main", "avg"} if arch == "hierarchical" else {"main"})
    for value in heads.values():
        assert value.shape == (4, data.n_classes)
    torch.testing.assert_close(heads["main"], logits)  # prediction uses the main (CLS) head
    if arch == "hierarchical":
        assert not torch.allclose(heads["avg"], heads["main"])


def test_wrong_number_of_inputs_is_refused(prepared):
    data = prepared("emg,acc")
    model = small_model(data, "hierarchical")
    xs, _ = batch(data, 2)
    with pytest.raises(ValueError, match="expected 2 inputs"):
        model(xs[0])


# --- the multimodal transformer has no cross-modal attention -----------------------------------


def test_mmt_pattern_is_exactly_zero_across_modalities(prepared):
    model, cache = cached_run(prepared("emg,acc"), "mmt", 4)
    ids = model.token_modalities
    cross = ids[:, None] != ids[None, :]
    assert cross.any() and (~cross).any()
    for layer in range(model.config.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert (pattern[..., cross] == 0).all()
        assert (pattern[..., ~cross] > 0).all()
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))


@pytest.mark.parametrize("explicit", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("modalities", ["emg,acc", "emg[0:6],emg[6:12]"])
def test_mmt_perturbing_one_modality_leaves_the_other_pooled_representation(prepared, modalities, explicit):
    data = prepared(modalities)
    model = small_model(data, "mmt").eval()
    xs, _ = batch(data, 4)
    perturbed = [xs[0] + torch.randn(xs[0].shape, generator=torch.Generator().manual_seed(0)), xs[1]]
    pooled = []
    hooks = [("hook_pooled", lambda t, hook: pooled.append(t.detach().clone()))]
    if explicit:
        hooks.append((lambda name: name.endswith("hook_pattern"), lambda t, hook: None))
    with torch.no_grad():
        model.run_with_hooks(*xs, fwd_hooks=hooks)
        model.run_with_hooks(*perturbed, fwd_hooks=hooks)
    clean, changed = pooled
    assert clean.shape == (4, 2, 16)
    assert_close(changed[:, 1], clean[:, 1])
    assert (changed[:, 0] - clean[:, 0]).abs().max() > 1e-3  # the perturbed modality did change


def test_hierarchical_does_mix_modalities(prepared):
    """The control for the test above: in the hierarchical model, perturbing sEMG moves the
    acc tokens' final residual, because the shared stage attends across modalities."""
    data = prepared("emg,acc")
    model = small_model(data, "hierarchical").eval()
    xs, _ = batch(data, 4)
    perturbed = [xs[0] + torch.randn(xs[0].shape, generator=torch.Generator().manual_seed(0)), xs[1]]
    acc = model.token_modalities == 2
    with torch.no_grad():
        clean, changed = final_residual(model, xs)[:, acc], final_residual(model, perturbed)[:, acc]
        encoder = {}
        hook = ("encoders.acc.blocks.0.hook_resid_post", lambda t, hook: encoder.setdefault(len(encoder), t.clone()))
        model.run_with_hooks(*xs, fwd_hooks=[hook])
        model.run_with_hooks(*perturbed, fwd_hooks=[hook])
    assert (changed - clean).abs().max() > 1e-4
    # ...while the acc encoder itself never sees sEMG.
    assert_close(encoder[1], encoder[0])


def final_residual(model, windows):
    """The residual stream after the last shared layer, [batch, pos, d_model]."""
    x = model.embed_stage(*windows)
    for layer in range(model.n_layers):
        x = model.block_stage(layer, x)
    return x
