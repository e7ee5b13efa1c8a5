"""Integrated gradients per modality (Sundararajan et al. 2017, through captum; DESIGN §5).

Two methods explain one logit per window (the true or the predicted class) from a baseline window b:

- `ig`: captum `IntegratedGradients` on the model's inputs, one [batch, time, channel] tensor per
  modality (site `inputs`); a modality's attribution is the sum over its time and channel entries.
- `layer-ig`: captum `LayerIntegratedGradients` on the token embeddings `hook_embed` (site
  `hook_embed`, [batch, pos, d_model]) and, for a model with modality encoders, on the encoders'
  outputs taken together (site `encoders`). A token's attribution is its sum over d_model (the usual
  LayerIG token score); a modality's is the sum over its tokens (`model.token_modalities`). CLS is
  its own part `cls`: its embedding does not depend on the input, so x and b share it and its
  attribution is exactly 0; it is reported so that the shares visibly account for every token.

Completeness (the IG axiom) says the attributions of a site sum to f(x) − f(b), f the explained
logit. captum's convergence delta is the error of the path integral's quadrature,
δ = Σ attributions − (f(x) − f(b)), taken at the model's inputs, so for layer-ig it also checks that
the site carries everything: for `encoders` the whole input dependence passes through them (CLS,
which skips them, is constant). For a list of layers captum interpolates all of them at once and
sums their attributions into one δ, which is why the encoders are one site and why `hook_embed` (which
feeds the encoders) is attributed in a separate pass.

Table rows (the shared long format, `isoprobe.attribution.common.COLUMNS`), per site:

    part         quantity        number
    <modality>   share           mean over windows of Σ|attr| of the part / Σ|attr| of every part
                                 (windows whose total is 0, x = b, are left out of the share rows)
    <modality>   sum             mean over windows of the part's signed Σ attr
    cls          share, sum      (hook_embed of a model with CLS only) always 0, see above
    all          sum             mean of Σ attr over every part
    all          logit_difference  mean of f(x) − f(b)
    all          delta           mean of captum's δ (signed)
    all          abs_delta       mean of |δ|
    all          max_abs_delta   max over windows of |δ| (no CI)
    all          relative_delta  Σ|δ| / Σ|f(x) − f(b)| over windows (a ratio of means, its CI from the
                                 same segment resamples)

Memory is bounded by `internal_batch_size` model evaluations whatever the number of windows: windows
go through in outer batches of `batch_size`, captum splits each outer batch's steps × windows into
chunks of at most `internal_batch_size`, and only per-window sums are kept.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from einops import einsum, reduce

from isoprobe.attribution.common import COLUMNS, Baseline, Target, baseline_inputs, mean_windows, summarise
from isoprobe.data.batches import window_batches
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.stats import Segments, cluster_ratio
from isoprobe.errors import ConfigError
from isoprobe.models.modes import evaluating
from isoprobe.options import Options, check_choices, check_counts, check_level
from isoprobe.results import TableResult

Method = Literal["ig", "layer-ig"]
CLS = "cls"


@dataclass(frozen=True)
class IGConfig(Options):
    method: Method = "ig"
    target: Target = "true"  # explain the true class's logit, or the predicted (argmax) class's
    baseline: Baseline = "zero"  # zero: the z-scored data's training mean per channel; mean: the training split's mean window
    steps: int = 50  # quadrature points of the path integral (captum's Gauss-Legendre rule)
    batch_size: int = 64  # windows per outer batch
    internal_batch_size: int = 512  # model evaluations per forward/backward pass (captum's; bounds memory)
    bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        check_choices(self)
        check_counts(self, {"steps": 1, "batch_size": 1, "internal_batch_size": 1, "bootstrap": 0, "seed": 0})
        # captum splits the steps of one outer batch, never its windows: a smaller internal batch would
        # be silently raised to the outer batch (with a warning), breaking the memory bound.
        if self.internal_batch_size < self.batch_size:
            raise ConfigError("internal_batch_size", self.internal_batch_size,
                              f"must be at least batch_size ({self.batch_size}): captum splits the integration steps "
                              "of an outer batch, never its windows")
        check_level(self)


@dataclass(frozen=True)
class SiteWindows:
    """Per-window numbers of one site: sums and magnitudes [window, part] (signed Σ attr and Σ|attr|
    of each part), delta and difference [window] (captum's δ and f(x) − f(b))."""

    site: str
    parts: tuple[str, ...]
    sums: np.ndarray
    magnitudes: np.ndarray
    delta: np.ndarray
    difference: np.ndarray

    @property
    def shares(self) -> np.ndarray:
        """Each part's share of the absolute attribution, [window, part]; NaN rows where it is all 0."""
        total = self.magnitudes.sum(axis=1, keepdims=True)
        out = np.full_like(self.magnitudes, np.nan)
        np.divide(self.magnitudes, total, out=out, where=total > 0)
        return out


@dataclass(frozen=True)
class IGResult(TableResult):
    """The summary table (COLUMNS, rows as the module docstring lists) with the per-window numbers
    behind it: `per_window` by site, `targets` [window] the explained class of each window."""

    per_window: Mapping[str, SiteWindows] = field(default_factory=dict, repr=False, compare=False)
    targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False, compare=False)
    kind: ClassVar[str] = "attribution"


