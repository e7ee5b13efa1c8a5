"""Pathway dropout: attention edges of a pathway dropped at random during training (DESIGN §5).

`--pathway-dropout cross:0.3` masks the `cross` edges (scores → −inf, as IsoNet's mask) in each shared
layer of each training window independently with probability 0.3, at every step; evaluation sees
the whole model. Rate 1 removes the pathway structurally instead: it is part of the model
(`removed_pathways` in its configuration), absent in training and at evaluation, and recorded in
the checkpoint. Rate 0 changes nothing: training is bit-identical to training without the option.
"""

from __future__ import annotations

from typing import Sequence

import torch

from isoprobe.engine.interventions import Hook
from isoprobe.models.pathways import Pathway, parse_pathway
from isoprobe.errors import ConfigError

_STREAM = 0xD0D0  # the dropout draws' own random stream, apart from shuffling and initialisation


def parse_pathway_dropout(spec: str | None) -> tuple[tuple[str, float], ...]:
    """`cross:0.3,cls->acc:1` -> (("cross", 0.3), ("cls->acc", 1.0)); pathway names are checked
    against the model later (`check_pathways`)."""
    if not spec:
        return ()
    pairs = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        pathway, _, rate = part.rpartition(":")
        try:
            value = float(rate)
        except ValueError:
            value = None
        if not pathway.strip() or value is None:
            raise ConfigError("pathway_dropout", part, "write pathway:rate pairs such as cross:0.3 or cls->acc:1")
        if not 0.0 <= value <= 1.0:
            raise ConfigError("pathway_dropout", part, "a dropout rate lies in [0, 1] (1 removes the pathway)")
        pairs.append((pathway.strip(), value))
    return tuple(pairs)


def check_pathways(pairs: Sequence[tuple[str, float]], modality_names: tuple[str, ...]) -> None:
    for pathway, _ in pairs:
        try:
            parse_pathway(pathway, modality_names)
        except ConfigError as error:
            raise ConfigError("pathway_dropout", pathway, error.allowed) from None


class PathwayDropout:
    """Training-time hooks dropping each pathway's edges per window and shared layer with its rate.

    The draws come from a CPU generator seeded by the training seed (the same on every device) whose
    state travels with last.pt, so a resumed run draws what an uninterrupted one would."""

    def __init__(self, model: torch.nn.Module, pairs: Sequence[tuple[str, float]], seed: int):
        self.pairs = [(pathway, rate) for pathway, rate in pairs if 0.0 < rate < 1.0]
        check_pathways(self.pairs, tuple(model.modality_names))
        ids = model.token_modalities.cpu()
        self.edges = torch.stack([Pathway(p).edges(ids, tuple(model.modality_names)) for p, _ in self.pairs]) if self.pairs \
            else torch.zeros(0, len(ids), len(ids), dtype=torch.bool)  # [pathway, q, k]
        self.rates = torch.tensor([rate for _, rate in self.pairs])
        self.n_layers = len(model.blocks)
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + _STREAM)
        self._device_edges: dict = {}

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def hooks(self, batch: int, device: torch.device) -> list[Hook]:
        """One hook per shared layer for a batch of `batch` windows, each with its own draws."""
        if device not in self._device_edges:
            self._device_edges[device] = self.edges.to(device)
        edges = self._device_edges[device]
        hooks = []
        for layer in range(self.n_layers):
            dropped = (torch.rand(len(self.pairs), batch, generator=self.generator) < self.rates[:, None]).to(device)
            mask = torch.einsum("p b, p q k -> b q k", dropped.float(), edges.float()) > 0  # [batch, q, k]

            def hook(scores, hook=None, mask=mask):
                return scores.masked_fill(mask[:, None], float("-inf"))
            hooks.append((f"blocks.{layer}.attn.hook_attn_scores", hook))
        return hooks
