"""Bring your own model: `isoprobe.hook(model, layout)` puts isoprobe's hook points on every attention
module of a PyTorch model isoprobe did not build (adapters per implementation: `isoprobe.hook.adapters`)
and returns it as a `HookedForeignModel`, on which the engine's pathways, masks and replacements run as
on isoprobe's own transformers. The token layout (`TokenLayout`) says which positions are CLS and which
belong to which modality.

    from isoprobe.hook import TokenLayout, hook
    hooked = hook(my_encoder, TokenLayout.cls_first({"emg": 12, "acc": 3}))
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable

import torch
from torch import nn

from isoprobe.errors import ConfigError
from isoprobe.hook.adapters import ADAPTERS, LINEAR_ATTENTION, adapter_for, register_adapter
from isoprobe.hook.layout import TokenLayout
from isoprobe.hook.model import HookedForeignModel, foreign_model

__all__ = ["ADAPTERS", "HookedForeignModel", "TokenLayout", "attention_modules", "hook", "register_adapter"]


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's attention modules in forward order (module order), outermost only: an adapter's
    module is not searched inside. Linear attention and unknown `*Attention` modules are refused."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(parent + ".") for parent, _ in found):
            continue
        kind = type(module).__name__
        known = any(adapter.matches(module) for adapter in ADAPTERS.values())
        if known or kind in LINEAR_ATTENTION or (kind.endswith("Attention") and not _wraps_known(module)):
            adapter_for(module, name or type(model).__name__)  # raises for linear and unknown attention
            found.append((name, module))
    return found


def _wraps_known(module: nn.Module) -> bool:
    """A container named like attention whose attention lives in a known submodule (HF's BertAttention)."""
    return any(adapter.matches(child) for child in module.modules() if child is not module
               for adapter in ADAPTERS.values())


def hook(model: nn.Module, layout: TokenLayout, logits: Callable[[Any], torch.Tensor] | None = None,
         inputs: Callable[..., tuple] | None = None, example: tuple | None = None,
         staged: bool = True) -> HookedForeignModel:
    """The model with isoprobe's hook points on every attention module (installed in place, weights not
    copied) as a HookedForeignModel. logits: the model's output -> logits [batch, class] (default: the
    output itself); inputs: isoprobe's per-modality windows -> the model's arguments (default: as they
    are); example: inputs to run once (as the hooked model takes them), so a layout of the wrong length
    is refused here; staged: when the attention modules sit one per block of one nn.ModuleList (or
    nn.Sequential), return a StagedForeignModel, whose grids share the layers below each condition's first
    one (False: run the whole model for each condition)."""
    if _hooked_already(model):
        return HookedForeignModel(model, layout, [], logits, inputs, own_hooks=model.hook_dict)
    attention = attention_modules(model)
    if not attention:
        raise ConfigError("model", type(model).__name__, "has no attention module an adapter knows "
                          f"({', '.join(ADAPTERS)})")
    for name, module in attention:
        adapter_for(module, name).install(module)
        module._isoprobe_positions = len(layout)
    hooked = foreign_model(model, layout, attention, logits, inputs, staged)
    if example is not None:
        _check_length(hooked, example)
    return hooked


def _hooked_already(model: nn.Module) -> bool:
    """A TransformerLens HookedRootModule with `blocks.{l}.attn.hook_attn_scores`: taken as it is."""
    names = getattr(model, "hook_dict", {})
    return any(name.startswith("blocks.") and name.endswith(".attn.hook_attn_scores") for name in names)


def _check_length(hooked: HookedForeignModel, example: tuple) -> None:
    """Run `example` once with the scores watched; the layout must have one group per position."""
    seen = {}

    def watch(scores: torch.Tensor, hook=None) -> None:
        seen.setdefault(hook.name, scores.shape[-1])

    with torch.no_grad():
        hooked.run_with_hooks(*example, fwd_hooks=[(name, watch) for name in hooked.hook_dict
                                                   if name.endswith("hook_attn_scores")])
    for name, length in seen.items():
        hooked.layout.check_length(length, name.rsplit(".", 1)[0])


class _CallablePackage(types.ModuleType):
    """`isoprobe.hook` is this package and, called, the function `hook`: importing the package makes it
    an attribute of `isoprobe`, so the package itself answers `isoprobe.hook(model, layout)`."""

    def __call__(self, model: nn.Module, layout: TokenLayout, *args: Any, **options: Any) -> HookedForeignModel:
        return hook(model, layout, *args, **options)


sys.modules[__name__].__class__ = _CallablePackage
