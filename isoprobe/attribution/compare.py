"""`isoprobe compare`: the cross-modal share of the decision by every method, side by side (DESIGN §5).

IsoNet's claim rests on one intervention; here seven estimates answer the same question — how much of
the decision runs through direct cross-modal attention (`cross`: tokens of one modality reading
tokens of another) — each on its own scale, with a 95% cluster-bootstrap CI over segments:

  mask (IsoNet)            relative accuracy drop, `cross` masked in all shared layers
  mean ablation            the same with the pathway's contribution set to its training mean
  resample ablation        the same with a donor window's contribution (another window, seeded)
  mask, logit margin       the share of the clean true-class logit margin that masking removes
  attribution patching     the first-order estimate of that share (one forward and backward pass)
  attention attribution    cross edges' share of absolute attention attribution (Hao et al.)
  pathway Shapley          the cross player's share of v(all) − v(none) in the pathway game (accuracy)
  interaction index        the modality interaction's share of v(all) − v(none) (modality game,
                           accuracy): what the decision needs from the combination, by any route

Per layer (each layer alone), the layer-resolved ones side by side, and their rank agreement across
layers (Spearman ρ for every pair). How to read disagreements is in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from isoprobe.attribution.attention import AttentionConfig, attribute as attention_attribution
from isoprobe.attribution.interaction import InteractConfig, interact
from isoprobe.data.pipeline import WindowSet
from isoprobe.diagnostics.shift import ShiftConfig, shift
from isoprobe.engine.ablate import AblationConfig, ablation_logits
from isoprobe.engine.approx import run_approx
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.engine.pathways import parse_layers
from isoprobe.engine.stats import Segments, cluster_ratio, logit_margin
from isoprobe.options import Options, check_choices, check_counts, check_level
from isoprobe.results import TableResult

DEFINITIONS = {  # one line each (they are printed after the method's name at 80 columns)
    "mask (IsoNet)": "relative accuracy drop, cross scores set to −inf",
    "mean ablation": "relative accuracy drop, cross contribution → training mean",
    "resample ablation": "relative accuracy drop, cross contribution → a donor's",
    "mask, logit margin": "share of the clean logit margin that masking removes",
    "attribution patching": "first-order estimate of the margin share",
    "attention attribution": "cross share of |attention attribution| (Hao et al.)",
    "pathway Shapley": "cross's Shapley share of v(all) − v(none), accuracy",
    "interaction index": "share of v(all) − v(none) needing both modalities",
}
LAYERED = ("mask (IsoNet)", "mean ablation", "resample ablation", "mask, logit margin", "attribution patching",
           "attention attribution")
COLUMNS = ("method", "layers", "estimate", "ci_low", "ci_high", "definition", "shift_cosine", "shift_mmd2", "shift_p",
           "shift_null95")
LAYER_COLUMNS = ("layer", "method", "estimate", "ci_low", "ci_high", "null_by_construction")


@dataclass(frozen=True)
class CompareConfig(Options):
    layers: str = "all"
    baseline: Literal["zero", "mean", "donor"] = "zero"  # the interaction index's absent modality
    steps: int = 20  # attention attribution
    draws: int = 1  # resample ablation
    shift_windows: int = 1000  # windows entering the MMD of each ablation's representation shift
    shift_permutations: int = 1000
    batch_size: int = 256
    bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        check_choices(self)
        check_counts(self, {"steps": 2, "draws": 1, "batch_size": 1, "bootstrap": 0, "seed": 0, "shift_windows": 4,
                            "shift_permutations": 0})
        check_level(self)


@dataclass(frozen=True)
class CompareResult(TableResult):
    """table: one row per method (COLUMNS); per_layer: one row per (layer, method) (LAYER_COLUMNS),
    `null_by_construction` where `cross` in that layer cannot change the prediction (to be drawn hollow);
    agreement: Spearman ρ across layers for every pair of layered methods. For the three ablations of all
    the layers, the shift_* columns say how far each moved the representation the head reads
    (`isoprobe.diagnostics.shift`): cosine with the clean one, the paired unbiased MMD², its permutation
    p and the 95th percentile of that permutation null — a larger shift for the same drop points to
    damage rather than lost signal."""

    per_layer: pd.DataFrame = field(default_factory=pd.DataFrame)
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    kind: ClassVar[str] = "compare"

    def to_dict(self) -> dict:
        records = lambda frame: TableResult(self.config, frame).to_dict()["rows"]
        return {**super().to_dict(), "per_layer": records(self.per_layer), "agreement": records(self.agreement)}


def _ratio_row(method: str, layers: str, numerator: np.ndarray, denominator: np.ndarray, segments, config) -> dict:
    estimate, low, high = cluster_ratio(numerator, denominator, segments, config.bootstrap, config.seed, config.level)
    return {"method": method, "layers": layers, "estimate": estimate, "ci_low": low, "ci_high": high}


def _ablation_rows(model, windows: WindowSet, reference: WindowSet | None, config: CompareConfig, device) -> list[dict]:
    """mask, mean and resample on `cross`, each layer alone and all together: relative accuracy drops,
    and for mask also the share of the logit margin removed."""
    target = torch.as_tensor(windows.y).long()
    rows = []
    for method, intervention in (("mask (IsoNet)", "mask"), ("mean ablation", "mean"), ("resample ablation", "resample")):
        ablation = AblationConfig(layers=config.layers, pathway="cross", intervention=intervention, mode="single",
                                  draws=config.draws if intervention == "resample" else 1, seed=config.seed,
                                  batch_size=config.batch_size, bootstrap=0)
        grid = ablation_logits(model, windows, ablation, reference=reference, device=device)
        base_correct = (grid.clean.argmax(1) == target).double().numpy()
        base_margin = logit_margin(grid.clean.double(), target).numpy()
        for row in dict.fromkeys(c.row for c in grid.conditions):
            draws = [x for c, x in grid.logits.items() if c.row == row]
            correct = np.mean([(x.argmax(1) == target).double().numpy() for x in draws], axis=0)
            rows.append(_ratio_row(method, row.layer_label, base_correct - correct, base_correct, Segments.of_windows(windows), config))
            if intervention == "mask":
                change = np.mean([logit_margin(x.double(), target).numpy() for x in draws], axis=0) - base_margin
                rows.append(_ratio_row("mask, logit margin", row.layer_label, -change, base_margin, Segments.of_windows(windows), config))
    return rows


def _patching_rows(model, windows: WindowSet, config: CompareConfig, device) -> list[dict]:
    """The first-order estimate of the same conditions as a share of the clean margin."""
    ablation = AblationConfig(layers=config.layers, pathway="cross", mode="single", batch_size=config.batch_size, bootstrap=0)
    result = run_approx(model, windows, ablation, check=0, device=device)
    rows = []
    for index, label in enumerate(result.table.layers):
        rows.append(_ratio_row("attribution patching", label, -result.per_window[:, index], result.clean_margin,
                               Segments.of_windows(windows), config))
    return rows


def compare(model: torch.nn.Module, windows: WindowSet, config: CompareConfig, reference: WindowSet | None = None,
            device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None) -> CompareResult:
    """Every estimate of the cross-modal share (see the module docstring) on `windows`."""
    engine = InterventionEngine(model.to(device))
    layers = parse_layers(config.layers, engine.n_layers)
    all_label = f"L{layers[0] + 1}-L{layers[-1] + 1}" if len(layers) > 1 else f"L{layers[0] + 1}"
    steps = 6
    report = (lambda done: progress(done, steps)) if progress is not None else (lambda done: None)
    rows = _ablation_rows(model, windows, reference, config, device)
    report(1)
    rows += _patching_rows(model, windows, config, device)
    report(2)
    attention = attention_attribution(model, windows, AttentionConfig(layers=config.layers, steps=config.steps,
                                                                      bootstrap=config.bootstrap, seed=config.seed,
                                                                      level=config.level), device=device).table
    cross = attention[(attention.part == "cross") & (attention.quantity == "share")]
    for row in cross.itertuples():
        label = all_label if row.site == "all layers" else row.site
        rows.append({"method": "attention attribution", "layers": label, "estimate": row.estimate,
                     "ci_low": row.ci_low, "ci_high": row.ci_high})
    report(3)
    games = interact(model, windows, InteractConfig(baseline=config.baseline, batch_size=config.batch_size,
                                                    bootstrap=config.bootstrap, seed=config.seed, level=config.level),
                     reference=reference, device=device).table
    report(4)
    accuracy = games[games.metric == "accuracy"]
    shapley = accuracy[(accuracy.method == "pathway game") & (accuracy.quantity == "shapley share") & (accuracy.part == "cross")]
    interaction = accuracy[(accuracy.method == "modality game") & (accuracy.quantity == "interaction share")]
    for method, frame in (("pathway Shapley", shapley), ("interaction index", interaction)):
        for row in frame.itertuples():
            name = method if method == "pathway Shapley" or len(frame) == 1 else f"{method} ({row.part})"
            rows.append({"method": name, "layers": f"L1-L{engine.n_layers}" if method == "pathway Shapley" else "inputs",
                         "estimate": row.estimate, "ci_low": row.ci_low, "ci_high": row.ci_high})
    report(5)
    shifted = shift(model, windows, ShiftConfig(layers=config.layers, interventions=("mask", "mean", "resample"),
                                                 bootstrap=config.bootstrap, seed=config.seed, level=config.level,
                                                 batch_size=config.batch_size, max_windows=config.shift_windows,
                                                 permutations=config.shift_permutations),
                    reference=reference, device=device).table
    final = shifted[shifted.site.str.startswith("final")].set_index("intervention")
    long = pd.DataFrame(rows)
    for method, intervention in (("mask (IsoNet)", "mask"), ("mean ablation", "mean"), ("resample ablation", "resample")):
        if intervention in final.index:
            at = (long.method == method) & (long.layers == all_label)
            for column, shown in (("cosine", "shift_cosine"), ("mmd2", "shift_mmd2"), ("p_value", "shift_p"),
                                  ("mmd2_null95", "shift_null95")):
                long.loc[at, shown] = final.loc[intervention, column]
    for column in ("shift_cosine", "shift_mmd2", "shift_p", "shift_null95"):
        long[column] = long.get(column, np.nan)
    long["definition"] = [DEFINITIONS[m.split(" (")[0] if m.startswith("interaction") else m] for m in long.method]
    report(6)
    summary = long[~long.layers.str.fullmatch(r"L\d+") | (len(layers) == 1)]
    summary = summary.set_index("method").loc[[m for m in dict.fromkeys(long.method) if m in set(summary.method)]].reset_index()
    per_layer = long[long.layers.str.fullmatch(r"L\d+")].rename(columns={"layers": "layer"})
    # Every layered method looks at `cross` in one layer: where that cannot change the prediction (no
    # cross edge in the model; the last layer of a model read from CLS) its 0 is no finding.
    null = [engine.null_by_construction(Condition((int(label[1:]) - 1,), "cross")) for label in per_layer.layer]
    per_layer = per_layer.assign(null_by_construction=np.array(null, dtype=bool))[list(LAYER_COLUMNS)]
    order = {m: i for i, m in enumerate(LAYERED)}
    per_layer = per_layer.assign(_layer=per_layer.layer.str[1:].astype(int), _method=per_layer.method.map(order))
    per_layer = per_layer.sort_values(["_layer", "_method"]).drop(columns=["_layer", "_method"])
    return CompareResult(config, summary[list(COLUMNS)].reset_index(drop=True), per_layer.reset_index(drop=True),
                         rank_agreement(per_layer))


def rank_agreement(per_layer: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ across layers for every pair of layered methods (NaN with fewer than three layers or
    a method constant across them)."""
    grid = per_layer.pivot(index="layer", columns="method", values="estimate")
    methods = [m for m in LAYERED if m in grid.columns]
    rows = []
    for i, first in enumerate(methods):
        for second in methods[i + 1:]:
            a, b = grid[first].to_numpy(), grid[second].to_numpy()
            varied = len(a) > 2 and np.ptp(a) > 0 and np.ptp(b) > 0
            rows.append({"method": first, "against": second, "layers": len(a),
                         "spearman": float(spearmanr(a, b).statistic) if varied else float("nan")})
    return pd.DataFrame(rows, columns=["method", "against", "layers", "spearman"])
