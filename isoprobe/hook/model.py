"""A model isoprobe did not build, with isoprobe's hook names: `HookedForeignModel`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import torch
from torch import nn
from transformer_lens import HookedRootModule

from isoprobe.hook.adapters import HOOK_NAMES
from isoprobe.hook.layout import TokenLayout


class HookedForeignModel(HookedRootModule):
    """The user's `model` (its weights, not a copy) seen as isoprobe's transformers are seen: its l-th
    attention module's hook points are `blocks.{l}.attn.hook_*`, `token_modalities` and
    `prediction_positions` come from the layout, and the forward returns the logits [batch, class]
    (`logits` turns the model's output into them, e.g. `lambda out: out.logits`). `inputs` turns
    isoprobe's windows — one [batch, time, channel] tensor per modality, in the layout's modality order,
    as every analysis passes them — into the model's arguments: a tuple (positional) or a dict (keywords);
    by default they are passed as they are,
    so the analyses that take a `WindowSet` (ablate, shift, compare, attribute) run on the model."""

    def __init__(self, model: nn.Module, layout: TokenLayout, attention: list[tuple[str, nn.Module]],
                 logits: Callable[[Any], torch.Tensor] | None = None,
                 inputs: Callable[..., tuple] | None = None):
        super().__init__()
        self.model = model
        self.layout = layout
        self.modality_names = layout.modality_names
        self.attention_modules = tuple(name for name, _ in attention)
        self.logits_of = logits or (lambda out: out)
        self.inputs_of = inputs or (lambda *windows: windows)
        self.register_buffer("token_modalities", layout.token_modalities, persistent=False)
        self.register_buffer("prediction_positions", layout.prediction_positions, persistent=False)
        self.cfg = SimpleNamespace(n_heads=_heads(attention), n_layers=len(attention))
        self.setup()
        points = {}
        for layer, (_, module) in enumerate(attention):
            for name in HOOK_NAMES:
                point = getattr(module, name)
                point.name = f"blocks.{layer}.attn.{name}"
                points[point.name] = point
        self.hook_dict, self.mod_dict = points, dict(points)

    def forward(self, *inputs: Any, **options: Any) -> torch.Tensor:
        prepared = self.inputs_of(*inputs)
        if isinstance(prepared, dict):  # keyword arguments, e.g. {"inputs_embeds": tokens}
            return self.logits_of(self.model(**prepared, **options))
        return self.logits_of(self.model(*prepared, **options))


def _heads(attention: list[tuple[str, nn.Module]]) -> int:
    counts = {getattr(module, "num_heads", None) or getattr(module, "num_attention_heads", None)
              or getattr(getattr(module, "config", None), "num_attention_heads", None) for _, module in attention}
    if len(counts) != 1 or None in counts:
        from isoprobe.errors import ConfigError

        raise ConfigError("attention", sorted(name for name, _ in attention),
                          f"every attention module needs the same number of heads (found {counts})")
    return counts.pop()
