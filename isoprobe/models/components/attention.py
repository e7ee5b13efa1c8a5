"""Multi-head self-attention with TransformerLens hook points and two equivalent code paths.

Fused path: `scaled_dot_product_attention` with an additive float mask, used when no hook needs
the explicit scores or pattern. Explicit path: scores -> hook_attn_scores -> softmax ->
hook_pattern, used as soon as a hook is attached to either (DESIGN §3). A test holds them equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn
from transformer_lens.hook_points import HookPoint

from isoprobe.models.components.grouped import GroupedLinear


def safe_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over keys where a row with every key at -inf attends to nothing (a zero row),
    with finite values and gradients — never NaN (DESIGN §4)."""
    empty = scores.amax(dim=-1, keepdim=True).isneginf()  # [..., query, 1]: one reduction, no full boolean tensor
    if not (torch.is_grad_enabled() and scores.requires_grad):
        # Inference: softmax makes an all -inf row NaN, zeroed in place; two passes over the scores fewer.
        return torch.softmax(scores, dim=-1).masked_fill_(empty, 0.0)
    pattern = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1)  # no NaN to backpropagate through
    return pattern.masked_fill(empty, 0.0)


def _has_hooks(hook: HookPoint) -> bool:
    return bool(hook._forward_hooks or hook._backward_hooks or hook._forward_pre_hooks)


class Attention(nn.Module):
    """x [batch, pos, d_model] -> [batch, pos, d_model].

    Hook shapes follow TransformerLens: hook_q/k/v/z [batch, pos, head, d_head];
    hook_attn_scores/hook_pattern [batch, head, query_pos, key_pos] (scores scaled, pre-softmax,
    structural mask included).
    """

    def __init__(self, d_model: int, n_heads: int, n_groups: int = 1, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads, self.d_head, self.dropout = n_heads, d_model // n_heads, dropout
        self.qkv = GroupedLinear(d_model, 3 * d_model, n_groups)
        self.out = GroupedLinear(d_model, d_model, n_groups)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()

    @property
    def needs_explicit_scores(self) -> bool:
        return _has_hooks(self.hook_attn_scores) or _has_hooks(self.hook_pattern)

    def forward(
        self, x: torch.Tensor, weight_groups: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """mask: additive float [query_pos, key_pos] (0 or -inf), e.g. the multimodal transformer's
        block-diagonal one; None for full attention."""
        q, k, v = rearrange(self.qkv(x, weight_groups), "batch pos (three head d_head) -> three batch pos head d_head",
                            three=3, head=self.n_heads)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        p_drop = self.dropout if self.training else 0.0
        if self.needs_explicit_scores:
            scores = einsum(q, k, "batch q head d_head, batch k head d_head -> batch head q k") / self.d_head**0.5
            if mask is not None:
                scores = scores + mask
            pattern = self.hook_pattern(safe_softmax(self.hook_attn_scores(scores)))
            z = einsum(F.dropout(pattern, p_drop, self.training), v, "batch head q k, batch k head d_head -> batch q head d_head")
        else:
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                attn_mask=None if mask is None else mask.to(q.dtype), dropout_p=p_drop,
            ).transpose(1, 2)
        z = self.hook_z(z)
        return self.out(rearrange(z, "batch pos head d_head -> batch pos (head d_head)"), weight_groups)

    # TransformerLens-shaped views of the weights (group 0): W_Q/W_K/W_V [head, d_model, d_head], W_O [head, d_head, d_model].
    def _qkv_weight(self, index: int) -> torch.Tensor:
        weight = rearrange(self.qkv.weight[0], "d_model (three head d_head) -> three head d_model d_head", three=3, head=self.n_heads)
        return weight[index]

    @property
    def W_Q(self) -> torch.Tensor:
        return self._qkv_weight(0)

    @property
    def W_K(self) -> torch.Tensor:
        return self._qkv_weight(1)

    @property
    def W_V(self) -> torch.Tensor:
        return self._qkv_weight(2)

    @property
    def W_O(self) -> torch.Tensor:
        return rearrange(self.out.weight[0], "(head d_head) d_model -> head d_head d_model", head=self.n_heads)
