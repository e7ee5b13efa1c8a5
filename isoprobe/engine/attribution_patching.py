"""Attribution patching: a first-order estimate of every masking condition of a grid from one clean
forward and one backward pass (DESIGN §5; Nanda's attribution patching with the exact attention
change of AtP*, Kramár et al. 2024).

Masking a pathway at a layer changes that layer's attention pattern A [batch, head, q, k] to A′: the
condition's edges removed and each touched row renormalised by the softmax (a row left with no key
attends to nothing). That change is computed exactly from the clean pattern; only what follows it
is linearised, with the gradient of the metric M with respect to the pattern from one backward pass:

    M(masked) − M(clean) ≈ Σ_layers ⟨∂M/∂A_l, A′_l − A_l⟩.

Linearising the scores instead (a gate on the edges) misses most of the effect where a row keeps
little attention outside the masked edges: the softmax is then flat in the gate until it is nearly
closed (the saturation AtP* fixes). The estimate is exact when M is linear in the patterns of the
condition's layers (one attention layer and a linear read-out, say); it is least reliable where the
pattern change is large and passes through later layers, and for conditions over several layers,
whose per-layer changes are added without their interactions. Each row reports the clean attention
its edges hold (`masked_mass`, and its `largest_row_mass`) and the exact grid on a subset says how
far off the estimates are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import pandas as pd
import torch
from einops import einsum
from scipy.stats import spearmanr

from isoprobe.data.batches import window_batches
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.ablate import AblationConfig, GridPlan, plan_ablation
from isoprobe.engine.grid import Condition, InterventionEngine, attached
from isoprobe.engine.interventions import head_mask
from isoprobe.engine.stats import Segments, cluster_means, logit_margin
from isoprobe.errors import ConfigError
from isoprobe.models.components.staged import residual_stream, run_from
from isoprobe.models.modes import evaluating
from isoprobe.results import TableResult


@dataclass
class MaskingEstimates:
    """One batch. estimates: [batch, condition], the estimated change of the metric when masking;
    held: layer -> [condition at that layer, head, query_pos], the clean attention on each condition's
    edges summed over the batch (see `masked_mass`)."""

    clean: torch.Tensor  # logits [batch, class]
    estimates: torch.Tensor
    held: dict[int, torch.Tensor]


def _layer_masks(engine: InterventionEngine, conditions: Sequence[Condition], device) -> dict[int, tuple[list[int], torch.Tensor]]:
    """Per layer: the indices of the conditions acting there and their masks [condition, head, q, k]."""
    n_heads = engine.n_heads
    layers: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
    for index, condition in enumerate(conditions):
        if condition.intervention != "mask":
            raise ConfigError("intervention", condition.intervention, "attribution patching estimates mask conditions only")
        mask = engine.edges(condition.pathway).to(device)[None] & head_mask(condition.heads, n_heads, device)[:, None, None]
        for layer in condition.layers:
            layers.setdefault(layer, ([], []))
            layers[layer][0].append(index)
            layers[layer][1].append(mask)
    return {layer: (indices, torch.stack(masks).float()) for layer, (indices, masks) in layers.items()}


def pattern_change_effect(pattern: torch.Tensor, gradient: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """⟨∂M/∂A, A′ − A⟩ per window and condition, A′ being A with each condition's edges masked and its
    rows renormalised (rows of a softmax sum to 1; an emptied row becomes zero).

    pattern, gradient: [batch, head, q, k]; masks: [condition, head, q, k] -> [batch, condition]."""
    weighted = gradient * pattern
    masks, kept_edges = masks.to(pattern.dtype), (1 - masks).to(pattern.dtype)
    per_row = "batch head q k, condition head q k -> batch condition head q"
    held, kept = einsum(pattern, masks, per_row), einsum(pattern, kept_edges, per_row)
    weighted_masked, weighted_kept = einsum(weighted, masks, per_row), einsum(weighted, kept_edges, per_row)
    # A′ − A is −A on the masked edges and A·held/kept on the kept ones (the row renormalised), each
    # part summed directly: differences of whole-row sums would lose every digit in a row keeping
    # 1e-6 of its attention, and would not be exactly 0 where the masked edges hold nothing. An
    # emptied row (kept = 0) loses all its attention.
    scale = torch.where(kept > 0, held / kept.clamp_min(torch.finfo(kept.dtype).tiny), -1.0)
    return (scale * weighted_kept - weighted_masked).sum(dim=(2, 3))


def masked_mass(engine: InterventionEngine, conditions: Sequence[Condition], held: dict[int, torch.Tensor],
                n_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean attention a condition's edges hold in the (layer, head, query) rows they touch,
    averaged over windows: (mean over those rows [condition], largest row [condition])."""
    mean, largest = torch.zeros(len(conditions)), torch.zeros(len(conditions))
    rows_of: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(conditions))}
    for layer, (indices, masks) in _layer_masks(engine, conditions, "cpu").items():
        per_row = held[layer].cpu() / n_windows  # [condition, head, q]
        touched = masks.any(dim=-1)
        for position, index in enumerate(indices):
            rows_of[index].append(per_row[position][touched[position]])
    for index, rows in rows_of.items():
        values = torch.cat(rows) if rows else torch.zeros(0)
        if len(values):
            mean[index], largest[index] = values.mean(), values.max()
    return mean, largest


