"""`isoprobe ablate`: a grid of pathway interventions on a trained checkpoint, one row per condition."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.donors import DonorRule
from isoprobe.engine.grid import Condition, InterventionEngine, Mode, build_conditions
from isoprobe.engine.driver import grid_batches
from isoprobe.engine.interventions import INTERVENTIONS, check_intervention
from isoprobe.layersets import parse_layers
from isoprobe.models.pathways import parse_heads, pathway_rows
from isoprobe.engine.stats import Segments, cluster_means, grid_statistics, holm
from isoprobe.errors import ConfigError
from isoprobe.options import Options, check_choices, check_counts, check_level
from isoprobe.results import TableResult

COLUMNS = ("layers", "window_centre", "pathway", "heads", "intervention", "draws", "windows", "segments", "base_accuracy",
           "accuracy", "accuracy_draw_sd", "drop", "drop_ci_low", "drop_ci_high", "relative_drop", "chance",
           "chance_corrected_drop", "chance_corrected_ci_low", "chance_corrected_ci_high", "chance_corrected_undefined",
           "p_value", "p_holm", "logit_margin_base", "logit_margin", "logit_margin_change", "logit_margin_change_ci_low",
           "logit_margin_change_ci_high", "kl", "prob_change", "prob_change_ci_low", "prob_change_ci_high",
           "null_by_construction", "caveat")


@dataclass(frozen=True)
class GridOptions(Options):
    """What every grid of conditions is asked with (ablate, shift): the layers, pathways and heads as
    the command line writes them (checked against a model by `plan_grid`), how layers combine (`window`
    K > 0: the K layers centred on each listed layer, `isoprobe.engine.grid.build_conditions`), the
    donors' rule, and the seed, resamples and level of the statistics."""

    layers: str = "all"
    pathway: str = "cross"
    heads: str = "all"
    mode: Mode = "single"
    window: int = 0
    mask_self: bool = False
    donor: DonorRule = "any"
    bootstrap: int = 1000
    level: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class AblationConfig(GridOptions):
    intervention: str = "mask"  # a registered intervention (isoprobe.engine.interventions)
    draws: int = 1
    permutations: int = 9999
    batch_size: int = 512
    correct_only: bool = False  # the statistics over the windows the clean model classifies correctly

    def __post_init__(self) -> None:
        check_choices(self)
        check_intervention(self.intervention)
        # A zero batch size would reach range() as a zero step, a negative one would evaluate nothing.
        check_counts(self, {"batch_size": 1, "bootstrap": 0, "permutations": 0, "draws": 1, "window": 0})
        if self.draws > 1 and not INTERVENTIONS[self.intervention].takes_donors:
            raise ConfigError("draws", self.draws, "several donor draws only make sense with an intervention that takes "
                              "donors (resample)")
        check_level(self)


@dataclass(frozen=True)
class KnockoutConfig(AblationConfig):
    """`ablate` as attention-knockout studies of vision-language models report it (Geva et al. 2023; Zhang
    et al., CVPR 2025): a window of layers centred on each layer, the correctly classified windows only,
    one row per directed pair of modalities and for relay and readout; read `prob_change`."""

    pathway: str = "pairs,relay,readout"
    window: int = 3
    correct_only: bool = True


@dataclass(frozen=True)
class AblationResult(TableResult):
    """One row per condition (COLUMNS) and the configuration that produced them."""

    kind: ClassVar[str] = "ablation"

    @property
    def base_accuracy(self) -> float:
        return float(self.table.base_accuracy.iloc[0]) if len(self.table) else float("nan")


@dataclass(frozen=True)
class GridPlan:
    """A grid checked against a model before any data are read, the one place its layers, pathways and
    heads are parsed: the engine on that model and the conditions (each layer set as 0-based indices,
    each pathway in its canonical spelling)."""

    engine: InterventionEngine
    conditions: tuple[Condition, ...]


def plan_grid(model: torch.nn.Module, options: GridOptions, interventions: Sequence[str] = ("mask",), draws: int = 1,
              engine: InterventionEngine | None = None) -> GridPlan:
    """The conditions `options` ask for, for each of `interventions`, against `model` (layers, heads and
    pathway names checked; a bad one raises ConfigError naming the option). engine: one built with an
    explicit token layout (a model that does not declare its own), else built here."""
    engine = engine or InterventionEngine(model, mask_self=options.mask_self)
    layers = parse_layers(options.layers, engine.n_layers)
    pathways = [p.name for p in pathway_rows(options.pathway, engine.modality_names)]
    if not pathways:
        raise ConfigError("pathway", options.pathway, "name at least one pathway, e.g. cross")
    heads = parse_heads(options.heads, engine.n_heads)
    return grid_plan(engine, options.mode, layers, pathways, heads, interventions, draws, options.window)


def grid_plan(engine: InterventionEngine, mode: str, layers: Sequence[int], pathways: Sequence[str],
              heads: tuple[int, ...] | None, interventions: Sequence[str], draws: int = 1, window: int = 0) -> GridPlan:
    """The plan of already parsed parts (0-based layers, canonical pathway names): `draws` donor draws for
    the interventions that take donors, one for the others; `window` as `build_conditions` takes it."""
    return GridPlan(engine, tuple(condition for name in interventions
                                  for condition in build_conditions(mode, layers, pathways, heads, name,
                                                                    draws if INTERVENTIONS[name].takes_donors else 1,
                                                                    window, engine.n_layers)))


