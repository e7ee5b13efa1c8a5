"""`isoprobe ablate`: a grid of pathway interventions on a trained checkpoint, one row per condition."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from isoprobe.engine.grid import Condition, InterventionEngine, build_conditions
from isoprobe.engine.pathways import parse_heads, parse_layers, parse_pathway, split_pathways
from isoprobe.engine.stats import condition_row
from isoprobe.errors import ConfigError

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


def _batches(windows: dict, names: tuple[str, ...], labels: np.ndarray, batch_size: int, device):
    n = len(labels)
    for index, start in enumerate(range(0, n, batch_size)):
        inputs = [torch.as_tensor(np.asarray(windows[name][start : start + batch_size]), device=device) for name in names]
        yield index, inputs, torch.as_tensor(labels[start : start + batch_size])


def conditions_for(engine: InterventionEngine, config: AblationConfig, n_heads: int) -> list[Condition]:
    layers = parse_layers(config.layers, engine.n_layers)
    pathways = [parse_pathway(p, engine.modality_names).name for p in split_pathways(config.pathway)]
    return build_conditions(config.mode, layers, pathways, parse_heads(config.heads, n_heads), config.intervention)


def run_ablation(model: torch.nn.Module, windows: dict, labels: np.ndarray, config: AblationConfig,
                 reference: dict | None = None, device: str = "cpu", progress=None) -> pd.DataFrame:
    """One row per condition (COLUMNS). windows: group name -> [batch, time, channel]; labels: [batch]
    class indices; reference: windows for the `mean` intervention (default: `windows`)."""
    model = model.to(device).eval()
    engine = InterventionEngine(model, mask_self=config.mask_self, seed=config.seed)
    n_heads = model.blocks[0].attn.n_heads if hasattr(model, "blocks") else 1
    conditions = conditions_for(engine, config, n_heads)
    names = tuple(model.modality_names)
    if config.intervention == "mean":
        reference = reference if reference is not None else windows
        n_reference = len(next(iter(reference.values())))
        engine.fit_means((inputs for _, inputs, _ in _batches(reference, names, np.zeros(n_reference, dtype=np.int64),
                                                                 config.batch_size, device)), conditions)
    clean_all, per_condition, targets = [], [[] for _ in conditions], []
    batches = list(range(0, len(labels), config.batch_size))
    for index, inputs, target in _batches(windows, names, labels, config.batch_size, device):
        clean, outs = engine.run_grid(inputs, conditions, batch_index=index)
        clean_all.append(clean.float().cpu())
        for store, logits in zip(per_condition, outs):
            store.append(logits.float().cpu())
        targets.append(target)
        if progress is not None:
            progress(index + 1, len(batches))
    if not targets:
        raise ConfigError("--data", "", "no windows to evaluate")
    base, target = torch.cat(clean_all), torch.cat(targets).long()
    rows = []
    for condition, logits in zip(conditions, per_condition):
        row = {"layers": condition.layer_label, "pathway": condition.pathway, "heads": condition.head_label,
               "intervention": condition.intervention}
        row.update(condition_row(base, torch.cat(logits), target, config.bootstrap, config.seed))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))
