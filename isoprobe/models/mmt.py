"""Multimodal transformer: one encoder per modality, pooled per modality, concatenated, then a head.

The encoders run side by side over one token sequence: every layer's weights are chosen per token's
modality and attention is masked block-diagonally, which is exactly separate encoders. So the model
has the same `blocks.{l}.attn` hook points as the hierarchical one while having no cross-modal
attention by construction: masking `cross` on it changes nothing, a built-in control (DESIGN §3).
"""

from __future__ import annotations

import torch
from einops import einsum, rearrange
from torch import nn
from transformer_lens.hook_points import HookPoint

from isoprobe.models.components.block import Block
from isoprobe.models.components.embed import TokenEmbed
from isoprobe.models.components.grouped import GroupedLayerNorm
from isoprobe.models.components.staged import StagedTransformer
from isoprobe.models.config import MMTConfig


class MultimodalTransformer(StagedTransformer):
    def __init__(self, config: MMTConfig):
        super().__init__()
        self.config = config
        n_groups = len(config.groups)
        self.embed = TokenEmbed(config, cls=False)
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(
            Block(config.d_model, config.n_heads, config.d_mlp, n_groups=n_groups, dropout=config.dropout)
            for _ in range(config.n_layers)
        )
        self.ln_final = GroupedLayerNorm(config.d_model, n_groups)
        ids = self.embed.token_modalities
        self.register_buffer("weight_groups", ids - 1, persistent=False)  # weight group per token
        same = ids[:, None] == ids[None, :]
        allowed = same & ~self.removed_edges()  # removed pathways (pathway dropout p = 1) never exist either
        self.register_buffer("within_modality", torch.zeros(same.shape).masked_fill(~allowed, float("-inf")), persistent=False)
        # [modality, pos]: 1/count on the modality's tokens, so pooling is one matmul (a boolean
        # selection per modality would cost a host-device sync on CUDA).
        one_hot = (ids[None, :] == torch.arange(1, n_groups + 1)[:, None]).float()
        self.register_buffer("mean_pool", one_hot / one_hot.sum(dim=1, keepdim=True), persistent=False)
        self.hook_pooled = HookPoint()  # [batch, modality, d_model]
        # Late fusion: a linear head on the concatenation cannot combine the modalities non-linearly
        # (an XOR of an sEMG and an ACC pattern), so by default the head has one hidden layer.
        fused = n_groups * config.d_model
        if config.fusion_hidden:
            self.head = nn.Sequential(nn.Linear(fused, config.fusion_hidden), nn.GELU(), nn.Dropout(config.dropout),
                                      nn.Linear(config.fusion_hidden, config.n_classes))
        else:
            self.head = nn.Linear(fused, config.n_classes)
        self.setup()

    @property
    def attention_edges(self) -> torch.Tensor:
        """Boolean [query_pos, key_pos]: the edges attention can use (within a modality only)."""
        return self.within_modality == 0

    @property
    def prediction_positions(self) -> torch.Tensor:
        """Boolean [pos]: every token is pooled into the prediction."""
        return torch.ones_like(self.weight_groups, dtype=torch.bool)

    # Forward in stages for the intervention engine: embed_stage -> block_stage(l) -> heads_stage.
    def embed_stage(self, *windows: torch.Tensor) -> torch.Tensor:
        """[batch, pos, d_model]: the input of blocks.0."""
        return self.hook_embed(self.embed(windows))

    def block_stage(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[layer](x, self.weight_groups, self.within_modality)

    def heads_stage(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"main": logits [batch, class]}: mean-pool each modality's tokens, concatenate, classify."""
        x = self.ln_final(x, self.weight_groups)
        pooled = einsum(x, self.mean_pool.to(x.dtype), "batch pos d_model, modality pos -> batch modality d_model")
        return {"main": self.head(rearrange(self.hook_pooled(pooled), "batch modality d_model -> batch (modality d_model)"))}
