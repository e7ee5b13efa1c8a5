"""A model isoprobe did not build, with isoprobe's hook names: `HookedForeignModel`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

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
                 inputs: Callable[..., tuple] | None = None, own_hooks: dict | None = None):
        super().__init__()
        self.model = model
        self.layout = layout
        self.modality_names = layout.modality_names
        self.attention_modules = tuple(name for name, _ in attention)
        self.logits_of = logits or (lambda out: out)
        self.inputs_of = inputs or (lambda *windows: windows)
        self.register_buffer("token_modalities", layout.token_modalities, persistent=False)
        self.register_buffer("prediction_positions", layout.prediction_positions, persistent=False)
        if own_hooks is not None:  # a HookedRootModule: its hook points under their own names
            n_layers = sum(name.endswith(".attn.hook_attn_scores") for name in own_hooks)
            self.cfg = SimpleNamespace(n_heads=_own_heads(model), n_layers=n_layers)
            own_hooks = dict(own_hooks)
            self.setup()  # names the points after this wrapper ("model.blocks…"): give them back their own
            for name, point in own_hooks.items():
                point.name = name
            self.hook_dict, self.mod_dict = own_hooks, dict(own_hooks)
            return
        self.cfg = SimpleNamespace(n_heads=_heads(attention), n_layers=len(attention))
        self.setup()
        points = {}
        for layer, (name, module) in enumerate(attention):
            for hook_name in HOOK_NAMES:
                point = getattr(module, hook_name)
                point.name = f"blocks.{layer}.attn.{hook_name}"
                points[point.name] = point
            block = _block_of(model, name)
            if block is not None:
                point = ResidualPoint(block, batch_first=getattr(module, "batch_first", True))
                point.name = f"blocks.{layer}.hook_resid_post"
                self.add_module(f"resid_{layer}", point)
                points[point.name] = point
        self.hook_dict, self.mod_dict = points, dict(points)

    def forward(self, *inputs: Any, **options: Any) -> torch.Tensor:
        prepared = self.inputs_of(*inputs)
        if isinstance(prepared, dict):  # keyword arguments, e.g. {"inputs_embeds": tokens}
            return self.logits_of(self.model(**prepared, **options))
        return self.logits_of(self.model(*prepared, **options))


class ResidualPoint(HookPoint):
    """`blocks.{l}.hook_resid_post` [batch, pos, d_model] of a foreign block: the block's output passed
    through this hook point. The relay (a torch forward hook on the block) is registered only while a hook
    is attached here, and removes itself at the first forward after the last one is gone: with nothing
    attached the block runs untouched (PyTorch turns its encoder fast path off when any hook is present)."""

    def __init__(self, block: nn.Module, batch_first: bool = True):
        super().__init__()
        self._block = (block,)  # a tuple: not a submodule of the point
        self.batch_first = batch_first
        self._relay = None

    def add_hook(self, *args, **options):
        super().add_hook(*args, **options)
        if self._relay is None:
            self._relay = self._block[0].register_forward_hook(self._pass)

    def _pass(self, module, args, output):
        if not self._forward_hooks:  # the last hook was removed: step aside
            self._relay.remove()
            self._relay = None
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden if self.batch_first else hidden.transpose(0, 1)
        hidden = self(hidden)
        hidden = hidden if self.batch_first else hidden.transpose(0, 1)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _block_of(model: nn.Module, attention_name: str) -> nn.Module | None:
    """The layer holding an attention module: the element of the nearest ModuleList on its path
    (`encoder.layers.3` for `encoder.layers.3.self_attn`), or None."""
    parts = attention_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        parent = model.get_submodule(".".join(parts[: end - 1])) if end > 1 else model
        if isinstance(parent, nn.ModuleList) and parts[end - 1].isdigit():
            return model.get_submodule(".".join(parts[:end]))
    return None


def _own_heads(model: nn.Module) -> int:
    for config_name in ("cfg", "config"):
        n_heads = getattr(getattr(model, config_name, None), "n_heads", None)
        if isinstance(n_heads, int) and n_heads > 0:
            return n_heads
    from isoprobe.errors import ConfigError

    raise ConfigError("model", type(model).__name__, "a HookedRootModule needs cfg.n_heads (TransformerLens) to be hooked")


def _heads(attention: list[tuple[str, nn.Module]]) -> int:
    counts = {getattr(module, "num_heads", None) or getattr(module, "num_attention_heads", None)
              or getattr(getattr(module, "config", None), "num_attention_heads", None) for _, module in attention}
    if len(counts) != 1 or None in counts:
        from isoprobe.errors import ConfigError

        raise ConfigError("attention", sorted(name for name, _ in attention),
                          f"every attention module needs the same number of heads (found {counts})")
    return counts.pop()