def _forward_from(engine: InterventionEngine, inputs: Sequence[torch.Tensor], first: int) -> torch.Tensor:
    """Logits with autograd recording only from shared layer `first` on (staged models): the
    embedding, the modality encoders and the layers below run without a graph."""
    model = engine.model
    if not engine.staged:
        with torch.enable_grad():
            return model(*inputs)
    with torch.no_grad():
        x = residual_stream(model, inputs, first)[-1]
    with torch.enable_grad():
        return run_from(model, first, x, engine.n_layers)


def estimate_masking(engine: InterventionEngine, inputs: Sequence[torch.Tensor], conditions: Sequence[Condition],
                     target: torch.Tensor, chunk: int = 16) -> MaskingEstimates:
    """First-order estimates of each mask condition's change of the true-class logit margin, per
    window, from one forward and one backward pass. inputs: one [batch, time, channel] tensor per
    modality; target: [batch] class indices; chunk: conditions per step of the estimate (memory)."""
    engine.check(conditions)
    layer_masks = _layer_masks(engine, conditions, inputs[0].device)
    patterns: dict[int, torch.Tensor] = {}

    def keep(pattern, hook):
        patterns[int(hook.name.split(".")[1])] = pattern

    model = engine.model
    hooks = [(f"blocks.{layer}.attn.hook_pattern", keep) for layer in layer_masks]
    with evaluating(model), attached(model, hooks):
        logits = _forward_from(engine, inputs, min(layer_masks, default=engine.n_layers))
        metric = logit_margin(logits.float(), target.to(logits.device)).sum()  # windows are independent
        layers = sorted(patterns)
        with torch.enable_grad():
            gradients = dict(zip(layers, torch.autograd.grad(metric, [patterns[l] for l in layers], allow_unused=True)))
    estimates = torch.zeros(len(inputs[0]), len(conditions), device=logits.device, dtype=torch.float64)
    # A condition null by construction cannot change the prediction (InterventionEngine): its
    # estimate stays exactly 0, as its exact effect is.
    estimated = [not engine.null_by_construction(condition) for condition in conditions]
    held = {}
    with torch.no_grad():
        for layer, (indices, masks) in layer_masks.items():
            dtype = torch.float64 if patterns[layer].dtype == torch.float64 else torch.float32  # bf16 -> float32
            pattern = patterns[layer].detach().to(dtype)
            gradient = gradients[layer]
            gradient = torch.zeros_like(pattern) if gradient is None else gradient.to(dtype)
            positions = [position for position, index in enumerate(indices) if estimated[index]]
            for start in range(0, len(positions), chunk):
                part = positions[start : start + chunk]
                estimates[:, [indices[p] for p in part]] += pattern_change_effect(pattern, gradient, masks[part])
            held[layer] = einsum(pattern.float(), masks, "batch head q k, condition head q k -> condition head q")
    return MaskingEstimates(logits.detach(), estimates, held)


@dataclass(frozen=True)
class AttributionPatchingResult(TableResult):
    """One row per condition (APPROX_COLUMNS), and the agreement with the exact grid on the checked
    conditions: {checked, spearman, mean_abs_error, sign_agreement, and the same over the rows in the
    linear regime}."""

    agreement: dict = field(default_factory=dict)
    per_window: np.ndarray | None = None  # [window, condition] estimated change of the margin
    clean_margin: np.ndarray | None = None  # [window] the clean true-class logit margin
    kind: ClassVar[str] = "ablation-approx"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "agreement": dict(self.agreement)}


APPROX_COLUMNS = ("layers", "pathway", "heads", "windows", "segments", "estimate", "ci_low", "ci_high", "masked_mass",
                  "largest_row_mass", "regime", "exact", "abs_error", "same_sign")
# A touched row losing more than this share of its attention changes so much that what follows the
# layer no longer responds linearly (on trained models: masking `cls`, which empties CLS's own row).
SATURATING = 0.9
SIGN_FLOOR = 0.05  # signs are compared where the exact effect is at least this share of the grid's largest


