"""Helpers for model tests: small model factories and evenly spread batches."""

from __future__ import annotations

import numpy as np
import torch

from isoprobe.data.pipeline import PreparedData
from isoprobe.data.tokens import TokenConfig
from isoprobe.models import build_model
from isoprobe.models.sizing import model_config_for

# Small enough that every architecture trains a few steps in a fraction of a second on a CPU.
SMALL = {"d_model": 16, "n_heads": 2, "d_mlp": 32, "dropout": 0.0}
ARCH_OPTIONS = {
    "hierarchical": {"n_layers": 2, "n_encoder_layers": 1},
    "mmt": {"n_layers": 2},
    "mlp": {"hidden": (32,)},
}


def small_model(data: PreparedData, arch: str, token: TokenConfig | None = None, seed: int = 0, **options):
    """A small model of `arch` for `data` (options override SMALL and ARCH_OPTIONS)."""
    torch.manual_seed(seed)
    config = model_config_for(data, arch, token, **(SMALL | ARCH_OPTIONS[arch] | options))
    return build_model(config)


def batch(data: PreparedData, n: int = 12, split: str = "train") -> tuple[list[torch.Tensor], torch.Tensor]:
    """n windows spread evenly over a split (so several classes appear): one [batch, time, channel]
    tensor per group in configuration order, and the class indices [batch]."""
    windows = data.splits[split]
    index = np.linspace(0, len(windows) - 1, n).round().astype(int)
    xs = [torch.from_numpy(np.ascontiguousarray(windows.x[g.name][index])) for g in data.groups]
    return xs, torch.from_numpy(windows.y[index])


def cached_run(data: PreparedData, arch: str, n: int, **options):
    """(small eval-mode model of `arch`, its TransformerLens activation cache on n training windows)."""
    model = small_model(data, arch, **options).eval()
    xs, _ = batch(data, n)
    with torch.no_grad():
        _, cache = model.run_with_cache(*xs)
    return model, cache
