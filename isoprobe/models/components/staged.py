"""What the two transformers share: a forward pass in stages and the modality bookkeeping."""

from __future__ import annotations

import torch
from transformer_lens import HookedRootModule

from isoprobe.models.pathways import Pathway


class StagedTransformer(HookedRootModule):
    """A model whose forward is embed_stage -> block_stage(0 … n_layers-1) -> heads_stage.

    The stages let the intervention engine compute the work below a layer once and share it across
    conditions (DESIGN §4). Subclasses define `embed` (a TokenEmbed), `blocks` and the three stages."""

    @property
    def token_modalities(self) -> torch.Tensor:
        """Modality id per token [pos]: 0 = CLS (if any), i + 1 = group i."""
        return self.embed.token_modalities

    def removed_edges(self) -> torch.Tensor:
        """Boolean [query_pos, key_pos]: edges of the configured `removed_pathways` (self edges stay,
        so no row is ever left without a key)."""
        ids = self.token_modalities
        removed = torch.zeros(len(ids), len(ids), dtype=torch.bool)
        for pathway in getattr(self.config, "removed_pathways", ()):
            removed |= Pathway(pathway).edges(ids.cpu(), self.modality_names)
        return removed

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.config.groups)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def forward_heads(self, *windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head, [batch, class] each; "main" is the prediction head."""
        x = self.embed_stage(*windows)
        for layer in range(self.n_layers):
            x = self.block_stage(layer, x)
        return self.heads_stage(x)

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        """Class logits [batch, class] from the prediction head; one [batch, time, channel] input per group."""
        return self.forward_heads(*windows)["main"]
