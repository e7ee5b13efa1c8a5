"""Layers whose parameters may differ per token group (per modality).

With one group they are ordinary layers. With several, each token uses its group's weights —
the multimodal transformer runs one encoder per modality this way over a single token sequence,
so every architecture exposes the same `blocks.{l}` hook points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupedLinear(nn.Module):
    """x [batch, pos, d_in] -> [batch, pos, d_out] with weight [group, d_in, d_out] chosen per token."""

    def __init__(self, d_in: int, d_out: int, n_groups: int = 1):
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n_groups, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_groups, d_out))

    def forward(self, x: torch.Tensor, weight_groups: torch.Tensor | None = None) -> torch.Tensor:
        if self.weight.shape[0] == 1:
            # addmm fuses the bias into the matmul and, under autocast, keeps the matmul's dtype
            # (a separate `+ bias` would promote bf16 activations back to fp32).
            weight, bias = self.weight.squeeze(0), self.bias.squeeze(0)
            return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], weight.shape[1])
        # Several groups: each position's weight gathered ([pos, d_in, d_out], small next to the
        # activations) and one batched matmul over positions, the same flops as one matmul per group.
        # Selecting a group's tokens with a boolean mask instead costs a host-device sync per call on
        # CUDA (nonzero), which left the multimodal transformer launch-bound.
        # Under autocast baddbmm casts all three operands, so the output keeps the matmul's dtype.
        weight, bias = self.weight[weight_groups], self.bias[weight_groups]
        out = torch.baddbmm(bias.unsqueeze(1), x.transpose(0, 1), weight)  # [pos, batch, d_out]
        return out.transpose(0, 1)


class GroupedLayerNorm(nn.Module):
    """LayerNorm over d_model with a scale and shift per token group: [batch, pos, d_model]."""

    def __init__(self, d_model: int, n_groups: int = 1, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_groups, d_model))
        self.bias = nn.Parameter(torch.zeros(n_groups, d_model))

    def forward(self, x: torch.Tensor, weight_groups: torch.Tensor | None = None) -> torch.Tensor:
        if self.weight.shape[0] == 1:
            return F.layer_norm(x, x.shape[-1:], self.weight.squeeze(0), self.bias.squeeze(0), self.eps)
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight[weight_groups] + self.bias[weight_groups]
