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
    final = final_site(model)
    sites = {c: sites_for(c, plan.engine.n_layers, final) for c in plan.conditions}
    in_subsample = np.zeros(len(windows), dtype=bool)
    in_subsample[subsample(len(windows), config.max_windows, config.seed, keys=windows.start)] = True
    collected = _collect(plan, sites, windows, in_subsample, config, reference, device, progress)
    rows = [_row(condition, site, collected, windows, in_subsample, config)
            for condition in plan.conditions for site in sites[condition]]
    return ShiftResult(config, pd.DataFrame(rows, columns=list(COLUMNS)))


@dataclass
class _Collected:
    """What one pass over the windows keeps, on the CPU, concatenated over batches.

    base_correct, correct[c]: [window] bools, clean and under condition c; cosines[(c, site)]: [window];
    clean[site], shifted[(c, site)]: [subsampled window, features], each representation flattened."""

    base_correct: torch.Tensor
    correct: dict[Condition, torch.Tensor]
    cosines: dict[tuple[Condition, str], torch.Tensor]
    clean: dict[str, torch.Tensor]
    shifted: dict[tuple[Condition, str], torch.Tensor]


def _collect(plan: GridPlan, sites: dict[Condition, list[str]], windows: WindowSet, in_subsample: np.ndarray,
             config: ShiftConfig, reference: WindowSet | None, device, progress) -> _Collected:
    """Run the grid once over the windows, capturing every condition's sites beside the clean ones."""
    conditions = list(plan.conditions)
    capture = sorted({s for per in sites.values() for s in per})
    pairs = [(c, s) for c in conditions for s in sites[c]]
    cosines, shifted = {key: [] for key in pairs}, {key: [] for key in pairs}
    clean = {s: [] for s in capture}
    correct, base_correct = {c: [] for c in conditions}, []
    target = torch.as_tensor(windows.y).long()
    n_batches = math.ceil(len(windows) / config.batch_size)
    batches = grid_batches(plan.engine, windows, conditions, reference=reference, batch_size=config.batch_size,
                           device=device, seed=config.seed, donor=config.donor, capture=capture)
    for index, batch in enumerate(batches):
        rows, run = batch.rows, batch.run
        keep = torch.as_tensor(in_subsample[rows], device=run.clean.device)
        batch_target = target[rows].to(run.clean.device)
        base_correct.append((run.clean.argmax(1) == batch_target).cpu())
        for site in capture:
            clean[site].append(run.clean_activations[site][keep].flatten(1).float().cpu())
        for condition, logits, activations in zip(conditions, run.logits, run.activations):
            correct[condition].append((logits.argmax(1) == batch_target).cpu())
            for site in sites[condition]:
                cosines[(condition, site)].append(cosine_per_window(activations[site], run.clean_activations[site]).cpu())
                shifted[(condition, site)].append(activations[site][keep].flatten(1).float().cpu())
        if progress is not None:
            progress(index + 1, n_batches)
    return _Collected(torch.cat(base_correct), _joined(correct), _joined(cosines), _joined(clean), _joined(shifted))


def _joined(batches: dict) -> dict:
    return {key: torch.cat(parts) for key, parts in batches.items()}


def _row(condition: Condition, site: str, collected: _Collected, windows: WindowSet, in_subsample: np.ndarray,
         config: ShiftConfig) -> dict:
    """One row of COLUMNS: the condition's accuracy, the site's cosine with its segment CI, and MMD²."""
    cosine = collected.cosines[(condition, site)].numpy()
    mean, low, high = cluster_means(cosine, Segments.of_windows(windows), config.bootstrap, config.seed, config.level)
    test = mmd_test(collected.clean[site], collected.shifted[(condition, site)], config.permutations, config.seed,
                    paired=True, clusters=windows.segment[in_subsample], keys=windows.start[in_subsample])
    return {
        "layers": condition.layer_label, "pathway": condition.pathway, "heads": condition.head_label,
        "intervention": condition.intervention, "site": site_label(site), "windows": len(windows),
        "segments": len(np.unique(windows.segment)), "base_accuracy": float(collected.base_correct.double().numpy().mean()),
        "accuracy": float(collected.correct[condition].double().mean()),
        "cosine": float(mean), "cosine_ci_low": float(low), "cosine_ci_high": float(high),
        "mmd_windows": int(in_subsample.sum()), "mmd2": test.mmd2, "p_value": test.p_value,
        "mmd2_null95": test.null95, "bandwidth": test.bandwidth,
    }