def checked_subset(n_conditions: int, check: int) -> list[int]:
    """Which conditions to also run exactly: `check` of them spread evenly over the grid (all if
    check < 0 or ≥ the grid)."""
    if check < 0 or check >= n_conditions:
        return list(range(n_conditions))
    return sorted({int(round(i)) for i in np.linspace(0, n_conditions - 1, check)}) if check else []


def agreement(estimate: np.ndarray, exact: np.ndarray) -> dict:
    """Spearman ρ, mean |estimate − exact|, and the share of equal signs among the conditions whose
    exact effect is at least SIGN_FLOOR of the largest (signs of near-zero effects mean nothing)."""
    if len(exact) == 0:
        return {"checked": 0, "spearman": float("nan"), "mean_abs_error": float("nan"), "sign_agreement": float("nan")}
    varied = len(exact) > 2 and np.ptp(exact) > 0 and np.ptp(estimate) > 0
    rho = spearmanr(estimate, exact).statistic if varied else float("nan")
    large = np.abs(exact) >= SIGN_FLOOR * np.abs(exact).max() if np.abs(exact).max() > 0 else np.zeros(len(exact), bool)
    signs = np.mean(np.sign(estimate[large]) == np.sign(exact[large])) if large.any() else float("nan")
    return {"checked": int(len(exact)), "spearman": float(rho), "mean_abs_error": float(np.mean(np.abs(estimate - exact))),
            "sign_agreement": float(signs)}


def run_attribution_patching(model: torch.nn.Module, windows: WindowSet, config: AblationConfig, check: int = 12,
               device: str | torch.device = "cpu", progress=None, plan: GridPlan | None = None) -> AttributionPatchingResult:
    """`ablate --approx`: estimate every mask condition of the configured grid from one forward and
    one backward pass per batch, and run `check` of them exactly to measure the agreement."""
    if config.intervention != "mask":
        raise ConfigError("intervention", config.intervention, "--approx estimates the mask intervention only")
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to evaluate")
    model = model.to(device)
    plan = plan or plan_ablation(model, config)
    engine, conditions = plan.engine, list(plan.conditions)
    checked = checked_subset(len(conditions), check)
    names = tuple(model.modality_names)
    targets = torch.as_tensor(windows.y).long()
    estimates, exact, held, margins = [], [], {}, []
    n_batches = math.ceil(len(windows) / config.batch_size)
    for index, inputs in enumerate(window_batches(windows.x, names, config.batch_size, device)):
        target = targets[index * config.batch_size : index * config.batch_size + len(inputs[0])].to(device)
        batch = estimate_masking(engine, inputs, conditions, target)
        estimates.append(batch.estimates.cpu())
        margins.append(logit_margin(batch.clean.double(), target).cpu())
        for layer, value in batch.held.items():
            held[layer] = held.get(layer, 0) + value.cpu()
        if checked:
            run = engine.run_grid(inputs, [conditions[i] for i in checked])
            base = logit_margin(run.clean.float(), target)
            exact.append(torch.stack([logit_margin(x.float(), target) - base for x in run.logits], dim=1).cpu())
        if progress is not None:
            progress(index + 1, n_batches)
    estimate = torch.cat(estimates).double().numpy()  # [window, condition]
    mean, low, high = cluster_means(estimate, Segments.of_windows(windows), config.bootstrap, config.seed, config.level)
    mass, largest = masked_mass(engine, conditions, held, len(windows))
    exact_means = np.full(len(conditions), np.nan)
    if checked:
        exact_means[checked] = torch.cat(exact).double().numpy().mean(axis=0)
    n_segments = len(np.unique(windows.segment))
    rows = []
    for i, condition in enumerate(conditions):
        regime = "saturating" if largest[i] > SATURATING else "linear"
        rows.append({"layers": condition.layer_label, "pathway": condition.pathway, "heads": condition.head_label,
                     "windows": len(windows), "segments": n_segments, "estimate": float(mean[i]), "ci_low": float(low[i]),
                     "ci_high": float(high[i]), "masked_mass": float(mass[i]), "largest_row_mass": float(largest[i]),
                     "regime": regime, "exact": float(exact_means[i]),
                     "abs_error": float(abs(mean[i] - exact_means[i])),
                     "same_sign": bool(np.sign(mean[i]) == np.sign(exact_means[i])) if i in checked else None})
    table = pd.DataFrame(rows, columns=list(APPROX_COLUMNS))
    linear = [i for i in checked if table.regime.iloc[i] == "linear"]
    summary = {**agreement(mean[checked], exact_means[checked]),
               "linear": agreement(mean[linear], exact_means[linear]),
               "metric": "true-class logit margin"}
    return AttributionPatchingResult(config, table, summary, estimate, torch.cat(margins).numpy())
