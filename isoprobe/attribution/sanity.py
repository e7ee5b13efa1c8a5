"""`isoprobe sanity`: sanity checks for every attribution (Adebayo et al., "Sanity Checks for Saliency
Maps", NeurIPS 2018; DESIGN §5). An attribution that barely changes when the model's weights are
randomised explains the input, not the model.

Cascading randomisation, from the output down: step 0 is the trained model; each later step re-draws
one more stage of parameters, cumulatively — the prediction head (with the final norm), then the
shared layers from the last to the first (`L5` … `L1`; the MLP's hidden layers, the mmt's
per-modality layers), then the modality encoders, then the embeddings — until nothing trained is
left. Stages come from the parameter names (`cascade_stages`); a stage the model lacks (the mmt has
no separate encoders) is not a step. On a model isoprobe did not build, whose code alone knows what
comes first, everything outside its attention layers is one first stage, then its layers, last to
first. Re-drawing a parameter: Gaussian entries with the trained tensor's own mean and standard
deviation, so every layer keeps the scale training left (LayerNorm gains near 1, weights of their
trained size) while the arrangement it learnt is gone. Each draw comes
from the seed and the parameter's name alone (not the order of the stages nor the device), and the
caller's model is never touched: the cascade runs on a deep copy.

At every step each method's output is compared with its output at step 0 by Spearman's rank
correlation over its cells (the registry `SANITY_METHODS`; each returns signed numbers, with a window
axis first where it has one):

    ig                    Σ IG attribution per window × modality (`attribution.ig.integrate`, site inputs)
    layer-ig              Σ LayerIG per window × (site, part) (hook_embed, and encoders where there are)
    attention             Hao et al.'s Σ Attr per window × shared layer × edge part (`attention_attributions`)
    attribution-patching  estimated change of the true-class margin per window × (layer, pathway)
    mask                  exact change of the true-class margin per window × (layer, pathway) (IsoNet masking)

Cells exactly 0 in every window both at step 0 and at the compared step are left out: they are zero
by construction (CLS's LayerIG, the mmt's `cross`, a last-layer pathway the head never reads), and
ties that every model shares would lift the correlation whatever the weights. Where the outputs are
identical the correlation is 1 exactly (step 0); where one is constant it is undefined (NaN).

The CI of a similarity is the stratified cluster bootstrap of `engine.stats.Segments` (its Rao–Wu
replicate weights, every window weighted as its segment): each resample's Spearman is the weighted
one (mid-ranks of the weighted sample, then the weighted Pearson correlation), which for integer
weights is exactly Spearman's ρ of the sample with each window repeated that often. A method without
a window axis has no CI (NaN).

Random target: the same methods on the trained model, explaining a random other class of each window
(seeded, keyed by the window's `start`), against the true class's output: a high similarity says
the attribution does not depend on which class it explains.

A method is `flagged` when its similarity after the whole model is randomised is still above
`threshold`. Methods that do not apply to the model (attention on the MLP) are rows with a reason.
The checks run on a subsample of `windows` windows (seeded, keyed by `start`, so it does not depend
on the order of the set) with few integration steps: a sanity check, not an estimate.

Table: one row per (method, step): method; step ("trained", "head", "L2", …, "random target", or
"not applicable"); step_index (0 trained, 1 … along the cascade, empty off it); randomised (the
stages re-drawn so far); spearman, ci_low, ci_high; cells (compared per window, or in all for a
method without windows); windows, segments; flagged (on the last cascade step's rows, empty
elsewhere); note (why a method does not apply, or why a similarity is undefined).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from isoprobe.attribution.common import Baseline
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.grid import attention_layers
from isoprobe.engine.stats import Segments, bootstrap_interval
from isoprobe.errors import ConfigError
from isoprobe.layersets import format_layers
from isoprobe.models.modes import evaluating
from isoprobe.options import Options, check_choices, check_counts, check_level
from isoprobe.results import TableResult

COLUMNS = ("method", "step", "step_index", "randomised", "spearman", "ci_low", "ci_high", "cells", "windows", "segments",
           "flagged", "note")
TRAINED, RANDOM_TARGET, NOT_APPLICABLE = "trained", "random target", "not applicable"
_SUBSAMPLE_STREAM, _TARGET_STREAM, _WEIGHT_STREAM = 0x5A4E, 0x7A46, 0x3E1D  # apart from donors' and the bootstrap's


# --- the methods ---------------------------------------------------------------------------------

Cells = Callable[[torch.nn.Module, WindowSet, "SanityConfig", "WindowSet | None", "str | torch.device"], np.ndarray]


def _always(model: torch.nn.Module, windows: WindowSet) -> str | None:
    return None


def _no_check(model: torch.nn.Module, config: SanityConfig) -> None:
    return None


@dataclass(frozen=True)
class SanityMethod:
    """name: the row label and `--methods` value; cells: (model, windows, config, reference, device) ->
    its output as an array, [window, …] where `per_window`; refuses: (model, windows) -> why the method
    does not apply to the model, or None; checks: (model, config) raises ConfigError for options the
    model cannot take, before any work; describes: what a cell holds."""

    name: str
    cells: Cells
    per_window: bool = True
    refuses: Callable[[torch.nn.Module, WindowSet], str | None] = _always
    checks: Callable[[torch.nn.Module, SanityConfig], None] = _no_check
    describes: str = ""


SANITY_METHODS: dict[str, SanityMethod] = {}  # name -> method, in registration order


def register_sanity_method(method: SanityMethod) -> SanityMethod:
    SANITY_METHODS[method.name] = method
    return method


# The methods' modules are imported when they run: captum (ig, attention) takes over a second to import.

def _ig_config(config: SanityConfig, method: str):
    from isoprobe.attribution.ig import IGConfig

    # All steps of a batch in one pass; no summary statistics needed (bootstrap 0).
    return IGConfig(method=method, target="true", baseline=config.baseline, steps=config.steps,
                    batch_size=config.batch_size, internal_batch_size=config.batch_size * config.steps, bootstrap=0,
                    seed=config.seed)


def ig_cells(model, windows, config, reference=None, device="cpu") -> np.ndarray:
    """Σ IG attribution of each modality: [window, modality] (the true class's logit, `windows.y`)."""
    from isoprobe.attribution.ig import integrate

    per_window, _ = integrate(model, windows, _ig_config(config, "ig"), reference, device)
    return per_window["inputs"].sums


def layer_ig_cells(model, windows, config, reference=None, device="cpu") -> np.ndarray:
    """Σ LayerIG of each part of each site, side by side: [window, site part]."""
    from isoprobe.attribution.ig import integrate

    per_window, _ = integrate(model, windows, _ig_config(config, "layer-ig"), reference, device)
    return np.concatenate([site.sums for site in per_window.values()], axis=1)


def attention_cells(model, windows, config, reference=None, device="cpu") -> np.ndarray:
    """Hao et al.'s Σ Attr over heads and each edge part: [window, layer, part]."""
    from isoprobe.attribution.attention import AttentionConfig, attention_attributions

    options = AttentionConfig(target="true", steps=max(config.steps, 2), batch_size=config.batch_size, bootstrap=0,
                              seed=config.seed)
    return attention_attributions(model, windows, options, device).signed


def _grid_config(config: SanityConfig):
    from isoprobe.engine.ablate import AblationConfig

    return AblationConfig(layers="all", pathway=config.pathways, bootstrap=0, permutations=0,
                          batch_size=config.batch_size, seed=config.seed)


def _check_grid(model: torch.nn.Module, config: SanityConfig) -> None:
    """The pathways parsed against the model: a bad name raises, naming this configuration's field."""
    from isoprobe.engine.ablate import plan_ablation

    try:
        plan_ablation(model, _grid_config(config))
    except ConfigError as error:
        raise (error.naming("pathways") if error.option == "pathway" else error) from None


def patching_cells(model, windows, config, reference=None, device="cpu") -> np.ndarray:
    """Attribution patching's estimated change of the true-class margin: [window, (layer, pathway)]."""
    from isoprobe.engine.attribution_patching import run_attribution_patching

    return run_attribution_patching(model, windows, _grid_config(config), check=0, device=device).per_window


def mask_cells(model, windows, config, reference=None, device="cpu") -> np.ndarray:
    """The exact change of the true-class margin when masking each (layer, pathway): [window, condition]."""
    from isoprobe.engine.ablate import ablation_logits
    from isoprobe.engine.stats import logit_margin

    grid = ablation_logits(model, windows, _grid_config(config), reference, device)
    target = torch.as_tensor(np.asarray(windows.y)).long()
    clean = logit_margin(grid.clean.double(), target)
    return torch.stack([logit_margin(logits.double(), target) - clean for logits in grid.logits.values()], dim=1).numpy()


def _needs_attention(model: torch.nn.Module, windows: WindowSet) -> str | None:
    try:
        attention_layers(model)
    except ConfigError as error:
        return f"{error.value} {error.allowed}"
    return None


def _needs_tokens(model: torch.nn.Module, windows: WindowSet) -> str | None:
    from isoprobe.attribution.ig import check_token_embeddings

    try:
        check_token_embeddings(model, _first_window(model, windows))
    except ConfigError as error:
        return error.allowed
    return None


register_sanity_method(SanityMethod("ig", ig_cells, describes="Σ IG per window × modality"))
register_sanity_method(SanityMethod("layer-ig", layer_ig_cells, refuses=_needs_tokens,
                                    describes="Σ LayerIG per window × token part"))
register_sanity_method(SanityMethod("attention", attention_cells, refuses=_needs_attention,
                                    describes="Σ attention attribution per window × layer × edge part"))
register_sanity_method(SanityMethod("attribution-patching", patching_cells, refuses=_needs_attention, checks=_check_grid,
                                    describes="estimated margin change per window × (layer, pathway)"))
register_sanity_method(SanityMethod("mask", mask_cells, refuses=_needs_attention, checks=_check_grid,
                                    describes="exact margin change per window × (layer, pathway)"))


# --- the configuration and the result ------------------------------------------------------------

@dataclass(frozen=True)
class SanityConfig(Options):
    methods: tuple[str, ...] = ()  # registered names, a list or "ig,mask"; empty: every registered method
    windows: int = 32  # the subsample the checks run on (all windows if the set is smaller)
    steps: int = 8  # integration steps of ig, layer-ig and attention
    baseline: Baseline = "zero"  # ig, layer-ig: zero or the training split's mean window
    pathways: str = "uni,cross,relay,readout"  # the pathways of attribution-patching and mask, in every layer
    threshold: float = 0.5  # flagged: Spearman still above this after the whole model is randomised
    batch_size: int = 16
    bootstrap: int = 200
    seed: int = 0  # re-drawn weights, subsample, random targets and bootstrap resamples
    level: float = 0.95

    def __post_init__(self) -> None:
        check_choices(self)
        methods = tuple(m.strip() for m in self.methods.split(",") if m.strip()) if isinstance(self.methods, str) \
            else tuple(self.methods)
        methods = methods or tuple(SANITY_METHODS)
        unknown = [m for m in methods if m not in SANITY_METHODS]
        if unknown or len(set(methods)) != len(methods):
            raise ConfigError("methods", self.methods, f"one or more of {', '.join(SANITY_METHODS)}, each once")
        object.__setattr__(self, "methods", methods)
        check_counts(self, {"windows": 2, "steps": 1, "batch_size": 1, "bootstrap": 0, "seed": 0})
        if not isinstance(self.pathways, str) or not self.pathways.strip():
            raise ConfigError("pathways", self.pathways, "one or more pathways, e.g. uni,cross,relay,readout")
        if not isinstance(self.threshold, (int, float)) or not -1 <= self.threshold < 1:
            raise ConfigError("threshold", self.threshold, "a rank correlation in [-1, 1), e.g. 0.5")
        check_level(self)

    def to_dict(self) -> dict:
        return super().to_dict() | {"methods": list(self.methods)}


@dataclass(frozen=True)
class SanityResult(TableResult):
    """One row per (method, step) (COLUMNS); `stages`: each cascade step's label and the parameters it
    re-draws."""

    stages: tuple[Stage, ...] = field(default=(), repr=False, compare=False)
    kind: ClassVar[str] = "sanity"

    def spearman(self, method: str, step: str) -> float:
        rows = self.table[(self.table.method == method) & (self.table.step == step)]
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} rows for method {method!r}, step {step!r}")
        return float(rows.spearman.iloc[0])

    @property
    def flagged(self) -> list[str]:
        """The methods whose output survives randomising the whole model."""
        return [str(m) for m, f in zip(self.table.method, self.table.flagged) if f is True]


