"""Windows to token embeddings: patchify each group, project, add position and modality embeddings."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from isoprobe.data.tokens import channels_per_token, patchify, token_modalities
from isoprobe.models.config import ModelConfig


def group_tokens(windows: tuple[torch.Tensor, ...], config: ModelConfig) -> list[torch.Tensor]:
    """Patches of each group: windows [batch, time, channel] per group -> [batch, pos, d_token] per group."""
    if len(windows) != len(config.groups):
        names = ", ".join(g.name for g in config.groups)
        raise ValueError(f"expected {len(config.groups)} inputs ({names}), got {len(windows)}")
    return [patchify(w, g.group, config.token, config.sampling_rate, g.grids) for w, g in zip(windows, config.groups)]


def patch_log_power(tokens: torch.Tensor, channels: int, floor: float = 1e-4) -> torch.Tensor:
    """log mean square of each channel within each token: [batch, pos, (time channel)] -> [batch, pos, channel].

    sEMG carries its information in the amplitude envelope of a noise-like carrier: a linear patch
    projection cannot compute power, and a transformer trained on a few hundred windows memorises the
    carrier instead. The log power per channel and patch (the classic RMS feature, per token) lets
    the embedding see amplitude directly; the raw samples stay in the token as well."""
    power = rearrange(tokens, "batch pos (time channel) -> batch pos time channel", channel=channels).pow(2).mean(dim=2)
    return torch.log(power + floor)


class TokenEmbed(nn.Module):
    """windows (one [batch, time, channel] tensor per group) -> [batch, pos, d_model].

    With `cls=True` a learned CLS token comes first (modality id 0). With `config.patch_energy` each
    token is extended by its per-channel log power before the projection."""

    def __init__(self, config: ModelConfig, cls: bool):
        super().__init__()
        self.config, self.cls = config, cls
        self.channels = {g.module_name: channels_per_token(config.token, len(g.channels)) for g in config.groups}
        extra = {name: (count if config.patch_energy else 0) for name, count in self.channels.items()}
        self.project = nn.ModuleDict({g.module_name: nn.Linear(g.d_token + extra[g.module_name], config.d_model) for g in config.groups})
        ids = torch.from_numpy(token_modalities([g.n_tokens for g in config.groups]))
        ids = ids if cls else ids[1:]
        self.register_buffer("token_modalities", ids, persistent=False)
        self.pos_embed = nn.Parameter(torch.randn(len(ids), config.d_model) * 0.02)
        self.modality_embed = nn.Parameter(torch.randn(len(config.groups) + 1, config.d_model) * 0.02)
        if cls:
            self.cls_token = nn.Parameter(torch.randn(config.d_model) * 0.02)

    def forward(self, windows: tuple[torch.Tensor, ...]) -> torch.Tensor:
        parts = []
        for group, tokens in zip(self.config.groups, group_tokens(windows, self.config)):
            if self.config.patch_energy:
                tokens = torch.cat([tokens, patch_log_power(tokens, self.channels[group.module_name])], dim=-1)
            parts.append(self.project[group.module_name](tokens))
        if self.cls:
            batch = parts[0].shape[0]
            parts.insert(0, self.cls_token.expand(batch, 1, -1))
        x = torch.cat(parts, dim=1)
        return x + self.pos_embed + self.modality_embed[self.token_modalities]
