"""Adapters: isoprobe's hook points on attention modules isoprobe did not write, one adapter per
implementation, in a registry (`ADAPTERS`, `register_adapter`).

An adapter installs, on one attention module and in place, the hook points the engine uses —
`hook_q`, `hook_k`, `hook_v`, `hook_z` [batch, pos, head, d_head] and `hook_attn_scores`,
`hook_pattern` [batch, head, query_pos, key_pos] (scaled, pre-softmax scores; TransformerLens
shapes) — and routes the module's forward through an explicit computation only while a hook is
attached to one of them. With no hook attached the module's own forward runs untouched, so the
hooked model's outputs are the original's (fast paths included: a hook attached anywhere below an
`nn.TransformerEncoderLayer` already turns its fused fast path off, as PyTorch documents).

Attention with no logit matrix (linear attention) has no pathway to mask: it is refused, naming the
module, like any implementation no adapter knows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn
from transformer_lens.hook_points import HookPoint

from isoprobe.errors import ConfigError
from isoprobe.models.components.attention import safe_softmax

HOOK_NAMES = ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z")
# Attention modules with no logit matrix: nothing to mask per edge (BIOT's linear_attention_transformer…)
LINEAR_ATTENTION = ("LinearAttention", "SelfAttention_linear", "LinformerSelfAttention", "PerformerAttention",
                    "FastAttention")


@dataclass(frozen=True)
class Adapter:
    """name; matches(module): whether this adapter knows the module; install(module): adds the hook points
    and the explicit path to it, in place."""

    name: str
    matches: Callable[[nn.Module], bool]
    install: Callable[[nn.Module], None]


ADAPTERS: dict[str, Adapter] = {}  # name -> adapter, tried in registration order


def register_adapter(adapter: Adapter) -> Adapter:
    ADAPTERS[adapter.name] = adapter
    return adapter


def adapter_for(module: nn.Module, name: str) -> Adapter:
    """The adapter of an attention module (`name`: its path in the model), or a ConfigError naming it."""
    kind = type(module).__name__
    if kind in LINEAR_ATTENTION:
        raise ConfigError("attention", f"{name} ({kind})", "linear attention has no logit matrix: no edge of it "
                          "can be masked, so isoprobe's pathways do not apply")
    for adapter in ADAPTERS.values():
        if adapter.matches(module):
            return adapter
    raise ConfigError("attention", f"{name} ({type(module).__module__}.{kind})",
                      f"no adapter knows this attention implementation (known: {', '.join(ADAPTERS)}); "
                      "register one with isoprobe.hook.adapters.register_adapter")


def hooked(module: nn.Module) -> bool:
    """Whether a hook is attached to any of the module's isoprobe hook points."""
    return any(point._forward_hooks or point._forward_pre_hooks or point._backward_hooks
               for point in (getattr(module, name, None) for name in HOOK_NAMES) if isinstance(point, HookPoint))


def add_hook_points(module: nn.Module) -> None:
    for name in HOOK_NAMES:
        if not isinstance(getattr(module, name, None), HookPoint):
            module.add_module(name, HookPoint())


# --- torch.nn.MultiheadAttention (and so nn.TransformerEncoderLayer / nn.TransformerEncoder) ---------------

