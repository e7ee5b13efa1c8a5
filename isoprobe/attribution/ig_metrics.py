"""How trustworthy integrated gradients are on this model: captum's `infidelity` (Yeh et al., "On the
(In)fidelity and Sensitivity of Explanations", NeurIPS 2019) and `sensitivity_max` (the same paper),
per window, averaged with a cluster-bootstrap CI over segments (DESIGN §5).

infidelity       E_ε[(Σ_i I_i · attr_i − (f(x) − f(x − ε)))²] with ε ~ N(0, noise²) per entry and
                 I = ε / (x − b) (captum's `multiply_by_inputs`: IG's attributions already carry the
                 factor x − b, so I · attr = Σ ε_i · attr_i / (x_i − b_i)); in squared logits. For a
                 model linear in its inputs IG is exact and the infidelity is 0.
sensitivity_max  max over perturbations δ, uniform in the L∞ ball of `radius`, of
                 ‖IG(x + δ) − IG(x)‖_F / ‖IG(x)‖_F (captum's default perturbation).

f is the explained logit (the IG configuration's target: true or predicted class), b its baseline.
Both run on a subsample of windows (keyed by `start`, as the sanity checks draw theirs) with few
perturbations, one window at a time: captum's perturbations draw from torch's global generator, so
each window's draws run in a fork of it seeded from the seed and the window's key alone — neither
the caller's random state, the order of the windows nor the device changes a number (the noise is
drawn on the CPU and moved to the device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from isoprobe.attribution.common import baseline_inputs, mean_windows, target_classes
from isoprobe.attribution.ig import IGConfig
from isoprobe.attribution.sanity import subsample
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.stats import Segments, cluster_means
from isoprobe.errors import ConfigError
from isoprobe.models.modes import evaluating
from isoprobe.options import Options, check_counts
from isoprobe.results import TableResult

METRICS = ("infidelity", "sensitivity_max")
COLUMNS = ("metric", "estimate", "ci_low", "ci_high", "windows", "segments", "perturbations")
_STREAM = 0x1F1D


@dataclass(frozen=True)
class IGMetricsOptions(Options):
    windows: int = 32  # the subsample both metrics run on
    perturbations: int = 8  # draws per window for each metric (captum's n_perturb_samples)
    noise: float = 0.1  # infidelity: standard deviation of ε, in the z-scored inputs' units
    radius: float = 0.02  # sensitivity_max: L∞ radius of the perturbation

    def __post_init__(self) -> None:
        check_counts(self, {"windows": 1, "perturbations": 1})
        for name in ("noise", "radius"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(name, value, "a positive number (z-score units)")


@dataclass(frozen=True)
class IGMetricsResult(TableResult):
    """`ig_metrics`' table (COLUMNS) with the IG configuration it measured, written as ig-metrics.*."""

    kind: ClassVar[str] = "ig-metrics"


def _window_seed(seed: int, key: int) -> int:
    """The seed of one window's perturbations, from the run's seed and the window's key alone."""
    return int(np.random.SeedSequence([_STREAM, seed, int(key)]).generate_state(1)[0])


def _gaussian_perturbation(noise: float):
    """captum's infidelity perturbation: x̃ = x − ε, ε ~ N(0, noise²) drawn on the CPU from torch's
    (forked, seeded) global generator; the decorator turns x − x̃ into I = (x − x̃) / (x − b)."""
    from captum.metrics import infidelity_perturb_func_decorator

    @infidelity_perturb_func_decorator(multiply_by_inputs=True)
    def perturb(inputs, baselines=None):
        return tuple(x - (noise * torch.randn(x.shape, dtype=torch.float32)).to(x.device, x.dtype) for x in inputs)

    return perturb


def window_metrics(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], baselines: tuple[torch.Tensor, ...],
                   target: torch.Tensor, config: IGConfig, options: IGMetricsOptions, seed: int) -> tuple[float, float]:
    """(infidelity, sensitivity_max) of one window's IG: inputs and baselines one [1, time, channel]
    tensor per modality, target [1]. The model in eval mode, gradients enabled, by the caller."""
    from captum.attr import IntegratedGradients
    from captum.metrics import infidelity, sensitivity_max

    ig = IntegratedGradients(model)
    internal = max(config.internal_batch_size, options.perturbations)  # captum splits steps, never examples

    def explain(x, baselines, target):
        return ig.attribute(x, baselines, target=target, n_steps=config.steps, internal_batch_size=internal)

    attributions = explain(inputs, baselines, target)
    with torch.random.fork_rng(devices=[]):  # the CPU generator only: every draw is made there
        torch.manual_seed(seed)
        infid = infidelity(model, _gaussian_perturbation(options.noise), inputs, attributions, baselines=baselines,
                           target=target, n_perturb_samples=options.perturbations)
        sens = sensitivity_max(explain, inputs, perturb_radius=options.radius, n_perturb_samples=options.perturbations,
                               baselines=baselines, target=target)
    return float(infid.item()), float(sens.item())


def ig_metrics(model: torch.nn.Module, windows: WindowSet, config: IGConfig, reference: WindowSet | None = None,
               device: str | torch.device = "cpu", options: IGMetricsOptions = IGMetricsOptions()) -> pd.DataFrame:
    """Infidelity and max-sensitivity of `ig` (config: its target, baseline and steps; config.seed seeds
    the subsample and the perturbations) on a subsample of `windows`: one row per metric (COLUMNS), the
    mean over windows and its cluster-bootstrap CI over segments (config.bootstrap, config.level)."""
    if config.method != "ig":
        raise ConfigError("method", config.method, "infidelity and sensitivity are computed for ig (input attributions)")
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to attribute")
    if config.baseline == "mean" and reference is None:
        raise ConfigError("baseline", "mean", "needs reference (training) windows for the mean window; or use zero")
    chosen = subsample(windows, options.windows, config.seed)
    model = model.to(device)
    names = tuple(model.modality_names)
    means = mean_windows(reference, names) if config.baseline == "mean" else None
    targets = torch.as_tensor(target_classes(model, chosen, config.target, config.batch_size, device))
    values = np.zeros((len(chosen), len(METRICS)))
    with evaluating(model), torch.enable_grad():
        for i in range(len(chosen)):
            inputs = tuple(torch.as_tensor(np.asarray(chosen.x[name][i : i + 1]), device=device) for name in names)
            baselines = baseline_inputs(config.baseline, inputs, means)
            values[i] = window_metrics(model, inputs, baselines, targets[i : i + 1].to(device), config, options,
                                       _window_seed(config.seed, chosen.start[i]))
    segments = Segments.of_windows(chosen)
    mean, low, high = cluster_means(values, segments, config.bootstrap, config.seed, config.level, bounds=(0.0, np.inf))
    return pd.DataFrame([{"metric": metric, "estimate": float(m), "ci_low": float(lo), "ci_high": float(hi),
                          "windows": len(chosen), "segments": segments.n_segments, "perturbations": options.perturbations}
                         for metric, m, lo, hi in zip(METRICS, mean, low, high)], columns=list(COLUMNS))
