"""Hierarchical transformer (IsoNet): modality-specific encoders, then a shared stage L1–L5 where
cross-modal attention happens, with dual heads on CLS and on the mean of the other tokens."""

from __future__ import annotations

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from isoprobe.models.components.block import Block
from isoprobe.models.components.embed import TokenEmbed
from isoprobe.models.components.grouped import GroupedLayerNorm
from isoprobe.models.components.staged import StagedTransformer
from isoprobe.models.config import HierarchicalConfig


class ModalityEncoder(nn.Module):
    """A small transformer over one modality's tokens: [batch, pos, d_model] -> same."""

    def __init__(self, config: HierarchicalConfig):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(config.d_model, config.n_heads, config.d_mlp, dropout=config.dropout) for _ in range(config.n_encoder_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class HierarchicalTransformer(StagedTransformer):
    def __init__(self, config: HierarchicalConfig):
        super().__init__()
        self.config = config
        self.embed = TokenEmbed(config, cls=True)
        self.hook_embed = HookPoint()  # [batch, pos, d_model], CLS first
        self.encoders = nn.ModuleDict({g.module_name: ModalityEncoder(config) for g in config.groups})
        self.blocks = nn.ModuleList(
            Block(config.d_model, config.n_heads, config.d_mlp, dropout=config.dropout) for _ in range(config.n_layers)
        )
        self.ln_final = GroupedLayerNorm(config.d_model)
        self.hook_cls, self.hook_avg = HookPoint(), HookPoint()  # [batch, d_model] pooled inputs of the heads
        self.head_cls = nn.Linear(config.d_model, config.n_classes)
        self.head_avg = nn.Linear(config.d_model, config.n_classes)
        # Pathways removed from the shared stage (trained with pathway dropout p = 1): an additive −inf
        # mask, or None so that an ordinary model keeps the unmasked fused attention.
        removed = self.removed_edges()
        self.register_buffer("shared_mask", torch.zeros(removed.shape).masked_fill(removed, float("-inf"))
                             if removed.any() else None, persistent=False)
        self.setup()

    @property
    def attention_edges(self) -> torch.Tensor:
        """Boolean [query_pos, key_pos]: the edges the shared layers can use (all but removed pathways)."""
        n = len(self.token_modalities)
        return torch.ones(n, n, dtype=torch.bool) if self.shared_mask is None else self.shared_mask == 0

    @property
    def prediction_positions(self) -> torch.Tensor:
        """Boolean [pos]: the positions of the last residual stream the prediction reads (CLS alone)."""
        return self.token_modalities == 0

    # The forward pass in three stages, so the intervention engine can share the work below a layer
    # across conditions (DESIGN §4): embed_stage -> block_stage(0 … n_layers-1) -> heads_stage.
    def embed_stage(self, *windows: torch.Tensor) -> torch.Tensor:
        """Embeddings through the modality encoders: the input of blocks.0, [batch, pos, d_model]."""
        x = self.hook_embed(self.embed(windows))
        parts = [x[:, :1]]  # CLS skips the modality encoders
        # Tokens are laid out CLS, then each group in order: static slices, no data-dependent indexing
        # (a boolean mask would make the GPU wait for the host and break torch.compile graphs).
        groups = self.config.groups
        for group, tokens in zip(groups, x[:, 1:].split([g.n_tokens for g in groups], dim=1)):
            parts.append(self.encoders[group.module_name](tokens))
        return torch.cat(parts, dim=1)

    def block_stage(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Shared layer `layer` (0-based): [batch, pos, d_model] -> same."""
        return self.blocks[layer](x, None, self.shared_mask)

    def heads_stage(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of both heads from the last residual stream, [batch, class] each: "main" from CLS
        (the prediction head, DESIGN §3), "avg" from the mean of the non-CLS tokens."""
        x = self.ln_final(x)
        return {"main": self.head_cls(self.hook_cls(x[:, 0])), "avg": self.head_avg(self.hook_avg(x[:, 1:].mean(dim=1)))}
