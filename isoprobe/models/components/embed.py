"""Windows to token embeddings: patchify each group, project, add position and modality embeddings."""

from __future__ import annotations

import torch
from torch import nn

from isoprobe.data.tokens import patchify, token_modalities
from isoprobe.models.config import ModelConfig


def group_tokens(windows: tuple[torch.Tensor, ...], config: ModelConfig) -> list[torch.Tensor]:
    """Patches of each group: windows [batch, time, channel] per group -> [batch, pos, d_token] per group."""
    if len(windows) != len(config.groups):
        names = ", ".join(g.name for g in config.groups)
        raise ValueError(f"expected {len(config.groups)} inputs ({names}), got {len(windows)}")
    return [patchify(w, g.group, config.token, config.sampling_rate, g.grids) for w, g in zip(windows, config.groups)]


class TokenEmbed(nn.Module):
    """windows (one [batch, time, channel] tensor per group) -> [batch, pos, d_model].

    With `cls=True` a learned CLS token comes first (modality id 0)."""

    def __init__(self, config: ModelConfig, cls: bool):
        super().__init__()
        self.config, self.cls = config, cls
        self.project = nn.ModuleDict({g.module_name: nn.Linear(g.d_token, config.d_model) for g in config.groups})
        ids = torch.from_numpy(token_modalities([g.n_tokens for g in config.groups]))
        ids = ids if cls else ids[1:]
        self.register_buffer("token_modalities", ids, persistent=False)
        self.pos_embed = nn.Parameter(torch.randn(len(ids), config.d_model) * 0.02)
        self.modality_embed = nn.Parameter(torch.randn(len(config.groups) + 1, config.d_model) * 0.02)
        if cls:
            self.cls_token = nn.Parameter(torch.randn(config.d_model) * 0.02)

    def forward(self, windows: tuple[torch.Tensor, ...]) -> torch.Tensor:
        parts = [self.project[g.module_name](t) for g, t in zip(self.config.groups, group_tokens(windows, self.config))]
        if self.cls:
            batch = parts[0].shape[0]
            parts.insert(0, self.cls_token.expand(batch, 1, -1))
        x = torch.cat(parts, dim=1)
        return x + self.pos_embed + self.modality_embed[self.token_modalities]