def plan_ablation(model: torch.nn.Module, config: AblationConfig) -> GridPlan:
    return plan_grid(model, config, (config.intervention,), config.draws)


@dataclass
class GridLogits:
    """Logits of a whole evaluated set: clean [window, class] and per condition [window, class]."""

    conditions: list[Condition]
    clean: torch.Tensor
    logits: dict[Condition, torch.Tensor]
    engine: InterventionEngine


def ablation_logits(model: torch.nn.Module, windows: WindowSet, config: AblationConfig, reference: WindowSet | None = None,
                    device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None,
                    plan: GridPlan | None = None) -> GridLogits:
    """Evaluate the configured grid on every window, batch by batch (no result depends on the batch size).

    reference: windows for the `mean` intervention (the training split; default `windows`).
    Donors for `resample` are drawn over all of `windows`, keyed by `windows.start` (see
    `isoprobe.engine.donors`), and gathered batch by batch next to the windows they serve. plan: the
    grid `plan_ablation(model, config)` made (made here when not given)."""
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to evaluate")
    model = model.to(device)
    plan = plan or plan_ablation(model, config)
    engine, conditions = plan.engine, list(plan.conditions)
    n_batches = math.ceil(len(windows) / config.batch_size)
    clean, per_condition = [], [[] for _ in conditions]
    batches = grid_batches(engine, windows, conditions, reference=reference, batch_size=config.batch_size, device=device,
                           seed=config.seed, donor=config.donor)
    for index, batch in enumerate(batches):
        run = batch.run
        clean.append(run.clean.float().cpu())
        for store, logits in zip(per_condition, run.logits):
            store.append(logits.float().cpu())
        if progress is not None:
            progress(index + 1, n_batches)
    return GridLogits(conditions, torch.cat(clean), {c: torch.cat(parts) for c, parts in zip(conditions, per_condition)},
                      engine)


def run_ablation(model: torch.nn.Module, windows: WindowSet, config: AblationConfig, reference: WindowSet | None = None,
                 device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None,
                 plan: GridPlan | None = None) -> AblationResult:
    """One row per condition (COLUMNS) on `windows` (their labels `y`, segments and `start` keys);
    see `ablation_logits` for the evaluation. With `correct_only`, the statistics are over the windows
    the clean model classifies correctly (donors are still drawn from every window)."""
    grid = ablation_logits(model, windows, config, reference, device, progress, plan)
    rows = list(dict.fromkeys(c.row for c in grid.conditions))  # the draws of one condition make one row
    stacked = [torch.stack([x for c, x in grid.logits.items() if c.row == row]) for row in rows]  # [draw, window, class]
    target, clean = torch.as_tensor(windows.y).long(), grid.clean
    if config.correct_only:
        kept = (clean.argmax(1) == target).numpy()
        if not kept.any():
            raise ConfigError("correct_only", True, "the clean model classifies no window correctly: nothing to keep")
        windows, target, clean = windows.take(np.flatnonzero(kept)), target[kept], clean[kept]
        stacked = [row[:, kept] for row in stacked]
    segments = Segments.of_windows(windows)
    stats = grid_statistics(clean, stacked, target, segments, config.bootstrap, config.permutations, config.seed,
                            config.level)
    changes = [probability_change(clean, row, target) for row in stacked]  # each [window]
    for s, change in zip(stats, changes):
        mean, low, high = cluster_means(change, segments, config.bootstrap, config.seed, config.level, bounds=(-1.0, np.inf))
        s.update(prob_change=float(mean), prob_change_ci_low=float(low), prob_change_ci_high=float(high))
    null = np.array([grid.engine.null_by_construction(row) for row in rows])
    # Rows null by construction are not hypotheses: they stay out of the Holm family.
    p_holm = holm(np.where(null, np.nan, [s["p_value"] for s in stats]))
    table = pd.DataFrame(
        [{"layers": row.layer_label, "window_centre": float("nan") if row.centre is None else row.centre + 1,
          "pathway": row.pathway, "heads": row.head_label, "intervention": row.intervention,
          **s, "p_holm": float(p), "null_by_construction": bool(n)} for row, s, p, n in zip(rows, stats, p_holm, null)],
        columns=list(COLUMNS))
    return AblationResult(config, table)


def probability_change(clean: torch.Tensor, intervened: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Relative change of the true class's probability, (p_new − p_base) / p_base, per window, averaged
    over draws: clean [window, class], intervened [draw, window, class], target [window] -> [window].
    Computed as exp(log p_new − log p_base) − 1 in float64, so a tiny p_base never divides by zero."""
    index = target[None, :, None].expand(intervened.shape[0], -1, 1)
    log_base = torch.log_softmax(clean.double(), -1).gather(1, target[:, None])[:, 0]
    log_new = torch.log_softmax(intervened.double(), -1).gather(2, index)[..., 0]
    return torch.expm1(log_new - log_base).mean(0).numpy()
