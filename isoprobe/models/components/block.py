"""A pre-LayerNorm transformer block with TransformerLens hook points (resid_pre … resid_post)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from isoprobe.models.components.attention import Attention
from isoprobe.models.components.grouped import GroupedLayerNorm, GroupedLinear


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int, n_groups: int = 1):
        super().__init__()
        self.fc_in = GroupedLinear(d_model, d_mlp, n_groups)
        self.fc_out = GroupedLinear(d_mlp, d_model, n_groups)
        self.hook_post = HookPoint()  # [batch, pos, d_mlp], after the non-linearity

    def forward(self, x: torch.Tensor, weight_groups: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc_out(self.hook_post(F.gelu(self.fc_in(x, weight_groups))), weight_groups)


class Block(nn.Module):
    """[batch, pos, d_model] -> [batch, pos, d_model]."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int, n_groups: int = 1, dropout: float = 0.0):
        super().__init__()
        self.ln1 = GroupedLayerNorm(d_model, n_groups)
        self.attn = Attention(d_model, n_heads, n_groups, dropout)
        self.ln2 = GroupedLayerNorm(d_model, n_groups)
        self.mlp = MLP(d_model, d_mlp, n_groups)
        self.dropout = nn.Dropout(dropout)
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, weight_groups: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        resid_pre = self.hook_resid_pre(x)
        attn_out = self.hook_attn_out(self.dropout(self.attn(self.ln1(resid_pre, weight_groups), weight_groups, mask)))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(self.ln2(resid_mid, weight_groups), weight_groups)))
        return self.hook_resid_post(resid_mid + mlp_out)
