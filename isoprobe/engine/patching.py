"""Activation patching in TransformerLens's spirit: a clean run, a corrupted run, and for each hook
name the corrupted run with that one activation taken from the clean run -> an effect table.

The engine's `mean`/`resample` interventions are the pathway-level relatives of this."""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import torch

from isoprobe.engine.stats import logit_margin
from isoprobe.errors import ConfigError

Metric = Callable[[torch.Tensor], float]


def margin_metric(labels: torch.Tensor) -> Metric:
    """Mean true-class logit margin (true logit minus the largest other)."""
    return lambda logits: float(logit_margin(logits.float(), labels.to(logits.device)).mean())


@torch.no_grad()
def patch_activations(model, clean: Sequence[torch.Tensor], corrupted: Sequence[torch.Tensor], hook_names: Sequence[str],
                      metric: Metric) -> pd.DataFrame:
    """One row per hook: metric on the clean, corrupted and patched runs, and the fraction of the
    clean–corrupted gap that patching that activation restores.

    clean, corrupted: the model's inputs (same shapes); hook_names: e.g. `blocks.2.hook_resid_pre`."""
    unknown = [name for name in hook_names if name not in model.hook_dict]
    if unknown:
        raise ConfigError("hook_names", unknown, "not hook points of this model (see model.hook_dict)")
    wanted = set(hook_names)
    _, cache = model.run_with_cache(*clean, names_filter=lambda name: name in wanted)
    clean_value = metric(model(*clean))  # without cache hooks: the fused attention path, like the patched runs
    corrupted_value = metric(model(*corrupted))
    gap = clean_value - corrupted_value
    rows = []
    for name in hook_names:
        def restore(activation, hook, name=name):
            return cache[name].to(activation.dtype)
        patched = metric(model.run_with_hooks(*corrupted, fwd_hooks=[(name, restore)]))
        rows.append({"hook": name, "clean": clean_value, "corrupted": corrupted_value, "patched": patched,
                     "restored": (patched - corrupted_value) / gap if gap != 0 else float("nan")})
    return pd.DataFrame(rows)