def _install_multihead(module: nn.MultiheadAttention) -> None:
    if module.bias_k is not None or module.add_zero_attn:
        raise ConfigError("attention", "nn.MultiheadAttention(add_bias_kv / add_zero_attn)",
                          "extra key positions have no token of the layout: not supported")
    add_hook_points(module)
    original = module.forward

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not hooked(module):
            return original(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                            attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
        return _explicit_multihead(module, query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)

    module.forward = forward


def _explicit_multihead(module: nn.MultiheadAttention, query, key, value, key_padding_mask, need_weights, attn_mask,
                        average_attn_weights, is_causal):
    """nn.MultiheadAttention's computation written out with the hook points: the same projections, scale,
    masks, softmax (all-masked rows attend to nothing) and output projection. Inputs and outputs as
    nn.MultiheadAttention takes and returns them (batch_first or not; unbatched [pos, d_model] too)."""
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query[:, None], key[:, None], value[:, None]  # [pos, 1, d_model]
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask[None]
    elif module.batch_first:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # -> [pos, batch, d_model]
    heads, d_model = module.num_heads, module.embed_dim
    d_head = d_model // heads
    if module._qkv_same_embed_dim:
        w_q, w_k, w_v = module.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    b_q, b_k, b_v = module.in_proj_bias.chunk(3) if module.in_proj_bias is not None else (None, None, None)
    split = lambda x: rearrange(x, "pos batch (head d_head) -> batch pos head d_head", head=heads)  # noqa: E731
    q = module.hook_q(split(F.linear(query, w_q, b_q)))
    k = module.hook_k(split(F.linear(key, w_k, b_k)))
    v = module.hook_v(split(F.linear(value, w_v, b_v)))
    scores = einsum(q, k, "batch q head d_head, batch k head d_head -> batch head q k") / d_head**0.5
    scores = scores + _additive(attn_mask, key_padding_mask, is_causal, scores)
    pattern = module.hook_pattern(safe_softmax(module.hook_attn_scores(scores)))
    dropped = F.dropout(pattern, module.dropout, module.training)
    z = module.hook_z(einsum(dropped, v, "batch head q k, batch k head d_head -> batch q head d_head"))
    out = module.out_proj(rearrange(z, "batch q head d_head -> q batch (head d_head)"))
    if unbatched:
        out = out[:, 0]
    elif module.batch_first:
        out = out.transpose(0, 1)
    weights = None
    if need_weights:
        weights = pattern.mean(dim=1) if average_attn_weights else pattern
        weights = weights[0] if unbatched else weights
    return out, weights


def _additive(attn_mask, key_padding_mask, is_causal, scores: torch.Tensor) -> torch.Tensor:
    """The masks nn.MultiheadAttention takes, as one additive float mask broadcasting to scores
    [batch, head, q, k]: boolean True = not allowed (−inf), float = added."""
    batch, heads, n_q, n_k = scores.shape
    total = torch.zeros((), dtype=scores.dtype, device=scores.device)
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(n_q, n_k, dtype=torch.bool, device=scores.device).triu(1)
    if attn_mask is not None:
        mask = _as_float(attn_mask, scores.dtype)
        total = total + (mask.view(batch, heads, n_q, n_k) if mask.dim() == 3 else mask)
    if key_padding_mask is not None:
        total = total + _as_float(key_padding_mask, scores.dtype)[:, None, None, :]
    return total


def _as_float(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


register_adapter(Adapter("torch.nn.MultiheadAttention", lambda m: isinstance(m, nn.MultiheadAttention),
                         _install_multihead))


# --- Hugging Face attention modules (the AttentionInterface of transformers ≥ 4.48: BERT, ViT, …) ----------

HF_IMPLEMENTATION = "isoprobe"


def _is_hf_attention(module: nn.Module) -> bool:
    """A transformers attention module that calls the configured attention function with (module, q, k, v,
    mask, scaling, dropout): it has a config naming the implementation, and a scaling."""
    config = getattr(module, "config", None)
    return (type(module).__module__.startswith("transformers.") and hasattr(config, "_attn_implementation")
            and hasattr(module, "scaling"))


def _install_hf(module: nn.Module) -> None:
    """Point the model's config at isoprobe's attention function, which calls the implementation the
    config named before (eager: the model file's own `eager_attention_forward`) while no hook is attached,
    and the explicit computation with the hook points while one is. Masks are built as that
    implementation builds them."""
    import sys

    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    add_hook_points(module)
    config = module.config
    original = config._attn_implementation
    if original != HF_IMPLEMENTATION:
        config._isoprobe_original = original
    original = config._isoprobe_original
    if original == "eager":
        implementation = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
        if implementation is None:
            raise ConfigError("attention", type(module).__name__, "has no eager_attention_forward in its module")
    else:
        implementation = AttentionInterface._global_mapping[original]
    module._isoprobe_attention = implementation
    AttentionInterface.register(HF_IMPLEMENTATION, _hf_attention)
    masks = AttentionMaskInterface._global_mapping
    AttentionMaskInterface.register(HF_IMPLEMENTATION, masks.get(original, masks["eager"]))
    config._attn_implementation = HF_IMPLEMENTATION


def _hf_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0, **options):
    """The attention function transformers calls: q, k, v [batch, head, pos, d_head] -> (z [batch, pos, head,
    d_head], pattern [batch, head, q, k])."""
    if not hooked(module):
        return module._isoprobe_attention(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                          **options)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    q, k, v = (point(x.transpose(1, 2)) for point, x in ((module.hook_q, query), (module.hook_k, key),
                                                          (module.hook_v, value)))  # [batch, pos, head, d_head]
    scores = einsum(q, k, "batch q head d_head, batch k head d_head -> batch head q k") * scaling
    if attention_mask is not None:
        mask = attention_mask[..., : k.shape[1]]
        scores = scores + (_as_float(~mask, scores.dtype) if mask.dtype == torch.bool else mask.to(scores.dtype))
    pattern = module.hook_pattern(safe_softmax(module.hook_attn_scores(scores)))
    dropped = F.dropout(pattern, dropout, module.training)
    z = module.hook_z(einsum(dropped, v, "batch head q k, batch k head d_head -> batch q head d_head"))
    return z.contiguous(), pattern


register_adapter(Adapter("transformers attention interface", _is_hf_attention, _install_hf))
