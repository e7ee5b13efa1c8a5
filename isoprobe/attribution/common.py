"""What the attribution methods share (DESIGN §5): whose logit they explain, the baseline windows,
and per-window numbers summarised as means with cluster-bootstrap CIs over segments.

Every method follows one contract, after captum's:

    attribute(model, windows: WindowSet, config, reference: WindowSet | None = None,
              device="cpu", progress=None) -> TableResult

`windows` are the evaluated split (labels `y`, `segment`, `start`), `reference` the training split
(for the `mean` baseline); `progress(done, total)` is called as batches finish.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd
import torch

from isoprobe.data.batches import window_batches
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.stats import Segments, cluster_means
from isoprobe.errors import ConfigError
from isoprobe.models.modes import evaluating

Target = Literal["true", "predicted"]
Baseline = Literal["zero", "mean"]

# The long format every attribution table shares (methods may add columns after these):
#   method    ig, layer-ig, attention, interaction, shapley, …
#   site      where the attribution is taken: inputs, hook_embed, encoders, L1 … L5, all layers
#   part      what it is attributed to: a modality, a pathway, a player or a pair of players
#   quantity  what the number is: share (of absolute attribution), sum (signed), delta, value, …
#   estimate, ci_low, ci_high   the mean over windows and its cluster-bootstrap CI over segments
#   windows, segments           how many of each the estimate rests on
COLUMNS = ("method", "site", "part", "quantity", "estimate", "ci_low", "ci_high", "windows", "segments")


def summarise(keys: Sequence[dict], values: np.ndarray, segments: Segments, bootstrap: int, seed: int,
              level: float = 0.95) -> pd.DataFrame:
    """One row per column of `values` [window, row]: its key columns, the mean over windows
    (`estimate`) and a stratified cluster-bootstrap CI over segments (`ci_low`, `ci_high`)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[1] != len(keys):
        raise ValueError(f"{len(keys)} keys for {values.shape[1]} columns of values")
    mean, low, high = cluster_means(values, segments, bootstrap, seed, level)
    return pd.DataFrame([{**key, "estimate": float(m), "ci_low": float(lo), "ci_high": float(hi)}
                         for key, m, lo, hi in zip(keys, mean, low, high)])


@torch.no_grad()
def target_classes(model: torch.nn.Module, windows: WindowSet, target: Target, batch_size: int,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """The class whose logit each window's attribution explains: [window] int64 (true or predicted)."""
    if target == "true":
        return np.asarray(windows.y, dtype=np.int64)
    if target != "predicted":
        raise ConfigError("target", target, "choose true or predicted")
    names = tuple(model.modality_names)
    with evaluating(model):
        return torch.cat([model(*batch).argmax(-1).cpu() for batch in window_batches(windows.x, names, batch_size, device)]).numpy()


def mean_windows(reference: WindowSet, names: Sequence[str], chunk: int = 4096) -> list[torch.Tensor]:
    """The mean window of each modality over the reference set: one [time, channel] tensor each
    (accumulated in float64 chunk by chunk, so a memory-mapped split is never loaded whole)."""
    if not len(reference):
        raise ConfigError("reference", 0, "the mean baseline needs reference (training) windows")
    out = []
    for name in names:
        x = reference.x[name]
        total = sum(np.asarray(x[start : start + chunk], dtype=np.float64).sum(axis=0) for start in range(0, len(x), chunk))
        out.append(torch.as_tensor(total / len(x), dtype=torch.float32))
    return out


def baseline_inputs(kind: Baseline, inputs: Sequence[torch.Tensor], means: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
    """Baseline windows shaped like `inputs` (one [batch, time, channel] tensor per modality):
    zeros (the z-scored data's per-channel training mean), or the training split's mean window."""
    if kind == "zero":
        return tuple(torch.zeros_like(x) for x in inputs)
    if kind == "mean":
        if means is None:
            raise ConfigError("baseline", kind, "needs the training split's mean windows (mean_windows(reference))")
        return tuple(m.to(x.device, x.dtype).expand_as(x).contiguous() for m, x in zip(means, inputs))
    raise ConfigError("baseline", kind, "choose zero or mean")
