"""What the two transformers share: a forward pass in stages and the modality bookkeeping."""

from __future__ import annotations

import torch
from transformer_lens import HookedRootModule

from isoprobe.models.pathways import Pathway


def residual_stream(model, inputs, n_layers: int) -> list[torch.Tensor]:
    """The residual stream of a model that runs in stages (`embed_stage`, `block_stage`, `heads_stage`):
    [the input of shared layer 0, the output of layer 0, …, the output of layer n_layers − 1], each
    [batch, pos, d_model]. The one loop over the stages below a layer (the engine, attribution
    patching and attention attribution all start from here)."""
    stream = [model.embed_stage(*inputs)]
    for layer in range(n_layers):
        stream.append(model.block_stage(layer, stream[-1]))
    return stream


def run_from(model, layer: int, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """The prediction logits [batch, class] from the residual stream `x` entering shared layer `layer`."""
    for above in range(layer, n_layers):
        x = model.block_stage(above, x)
    return model.heads_stage(x)["main"]


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
        return self.heads_stage(residual_stream(self, windows, self.n_layers)[-1])

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        """Class logits [batch, class] from the prediction head; one [batch, time, channel] input per group."""
        return self.forward_heads(*windows)["main"]