# --- cascading randomisation ---------------------------------------------------------------------

LAYER_ROOTS = ("blocks", "layers")  # shared transformer blocks; the MLP's hidden Linear layers
ENCODER_ROOTS = ("encoders",)
EMBEDDING_ROOTS = ("embed", "pos_embed")  # isoprobe's TokenEmbed; TransformerLens's embed and pos_embed


@dataclass(frozen=True)
class Stage:
    """One step of the cascade: its label and the names of the parameters it re-draws."""

    label: str
    parameters: tuple[str, ...]


def cascade_stages(model: torch.nn.Module) -> list[Stage]:
    """The cascade's stages from the output down, by parameter name: `head` (everything not in a
    layer, an encoder or an embedding: the heads, the final norm, TransformerLens's unembed), then
    `L{n}` … `L1` (`blocks.{l}.…`, the MLP's `layers.{l}.…`), `encoders` (`encoders.…`), `embeddings`
    (`embed.…`, `pos_embed.…`). Stages without parameters are left out; together they hold every
    parameter once. A model isoprobe did not build (`isoprobe.hook`) names its layers by
    `layer_prefixes` (each layer's block): `L{n}` … `L1` are those, after one first stage, `outside the
    layers`, of everything else (its head, norms and embeddings: their order is the user's code's)."""
    prefixes = getattr(model, "layer_prefixes", None)
    if prefixes:
        return _foreign_stages(model, prefixes)
    head, encoders, embeddings, layers = [], [], [], {}
    for name, _ in model.named_parameters():
        root, _, rest = name.partition(".")
        index = rest.split(".")[0]
        if root in LAYER_ROOTS and index.isdigit():
            layers.setdefault(int(index), []).append(name)
        elif root in ENCODER_ROOTS:
            encoders.append(name)
        elif root in EMBEDDING_ROOTS:
            embeddings.append(name)
        else:
            head.append(name)
    stages = [Stage("head", tuple(head))]
    stages += [Stage(format_layers([layer]), tuple(layers[layer])) for layer in sorted(layers, reverse=True)]
    stages += [Stage("encoders", tuple(encoders)), Stage("embeddings", tuple(embeddings))]
    return [stage for stage in stages if stage.parameters]