# --- sites: where the attribution is taken ---------------------------------------------------------
# Each turns one outer batch into (sums, magnitudes [batch, part], delta [batch]) on the device.

Attributed = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _token_parts(tokens: torch.Tensor, membership: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token attributions [batch, pos] -> (signed sums, sums of |token attribution|) [batch, part],
    membership [part, pos] one-hot."""
    membership = membership.to(tokens)
    return (einsum(tokens, membership, "batch pos, part pos -> batch part"),
            einsum(tokens.abs(), membership, "batch pos, part pos -> batch part"))


class InputSite:
    """`ig`: attributions on the model inputs, one [batch, time, channel] tensor per modality."""

    name = "inputs"

    def __init__(self, model: torch.nn.Module):
        self.parts = tuple(model.modality_names)
        self.ig = IntegratedGradients(model)

    def __call__(self, inputs: tuple[torch.Tensor, ...], baselines: tuple[torch.Tensor, ...], target: torch.Tensor,
                 config: IGConfig) -> Attributed:
        attributions, delta = self.ig.attribute(inputs, baselines, target=target, n_steps=config.steps,
                                                internal_batch_size=config.internal_batch_size,
                                                return_convergence_delta=True)
        sums = torch.stack([a.flatten(1).sum(dim=1) for a in attributions], dim=1)
        magnitudes = torch.stack([a.flatten(1).abs().sum(dim=1) for a in attributions], dim=1)
        return sums, magnitudes, delta


class EmbedSite:
    """`layer-ig` on `hook_embed` [batch, pos, d_model]: tokens summed over d_model, then per modality
    by `model.token_modalities` (0 = CLS, i + 1 = modality i)."""

    name = "hook_embed"

    def __init__(self, model: torch.nn.Module):
        ids = model.token_modalities.detach().cpu()
        names = tuple(model.modality_names)
        part_ids = ([0] if bool((ids == 0).any()) else []) + list(range(1, len(names) + 1))
        self.parts = tuple(CLS if i == 0 else names[i - 1] for i in part_ids)
        self.membership = (ids[None, :] == torch.tensor(part_ids)[:, None]).float()  # [part, pos]
        self.lig = LayerIntegratedGradients(model, model.hook_embed)

    def __call__(self, inputs, baselines, target, config: IGConfig) -> Attributed:
        attributions, delta = self.lig.attribute(inputs, baselines, target=target, n_steps=config.steps,
                                                 internal_batch_size=config.internal_batch_size,
                                                 return_convergence_delta=True)
        tokens = reduce(attributions, "batch pos d_model -> batch pos", "sum")
        return (*_token_parts(tokens, self.membership), delta)


class EncoderSite:
    """`layer-ig` on the modality encoders' outputs together (each [batch, pos of its modality, d_model])."""

    name = "encoders"

    def __init__(self, model: torch.nn.Module):
        self.parts = tuple(model.modality_names)
        layers = [model.encoders[group.module_name] for group in model.config.groups]
        with warnings.catch_warnings():
            # captum warns that layers in one list must not feed each other: the encoders run side by side.
            warnings.filterwarnings("ignore", message="Multiple layers provided")
            self.lig = LayerIntegratedGradients(model, layers)

    def __call__(self, inputs, baselines, target, config: IGConfig) -> Attributed:
        attributions, delta = self.lig.attribute(inputs, baselines, target=target, n_steps=config.steps,
                                                 internal_batch_size=config.internal_batch_size,
                                                 return_convergence_delta=True)
        tokens = [reduce(a, "batch pos d_model -> batch pos", "sum") for a in attributions]  # one per modality
        sums = torch.stack([t.sum(dim=1) for t in tokens], dim=1)
        magnitudes = torch.stack([t.abs().sum(dim=1) for t in tokens], dim=1)
        return sums, magnitudes, delta


def check_token_embeddings(model: torch.nn.Module, sample: Sequence[torch.Tensor]) -> None:
    """Refuse layer-ig on a model whose `hook_embed` is not token embeddings [batch, pos, d_model]
    matching `token_modalities` (the MLP's is one fused feature vector), from one window's forward."""
    hook = getattr(model, "hook_embed", None)
    if not isinstance(hook, torch.nn.Module) or getattr(model, "token_modalities", None) is None:
        raise ConfigError("method", "layer-ig", "needs a model with token embeddings at hook_embed and token_modalities "
                                                "(a transformer); use ig on this model")
    shapes = []
    handle = hook.register_forward_hook(lambda module, args, output: shapes.append(tuple(output.shape)))
    try:
        with torch.no_grad():
            model(*(x[:1] for x in sample))
    finally:
        handle.remove()
    n_tokens = len(model.token_modalities)
    if not shapes or len(shapes[0]) != 3 or shapes[0][1] != n_tokens:
        raise ConfigError("method", "layer-ig", f"needs token embeddings [batch, {n_tokens} pos, d_model] at hook_embed; "
                                                f"this model's are {shapes[0] if shapes else 'never computed'}: use ig")


def sites_for(model: torch.nn.Module, method: Method, sample: Sequence[torch.Tensor]) -> list:
    """The sites a method attributes to; `sample` (one outer batch of inputs) probes the model."""
    if method == "ig":
        return [InputSite(model)]
    if method == "layer-ig":
        check_token_embeddings(model, sample)
        encoders = getattr(model, "encoders", None)
        return [EmbedSite(model)] + ([EncoderSite(model)] if isinstance(encoders, torch.nn.ModuleDict) else [])
    raise ConfigError("method", method, "choose ig or layer-ig")


# --- the pass over the windows -------------------------------------------------------------------


def integrate(model: torch.nn.Module, windows: WindowSet, config: IGConfig, reference: WindowSet | None = None,
              device: torch.device | str = "cpu", progress: Callable[[int, int], None] | None = None
              ) -> tuple[dict[str, SiteWindows], np.ndarray]:
    """Per-window attributions of every site of `config.method`: ({site: SiteWindows}, targets [window]).

    Windows go through in outer batches of `config.batch_size` (one [batch, time, channel] tensor per
    modality); `progress(done, total)` is called after each. In eval mode, with gradients on even if
    the caller is in no_grad; the model's modes are restored afterwards."""
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to attribute")
    if config.baseline == "mean" and reference is None:
        raise ConfigError("baseline", "mean", "needs reference (training) windows for the mean window; or use zero")
    model = model.to(device)
    names = tuple(model.modality_names)
    means = mean_windows(reference, names) if config.baseline == "mean" else None
    labels = torch.as_tensor(np.asarray(windows.y), dtype=torch.long)
    n_batches = math.ceil(len(windows) / config.batch_size)
    sites, collected, targets, differences = None, {}, [], []
    with evaluating(model), torch.enable_grad():
        for index, inputs in enumerate(window_batches(windows.x, names, config.batch_size, device)):
            inputs = tuple(inputs)
            if sites is None:
                sites = sites_for(model, config.method, inputs)
                collected = {site.name: [] for site in sites}
            baselines = baseline_inputs(config.baseline, inputs, means)
            with torch.no_grad():
                logits, base_logits = model(*inputs), model(*baselines)
            # The same classes as common.target_classes, from the forward pass this batch needs anyway.
            start = index * config.batch_size
            target = (logits.argmax(-1) if config.target == "predicted"
                      else labels[start : start + len(logits)].to(logits.device))
            explained = logits.gather(1, target[:, None]) - base_logits.gather(1, target[:, None])
            targets.append(target.cpu())
            differences.append(explained[:, 0].double().cpu())
            for site in sites:
                collected[site.name].append([t.detach().double().cpu() for t in site(inputs, baselines, target, config)])
            if progress is not None:
                progress(index + 1, n_batches)
    difference = torch.cat(differences).numpy()
    per_window = {}
    for site in sites:
        sums, magnitudes, delta = (torch.cat(parts).numpy() for parts in zip(*collected[site.name]))
        per_window[site.name] = SiteWindows(site.name, site.parts, sums, magnitudes, delta.reshape(-1), difference)
    return per_window, torch.cat(targets).numpy()


# --- summary -------------------------------------------------------------------------------------


def _counts(segments: Segments) -> dict:
    return {"windows": int(len(segments.codes)), "segments": segments.n_segments}


def site_table(method: str, numbers: SiteWindows, segments: Segments, config: IGConfig) -> pd.DataFrame:
    """The rows of one site (see the module docstring), in the shared long format."""
    key = {"method": method, "site": numbers.site}
    shares = numbers.shares
    counted = ~np.isnan(shares).any(axis=1)  # x = b leaves nothing to share out
    frames = []
    if counted.any():
        frames.append(summarise([key | {"part": p, "quantity": "share"} for p in numbers.parts], shares[counted],
                                segments.take(np.flatnonzero(counted)), config.bootstrap, config.seed, config.level)
                      .assign(**_counts(segments.take(np.flatnonzero(counted)))))
    abs_delta = np.abs(numbers.delta)
    values = np.column_stack([numbers.sums, numbers.sums.sum(axis=1), numbers.difference, numbers.delta, abs_delta])
    keys = ([key | {"part": p, "quantity": "sum"} for p in numbers.parts]
            + [key | {"part": "all", "quantity": q} for q in ("sum", "logit_difference", "delta", "abs_delta")])
    frames.append(summarise(keys, values, segments, config.bootstrap, config.seed, config.level).assign(**_counts(segments)))
    ratio = cluster_ratio(abs_delta, np.abs(numbers.difference), segments, config.bootstrap, config.seed, config.level)
    frames.append(pd.DataFrame([
        key | {"part": "all", "quantity": "max_abs_delta", "estimate": float(abs_delta.max()), "ci_low": np.nan,
               "ci_high": np.nan, **_counts(segments)},
        key | {"part": "all", "quantity": "relative_delta", "estimate": ratio[0], "ci_low": ratio[1], "ci_high": ratio[2],
               **_counts(segments)},
    ]))
    return pd.concat(frames, ignore_index=True)


def attribute(model: torch.nn.Module, windows: WindowSet, config: IGConfig, reference: WindowSet | None = None,
              device: torch.device | str = "cpu", progress: Callable[[int, int], None] | None = None) -> IGResult:
    """Integrated gradients per modality on `windows` (labels `y`, segments): the attribution contract
    of `isoprobe.attribution.common`. `reference` (the training split) gives the `mean` baseline."""
    per_window, targets = integrate(model, windows, config, reference, device, progress)
    segments = Segments.of_windows(windows)
    table = pd.concat([site_table(config.method, numbers, segments, config) for numbers in per_window.values()],
                      ignore_index=True)[list(COLUMNS)]
    return IGResult(config, table, per_window=per_window, targets=targets)
