"""Train/eval mode as a context: analyses evaluate in eval mode whatever mode the caller left."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model in eval mode (no dropout) for the duration; every submodule's own mode restored
    afterwards, so a caller's mixed modes (a frozen encoder, say) survive."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