def _foreign_stages(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[Stage]:
    outside, layers = [], {layer: [] for layer in range(len(prefixes))}
    for name, _ in model.named_parameters():
        layer = next((index for index, prefix in enumerate(prefixes) if name.startswith(prefix + ".")), None)
        (outside if layer is None else layers[layer]).append(name)
    stages = [Stage("outside the layers", tuple(outside))]
    stages += [Stage(format_layers([layer]), tuple(layers[layer])) for layer in sorted(layers, reverse=True)]
    return [stage for stage in stages if stage.parameters]


def _name_key(name: str) -> list[int]:
    """A parameter name as integers for numpy's SeedSequence (its UTF-8 bytes: no hash collisions)."""
    return list(name.encode())


def redrawn(parameter: torch.Tensor, name: str, seed: int) -> torch.Tensor:
    """New values for a trained parameter: Gaussian with its own mean and standard deviation (0 for a
    single entry), drawn in float64 on the CPU from the seed and the name alone. Same shape, dtype and
    device as `parameter`."""
    values = parameter.detach().to("cpu", torch.float64)
    mean = float(values.mean())
    std = float(values.std()) if values.numel() > 1 else 0.0
    rng = np.random.default_rng([_WEIGHT_STREAM, seed, *_name_key(name)])
    draw = rng.standard_normal(tuple(parameter.shape)) * std + mean
    return torch.as_tensor(draw).to(parameter.device, parameter.dtype)


@torch.no_grad()
def randomise_stage(model: torch.nn.Module, stage: Stage, seed: int) -> None:
    """Re-draw the stage's parameters of `model` in place (see `redrawn`)."""
    parameters = dict(model.named_parameters())
    for name in stage.parameters:
        parameters[name].copy_(redrawn(parameters[name], name, seed))


# --- windows, targets and the comparison ---------------------------------------------------------

def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 words (wrapping arithmetic): every input bit reaches every output bit."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _keyed_uniform(keys: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """A uniform number in [0, 1) per key from (stream, seed, key) alone, so a window keeps its number
    whatever else is in the set and in whatever order: the key mixed with a hash of the seed, hashed."""
    seed_word = _splitmix(np.array([((stream << 32) ^ seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    x = _splitmix(np.asarray(keys).astype(np.int64).view(np.uint64) ^ seed_word)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _check_keys(windows: WindowSet) -> np.ndarray:
    keys = np.asarray(windows.start)
    if len(np.unique(keys)) != len(keys):
        raise ConfigError("windows", f"{len(np.unique(keys))} distinct starts for {len(keys)} windows",
                          "one window per start: the subsample and random targets are keyed by the window's start")
    return keys


def subsample(windows: WindowSet, n: int, seed: int) -> WindowSet:
    """The `n` windows with the smallest keyed numbers (all, if fewer), in the order of their starts:
    the same windows and order whatever the order of the set."""
    keys = _check_keys(windows)
    chosen = np.argsort(_keyed_uniform(keys, seed, _SUBSAMPLE_STREAM), kind="stable")[:n]
    return windows.take(chosen[np.argsort(keys[chosen], kind="stable")])


def random_targets(windows: WindowSet, n_classes: int, seed: int) -> np.ndarray:
    """A random class other than the window's own for each window, [window] int64, keyed by `start`."""
    if n_classes < 2:
        raise ConfigError("classes", n_classes, "a random other class needs a model of at least two classes")
    shift = 1 + np.floor(_keyed_uniform(_check_keys(windows), seed, _TARGET_STREAM) * (n_classes - 1)).astype(np.int64)
    return (np.asarray(windows.y, dtype=np.int64) + shift) % n_classes


def relabelled(windows: WindowSet, y: np.ndarray) -> WindowSet:
    """The same windows (data and keys) with other classes to explain. Their labels become the new
    classes, so that each segment still holds one class for the methods that summarise by segment;
    the comparison itself uses the original windows' segments."""
    y = np.asarray(y, dtype=np.int64)
    return WindowSet(windows.x, y, y, windows.repetition, windows.start)


def _first_window(model: torch.nn.Module, windows: WindowSet) -> list[torch.Tensor]:
    device = next(model.parameters()).device
    return [torch.as_tensor(np.asarray(windows.x[name][:1]), device=device) for name in model.modality_names]


@torch.no_grad()
def _n_classes(model: torch.nn.Module, windows: WindowSet) -> int:
    with evaluating(model):
        return int(model(*_first_window(model, windows)).shape[-1])


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mid-ranks of `values` [cell] in samples weighted by each row of `weights` [resample, cell]: the
    weight below a value plus half the weight tied with it -> [resample, cell]. With integer weights
    these are the mid-ranks of the expanded sample, less 1/2."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first index of each tie group
    group = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
    tied = np.add.reduceat(weights[:, order], starts, axis=1)  # [resample, group]
    below = np.cumsum(tied, axis=1) - tied
    ranks = np.empty_like(weights, dtype=np.float64)
    ranks[:, order] = (below + tied / 2)[:, group]
    return ranks


def weighted_spearman(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's ρ of `a` and `b` [cell] under each row of `weights` [resample, cell]: the weighted
    Pearson correlation of weighted mid-ranks -> [resample] (NaN where a side is constant)."""
    weights = np.asarray(weights, dtype=np.float64)
    ra, rb = weighted_ranks(np.asarray(a), weights), weighted_ranks(np.asarray(b), weights)
    total = weights.sum(axis=1, keepdims=True)
    da = ra - (weights * ra).sum(axis=1, keepdims=True) / total
    db = rb - (weights * rb).sum(axis=1, keepdims=True) / total
    cov, va, vb = ((weights * x).sum(axis=1) for x in (da * db, da * da, db * db))
    out = np.full(len(weights), np.nan)
    np.divide(cov, np.sqrt(va * vb), out=out, where=(va > 0) & (vb > 0))
    return np.clip(out, -1.0, 1.0)


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ of two flattened outputs (scipy); exactly 1 where they are identical, NaN where
    one is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if np.array_equal(a, b) and np.ptp(a) > 0:
        return 1.0  # spearmanr(x, x) can round to 1 − 1e-16
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


@dataclass(frozen=True)
class Similarity:
    spearman: float
    ci_low: float
    ci_high: float
    cells: int


def compare_outputs(original: np.ndarray, other: np.ndarray, per_window: bool, segments: Segments | None,
                    config: SanityConfig) -> Similarity:
    """Spearman's ρ of two outputs of one method over the cells that are not 0 in both everywhere, with
    its cluster-bootstrap CI over segments where the output has a window axis (NaN otherwise)."""
    if original.shape != other.shape:
        raise ValueError(f"outputs of shapes {original.shape} and {other.shape} cannot be compared cell by cell")
    n = len(original) if per_window else 1
    a, b = original.reshape(n, -1), other.reshape(n, -1)
    kept = (a != 0).any(axis=0) | (b != 0).any(axis=0)  # cells zero in both everywhere: zero by construction
    a, b = a[:, kept], b[:, kept]
    rho = rank_similarity(a, b)
    low = high = float("nan")
    if per_window and segments is not None and config.bootstrap > 1 and a.size and not math.isnan(rho):
        window_weights = segments.weights(config.bootstrap, config.seed)[:, segments.codes]  # [resample, window]
        cell_weights = np.repeat(window_weights, a.shape[1], axis=1)  # window-major, as a.ravel()
        resampled = weighted_spearman(a.ravel(), b.ravel(), cell_weights)
        low, high = (float(x[0]) for x in bootstrap_interval(resampled[:, None], rho, segments.degrees_of_freedom,
                                                              config.level, bounds=(-1.0, 1.0)))
    return Similarity(rho, low, high, int(kept.sum()))


# --- the run ---------------------------------------------------------------------------------------

def _row(method: str, step: str, index: int | None, randomised: str, similarity: Similarity | None, windows: int,
         segments: int, note: str = "") -> dict:
    numbers = (similarity.spearman, similarity.ci_low, similarity.ci_high, similarity.cells) if similarity \
        else (float("nan"), float("nan"), float("nan"), 0)
    return {"method": method, "step": step, "step_index": index, "randomised": randomised,
            **dict(zip(("spearman", "ci_low", "ci_high", "cells"), numbers)), "windows": windows, "segments": segments,
            "flagged": None, "note": note}


def _note(similarity: Similarity) -> str:
    return "undefined: an output is constant over the compared cells" if math.isnan(similarity.spearman) else ""


def sanity(model: torch.nn.Module, windows: WindowSet, config: SanityConfig, reference: WindowSet | None = None,
           device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None) -> SanityResult:
    """Cascading weight randomisation and a random-target check of every configured method (module
    docstring). windows: the evaluated split (labels `y`, segments, keys `start`); reference: the
    training split (ig's mean baseline). `model` is left as it was: the checks run on a deep copy."""
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to check")
    chosen = subsample(windows, config.windows, config.seed)
    segments = Segments.of_windows(chosen)
    work = copy.deepcopy(model).to(device).eval()
    stages = cascade_stages(work)
    methods = [SANITY_METHODS[name] for name in config.methods]
    reasons = {m.name: m.refuses(work, chosen) for m in methods}
    applied = [m for m in methods if reasons[m.name] is None]
    for m in applied:
        m.checks(work, config)
    counts = (len(chosen), segments.n_segments)
    rows = [_row(m.name, NOT_APPLICABLE, None, "", None, *counts, reasons[m.name]) for m in methods if reasons[m.name]]

    total, done = len(applied) * (len(stages) + 2), 0

    def run(method: SanityMethod, on: WindowSet) -> np.ndarray:
        nonlocal done
        output = np.asarray(method.cells(work, on, config, reference, device), dtype=np.float64)
        done += 1
        if progress is not None:
            progress(done, total)
        return output

    original = {m.name: run(m, chosen) for m in applied}
    for m in applied:
        rows.append(_row(m.name, TRAINED, 0, "", compare_outputs(original[m.name], original[m.name], m.per_window,
                                                                  segments, config), *counts))
    swapped = relabelled(chosen, random_targets(chosen, _n_classes(work, chosen), config.seed))
    for m in applied:
        similarity = compare_outputs(original[m.name], run(m, swapped), m.per_window, segments, config)
        rows.append(_row(m.name, RANDOM_TARGET, None, "", similarity, *counts, _note(similarity)))
    for index, stage in enumerate(stages, start=1):
        randomise_stage(work, stage, config.seed)
        randomised = ", ".join(s.label for s in stages[:index])
        for m in applied:
            similarity = compare_outputs(original[m.name], run(m, chosen), m.per_window, segments, config)
            rows.append(_row(m.name, stage.label, index, randomised, similarity, *counts, _note(similarity)))
            if index == len(stages):
                rows[-1]["flagged"] = bool(similarity.spearman > config.threshold)
    # Each method's rows together, in the cascade's order, its random-target row last.
    place = {m.name: i for i, m in enumerate(methods)}
    rows.sort(key=lambda row: (place[row["method"]], len(stages) + 1 if row["step_index"] is None else row["step_index"]))
    table = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"step_index": "Int64"})
    return SanityResult(config, table, stages=tuple(stages))
