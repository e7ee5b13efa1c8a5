"""`isoprobe shift`: how far an intervention moves representations off the clean ones (DESIGN §5).

For each condition of a grid and each site at and after its first intervened layer — the residual
stream after each shared layer (`blocks.{l}.hook_resid_post`, [window, pos, d_model]) and the final
representation the prediction head reads (`hook_cls` on the hierarchical model, the pooled modality
vectors `hook_pooled` on the mmt) — taken from the same forward pass as the intervention (the
engine's `capture`):

- cosine: the mean over windows of the per-window cosine similarity of intervened and clean
  representations (per token, averaged over tokens; of the vector for the final representation),
  with a 95% cluster-bootstrap CI over segments;
- MMD²: the paired unbiased MMD² between intervened and clean representations (each window's whole
  representation flattened to one vector; the U-statistic over windows, which leaves each window's
  own clean–intervened kernel value out of the cross term, so its expectation is 0 when nothing moved
  and it is exactly 0 when no representation changed), RBF kernel with the median-heuristic
  bandwidth of the pooled sample, and its paired permutation p-value (hits + 1)/(B + 1): a window's
  clean and intervened representations swap, all windows of one segment together
  (`isoprobe.diagnostics.mmd`);
- mmd2_null95: the 95th percentile of the same B permuted statistics — the size of this MMD² when
  nothing moved, on its own scale (NaN with no permutations).

MMD uses at most `max_windows` windows, a seeded subsample keyed by window (the same windows for
every condition and site, whatever the batch size or the order of the windows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import pandas as pd
import torch

from isoprobe.data.pipeline import WindowSet
from isoprobe.diagnostics.mmd import cosine_per_window, mmd_test, subsample
from isoprobe.engine.ablate import GridOptions, GridPlan, plan_grid
from isoprobe.engine.driver import grid_batches
from isoprobe.engine.grid import Condition, Mode
from isoprobe.engine.interventions import check_intervention
from isoprobe.engine.stats import Segments, cluster_means
from isoprobe.errors import ConfigError
from isoprobe.options import check_choices, check_counts, check_level
from isoprobe.results import TableResult

COLUMNS = ("layers", "pathway", "heads", "intervention", "site", "windows", "segments", "base_accuracy", "accuracy",
           "cosine", "cosine_ci_low", "cosine_ci_high", "mmd_windows", "mmd2", "p_value", "mmd2_null95", "bandwidth")
FINAL_SITES = ("hook_cls", "hook_pooled")  # what the prediction head reads: hierarchical, mmt


@dataclass(frozen=True)
class ShiftConfig(GridOptions):
    mode: Mode = "joint"
    interventions: tuple[str, ...] = ("mask",)
    permutations: int = 1000
    max_windows: int = 1000
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_choices(self)
        names = tuple(p.strip() for p in self.interventions.split(",")) if isinstance(self.interventions, str) \
            else tuple(self.interventions)
        if not names:
            raise ConfigError("intervention", self.interventions, "name at least one of mask, mean, resample")
        for name in names:
            check_intervention(name)
        object.__setattr__(self, "interventions", names)
        check_counts(self, {"permutations": 0, "max_windows": 4, "bootstrap": 0, "seed": 0, "batch_size": 1})
        check_level(self)

    def to_dict(self) -> dict:
        return super().to_dict() | {"interventions": list(self.interventions)}


@dataclass(frozen=True)
class ShiftResult(TableResult):
    kind: ClassVar[str] = "shift"


def final_site(model: torch.nn.Module) -> str | None:
    """The hook point of the representation the prediction head reads, if the model has one."""
    return next((name for name in FINAL_SITES if name in model.hook_dict), None)


def sites_for(condition: Condition, n_layers: int, final: str | None) -> list[str]:
    """The residual stream after each layer from the condition's first intervened layer on, then the
    final representation."""
    return [f"blocks.{layer}.hook_resid_post" for layer in range(min(condition.layers), n_layers)] + ([final] if final else [])


def site_label(site: str) -> str:
    return f"L{int(site.split('.')[1]) + 1} residual" if site.startswith("blocks.") else {"hook_cls": "final CLS",
                                                                                         "hook_pooled": "final pooled"}[site]


def plan_shift(model: torch.nn.Module, config: ShiftConfig) -> GridPlan:
    return plan_grid(model, config, config.interventions)


def shift(model: torch.nn.Module, windows: WindowSet, config: ShiftConfig, reference: WindowSet | None = None,
          device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None,
          plan: GridPlan | None = None) -> ShiftResult:
    """Cosine and MMD² of intervened against clean representations, per condition and site (COLUMNS);
    plan: the grid `plan_shift(model, config)` made (made here when not given)."""
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to evaluate")
    model = model.to(device)
    plan = plan or plan_shift(model, config)
    engine, conditions = plan.engine, list(plan.conditions)
    final = final_site(model)
    sites = {c: sites_for(c, engine.n_layers, final) for c in conditions}
    capture = sorted({s for per in sites.values() for s in per})
    chosen = subsample(len(windows), config.max_windows, config.seed, keys=windows.start)
    in_subsample = np.zeros(len(windows), dtype=bool)
    in_subsample[chosen] = True

    cosines = {(c, s): [] for c in conditions for s in sites[c]}
    vectors = {(c, s): [] for c in conditions for s in sites[c]}  # intervened, subsample only
    clean_vectors = {s: [] for s in capture}
    correct = {c: [] for c in conditions}
    base_correct = []
    target = torch.as_tensor(windows.y).long()
    n_batches = math.ceil(len(windows) / config.batch_size)
    batches = grid_batches(engine, windows, conditions, reference=reference, batch_size=config.batch_size, device=device,
                           seed=config.seed, donor=config.donor, capture=capture)
    for index, batch in enumerate(batches):
        rows, run = batch.rows, batch.run
        keep = torch.as_tensor(in_subsample[rows], device=run.clean.device)
        batch_target = target[rows].to(run.clean.device)
        base_correct.append((run.clean.argmax(1) == batch_target).cpu())
        for site in capture:
            clean_vectors[site].append(run.clean_activations[site][keep].flatten(1).float().cpu())
        for condition, logits, activations in zip(conditions, run.logits, run.activations):
            correct[condition].append((logits.argmax(1) == batch_target).cpu())
            for site in sites[condition]:
                cosines[(condition, site)].append(cosine_per_window(activations[site], run.clean_activations[site]).cpu())
                vectors[(condition, site)].append(activations[site][keep].flatten(1).float().cpu())
        if progress is not None:
            progress(index + 1, n_batches)

    segments, keys = windows.segment, windows.start
    sub_segments, sub_keys = segments[in_subsample], keys[in_subsample]
    base = torch.cat(base_correct).double().numpy()
    rows_out = []
    for condition in conditions:
        accuracy = float(torch.cat(correct[condition]).double().mean())
        for site in sites[condition]:
            cosine = torch.cat(cosines[(condition, site)]).numpy()
            mean, low, high = cluster_means(cosine, Segments.of_windows(windows), config.bootstrap, config.seed, config.level)
            clean_sample, shifted = torch.cat(clean_vectors[site]), torch.cat(vectors[(condition, site)])
            test = mmd_test(clean_sample, shifted, config.permutations, config.seed, paired=True, clusters=sub_segments,
                            keys=sub_keys)
            rows_out.append({
                "layers": condition.layer_label, "pathway": condition.pathway, "heads": condition.head_label,
                "intervention": condition.intervention, "site": site_label(site), "windows": len(windows),
                "segments": len(np.unique(segments)), "base_accuracy": float(base.mean()), "accuracy": accuracy,
                "cosine": float(mean), "cosine_ci_low": float(low), "cosine_ci_high": float(high),
                "mmd_windows": int(in_subsample.sum()), "mmd2": test.mmd2, "p_value": test.p_value,
                "mmd2_null95": test.null95, "bandwidth": test.bandwidth,
            })
    return ShiftResult(config, pd.DataFrame(rows_out, columns=list(COLUMNS)))
