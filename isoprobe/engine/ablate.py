"""`isoprobe ablate`: a grid of pathway interventions on a trained checkpoint, one row per condition."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from isoprobe.engine.grid import Condition, InterventionEngine, build_conditions
from isoprobe.engine.pathways import parse_heads, parse_layers, parse_pathway, split_pathways
from isoprobe.engine.stats import condition_row
from isoprobe.errors import ConfigError
from isoprobe.training.metrics import window_batches

COLUMNS = ("layers", "pathway", "heads", "intervention", "n", "base_accuracy", "accuracy", "drop", "relative_drop",
           "drop_ci_low", "drop_ci_high", "p_value", "logit_margin_base", "logit_margin", "logit_margin_change", "kl")


@dataclass(frozen=True)
class AblationConfig:
    layers: str = "all"
    pathway: str = "cross"
    heads: str = "all"
    intervention: str = "mask"
    mode: str = "single"
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 512
    mask_self: bool = False

    def __post_init__(self) -> None:
        # A zero batch size would reach range() as a zero step (a traceback), a negative one would
        # silently evaluate no window; a negative resample count would silently give a NaN interval.
        if self.batch_size < 1:
            raise ConfigError("--batch-size", self.batch_size, "must be a positive number of windows")
        if self.bootstrap < 0:
            raise ConfigError("--bootstrap", self.bootstrap, "a number of resamples ≥ 0 (0: no confidence interval)")


def conditions_for(engine: InterventionEngine, config: AblationConfig) -> list[Condition]:
    layers = parse_layers(config.layers, engine.n_layers)
    pathways = [parse_pathway(p, engine.modality_names).name for p in split_pathways(config.pathway)]
    return build_conditions(config.mode, layers, pathways, parse_heads(config.heads, engine.n_heads), config.intervention)


def run_ablation(model: torch.nn.Module, windows: dict, labels: np.ndarray, config: AblationConfig,
                 reference: dict | None = None, device: str = "cpu", progress=None) -> pd.DataFrame:
    """One row per condition (COLUMNS). windows: group name -> [batch, time, channel]; labels: [batch]
    class indices; reference: windows for the `mean` intervention (default: `windows`)."""
    model = model.to(device).eval()
    engine = InterventionEngine(model, mask_self=config.mask_self, seed=config.seed)
    conditions = conditions_for(engine, config)
    names = tuple(model.modality_names)
    if config.intervention == "mean":
        reference = reference if reference is not None else windows
        engine.fit_means(window_batches(reference, names, config.batch_size, device), conditions)
    if not len(labels):
        raise ConfigError("--data", "", "no windows to evaluate")
    n_batches = math.ceil(len(labels) / config.batch_size)
    clean_all, per_condition = [], [[] for _ in conditions]
    for index, inputs in enumerate(window_batches(windows, names, config.batch_size, device)):
        clean, outs = engine.run_grid(inputs, conditions, batch_index=index)
        clean_all.append(clean.float().cpu())
        for store, logits in zip(per_condition, outs):
            store.append(logits.float().cpu())
        if progress is not None:
            progress(index + 1, n_batches)
    base, target = torch.cat(clean_all), torch.as_tensor(labels).long()
    rows = []
    for condition, logits in zip(conditions, per_condition):
        row = {"layers": condition.layer_label, "pathway": condition.pathway, "heads": condition.head_label,
               "intervention": condition.intervention}
        row.update(condition_row(base, torch.cat(logits), target, config.bootstrap, config.seed))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))
