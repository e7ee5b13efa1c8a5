"""Multimodal MLP (linear fusion): per-modality features concatenated, then an MLP.

Features are the flattened patches, or the classic per-channel time-domain set of EMG pattern
recognition (Hudgins et al. 1993; RMS, MAV, WL, ZC, SSC)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from isoprobe.data.tokens import token_modalities
from isoprobe.models.components.embed import group_tokens
from isoprobe.models.config import MLPConfig

N_CLASSIC = 5


def classic_features(windows: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """RMS, MAV, WL, ZC, SSC per channel of z-scored windows [batch, time, channel] -> [batch, channel * 5],
    feature-major (every channel's RMS, then every channel's MAV, ...). WL is the mean absolute step.

    ZC counts sign changes of the signal whose step exceeds `threshold` (in z-score units); SSC counts
    sign changes of the slope where at least one of the two steps exceeds it. Both counts are
    divided by the window length so all five features share a scale."""
    diff = torch.diff(windows, dim=1)
    large = diff.abs() > threshold  # [batch, time - 1, channel]: steps above the threshold
    rms = windows.pow(2).mean(dim=1).sqrt()
    mav = windows.abs().mean(dim=1)
    wl = diff.abs().mean(dim=1)
    crossing = (windows[:, 1:] * windows[:, :-1] < 0) & large
    slope_change = (diff[:, 1:] * diff[:, :-1] < 0) & (large[:, 1:] | large[:, :-1])
    n_time = windows.shape[1]
    zc = crossing.float().sum(dim=1) / n_time
    ssc = slope_change.float().sum(dim=1) / n_time
    return torch.cat([rms, mav, wl, zc, ssc], dim=1)


class MultimodalMLP(HookedRootModule):
    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        if config.features == "patches":
            d_in = sum(g.n_tokens * g.d_token for g in config.groups)
        else:
            d_in = sum(len(g.channels) * N_CLASSIC for g in config.groups)
        self.hook_embed = HookPoint()  # [batch, feature]: the fused feature vector
        widths = (d_in, *config.hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.blocks = nn.ModuleList(_Hidden() for _ in config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(widths[-1], config.n_classes)
        # Modality id per input token (patch) [pos]; the MLP has no CLS and no attention.
        self.register_buffer("token_modalities", torch.from_numpy(token_modalities([g.n_tokens for g in config.groups])[1:]),
                             persistent=False)
        self.setup()

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.config.groups)

    def features(self, windows: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.config.features == "patches":
            return torch.cat([t.flatten(1) for t in group_tokens(windows, self.config)], dim=1)
        return torch.cat([classic_features(w) for w in windows], dim=1)

    def forward_heads(self, *windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"main": logits [batch, class]}: a single head."""
        return {"main": self(*windows)}

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        """Class logits [batch, class]."""
        x = self.hook_embed(self.features(windows))
        for layer, block in zip(self.layers, self.blocks):
            x = block(self.dropout(F.gelu(layer(x))))
        return self.head(x)


class _Hidden(nn.Module):
    """Holds the hook point of one hidden layer: blocks.{l}.hook_resid_post [batch, hidden]."""

    def __init__(self):
        super().__init__()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_resid_post(x)
