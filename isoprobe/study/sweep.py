"""Attention dropout against masking (DESIGN §5): train one model per dropout rate of a pathway and
tabulate, against the rate, the clean test accuracy and the accuracy with that pathway masked in
every shared layer, each with a 95% cluster-bootstrap CI over segments.

A model trained with the pathway dropped at rate p has learned not to need it alone; at p = 1 it
never had it (the masked accuracy equals the clean one by construction). If masking a pathway
costs an ordinary model (p = 0) accuracy but a model trained with dropout recovers it, the pathway
was used, not necessary: its information has another route. Each run lands in OUT/p<rate>/ and a
rerun resumes finished runs instead of training them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from isoprobe.analysis import load_analysis
from isoprobe.data.pipeline import DataConfig
from isoprobe.data.tokens import TokenConfig
from isoprobe.engine.ablate import AblationConfig, ablation_logits
from isoprobe.engine.stats import Segments, cluster_means
from isoprobe.errors import ConfigError
from isoprobe.models.config import has_attention
from isoprobe.options import Options, check_counts, check_level
from isoprobe.results import TableResult
from isoprobe.training.run import fit
from isoprobe.training.trainer import TrainConfig

COLUMNS = ("pathway", "rate", "windows", "segments", "clean_accuracy", "clean_ci_low", "clean_ci_high", "masked_accuracy",
           "masked_ci_low", "masked_ci_high", "drop", "drop_ci_low", "drop_ci_high", "checkpoint")


@dataclass(frozen=True)
class SweepConfig(Options):
    pathway: str = "cross"
    rates: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5)
    arch: str = "hierarchical"
    bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", tuple(float(r) for r in self.rates))
        if not self.rates or any(not 0.0 <= r <= 1.0 for r in self.rates) or len(set(self.rates)) != len(self.rates):
            raise ConfigError("rates", self.rates, "distinct dropout rates in [0, 1], e.g. 0,0.1,0.3,0.5")
        if not has_attention(self.arch):
            raise ConfigError("arch", self.arch, "the multimodal MLP has no attention to drop; use mmt or hierarchical")
        check_counts(self, {"bootstrap": 0, "seed": 0})
        check_level(self)


@dataclass(frozen=True)
class SweepResult(TableResult):
    kind: ClassVar[str] = "dropout-sweep"
    stem: ClassVar[str] = "dropout"


def parse_rates(spec: str) -> tuple[float, ...]:
    try:
        return tuple(float(r) for r in spec.split(",") if r.strip())
    except ValueError:
        raise ConfigError("rates", spec, "comma-separated dropout rates in [0, 1], e.g. 0,0.1,0.3,0.5") from None


def evaluate_with_and_without(path: Path, pathway: str, config: SweepConfig, device: str = "cpu") -> dict:
    """Clean and masked test accuracy (`pathway` masked in every shared layer) of one checkpoint."""
    analysis = load_analysis(path, device=device, needs_attention=True)
    windows = analysis.windows
    grid = ablation_logits(analysis.model, windows, AblationConfig(layers="all", pathway=pathway, mode="joint", bootstrap=0),
                           device=device)
    target = torch.as_tensor(windows.y).long()
    clean = (grid.clean.argmax(1) == target).double().numpy()
    masked = (grid.logits[grid.conditions[0]].argmax(1) == target).double().numpy()
    values = np.stack([clean, masked, clean - masked], axis=1)
    mean, low, high = cluster_means(values, Segments.of_windows(windows), config.bootstrap, config.seed, config.level,
                                    bounds=(np.array([0.0, 0.0, -1.0]), 1.0))  # two accuracies and their difference
    row = {"windows": len(windows), "segments": len(np.unique(windows.segment)), "checkpoint": str(path)}
    for i, name in enumerate(("clean", "masked", "drop")):
        key = "drop" if name == "drop" else f"{name}_accuracy"
        row.update({key: float(mean[i]), f"{name}_ci_low": float(low[i]), f"{name}_ci_high": float(high[i])})
    return row


def dropout_sweep(data_config: DataConfig, config: SweepConfig, train_config: TrainConfig, out: Path,
                  token: TokenConfig | None = None, model_options: dict | None = None, device: str = "cpu",
                  progress: Callable[[int, int], None] | None = None, train_progress: bool = False) -> SweepResult:
    """Train one model per rate in OUT/p<rate>/ (resuming finished ones) and tabulate (COLUMNS)."""
    rows = []
    for index, rate in enumerate(config.rates):
        run = Path(out) / f"p{rate:g}"
        try:
            fit(data_config, config.arch, train_config, run, token, model_options, resume=True, progress=train_progress,
                pathway_dropout=[(config.pathway, rate)])
        except ConfigError as error:  # the sweep's own option names the pathway
            raise (error.naming("pathway") if error.option == "pathway_dropout" else error) from None
        rows.append({"pathway": config.pathway, "rate": rate,
                     **evaluate_with_and_without(run / "checkpoint.pt", config.pathway, config, device)})
        if progress is not None:
            progress(index + 1, len(config.rates))
    return SweepResult(config, pd.DataFrame(rows, columns=list(COLUMNS)))


def sweep_rows(results: Sequence[SweepResult]) -> pd.DataFrame:
    """Several sweeps (pathways) in one table."""
    return pd.concat([r.table for r in results], ignore_index=True)
