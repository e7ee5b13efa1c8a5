"""`isoprobe emap`: does the model need cross-modal interactions at all? (DESIGN §5)

EMAP, the empirical multimodally-additive function projection (Hessel & Lee, EMNLP 2020), projects a
model onto its best additive function of the modalities using model evaluations on the evaluated set
alone. For two modalities the projected logits of window i are

    f̂(i) = mean_j f(emg_i, acc_j) + mean_j f(emg_j, acc_i) − mean_{j,k} f(emg_j, acc_k),

and for M modality groups (MultiViz, Liang et al., ICLR 2023: the additive part of the functional
ANOVA) f̂(i) = Σ_m A_m(i) − (M − 1)·G, where A_m(i) = E[f | x_m = x_m,i] is the mean over partner
windows j of f with modality m from window i and every other modality from window j, and G, the
grand mean, is the mean of the A_m over modalities and windows (so the projection keeps the mean of
f, and for M = 2 it is the formula above). A model that adds per-modality evidence equals its
projection; the accuracy the projection loses (the gap) is what the decision owes to cross-modal
interaction, by any route (attention, CLS relay, a non-linear fusion head).

Evaluation:
  exact    every pair of windows: N² evaluations for two modalities (one evaluation serves both
           conditionals: f(emg_a, acc_b) is a term of A_emg(a) and of A_acc(b)), M·N² for M > 2;
           used when `partners` is "exact" or the set has at most `exact_below` windows.
  sampled  K = `partners` partner windows per window and modality, drawn uniformly (with
           replacement, so each A_m(i) is an unbiased estimate of the exact one) from the seed alone
           over the windows in the order of their keys (`start`), as the resample donors are
           (`isoprobe.engine.donors`): neither the batch size nor the order of the windows changes
           who partners whom. Each window's grand mean comes from its own draws: with R_m the
           partners of A_m(i), the evaluations "modality b from R_h, the others from R_b", over
           ordered pairs h ≠ b, weighted 1/M, estimate (M − 1)·G without bias (R_h and R_b are
           independent draws); and they hold exactly the partner terms of Σ_m A_m(i) when f is a sum
           of per-modality functions, so such a model is recovered exactly, not up to sampling noise.
           Cost per window: (2M − 1)·K evaluations for M = 2 (the two orders coincide), M²·K else.

Where the model allows it, each modality is encoded once per window and only the stage that mixes the
modalities runs per evaluation (`EncodedPairs`): isoprobe's transformers embed each token from its
own modality's patch, the hierarchical transformer's modality encoders see one modality each, so the
residual stream entering shared layer 0 holds, at each modality's positions, a function of that
modality alone (the CLS token is a constant); the multimodal transformer's attention never crosses
modalities, so its stream stays separable up to the fusion head. Mixing is then a gather of token
positions from two windows' encodings. Other models (the multimodal MLP, foreign models) run full
forwards on mixed inputs (`MixedInputs`); a test holds the two paths equal.

Table (`EmapResult`): per quantity ("model accuracy", "emap accuracy", "gap" = model − EMAP, the mean
of the per-window difference of correctness) and class ("all", or a class index with its data-set
`label`), the estimate and a stratified cluster-bootstrap CI over segments (`engine/stats.py`; NaN
for a class with one segment), windows, segments, whether the projection was exact, and a caveat.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from isoprobe.data.batches import window_batches
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.stats import COVERED_SEGMENTS, Segments, cluster_means
from isoprobe.errors import ConfigError
from isoprobe.models.components.staged import StagedTransformer, residual_stream, run_from
from isoprobe.models.modes import evaluating
from isoprobe.options import Options, check_counts, check_level
from isoprobe.results import TableResult

EXACT = "exact"
QUANTITIES = ("model accuracy", "emap accuracy", "gap")
COLUMNS = ("quantity", "class", "label", "estimate", "ci_low", "ci_high", "windows", "segments", "exact", "caveat")
ALL = "all"  # the `class` (and `label`) of the rows over every window
_STREAM = 0xE3A9  # keeps partner draws apart from the donors', the bootstrap's and the permutations' streams


@dataclass(frozen=True)
class EmapConfig(Options):
    # K partner windows per window and modality, or "exact": every pair of windows (N² evaluations for two
    # groups, M·N² for M). Text from a command line or a recipe ("32", "exact") is read here, once.
    partners: int | Literal["exact"] = 32
    exact_below: int = 256  # evaluate every pair when the set has at most this many windows
    batch_size: int = 512  # model evaluations (mixed windows) per forward; no number depends on it
    bootstrap: int = 1000
    seed: int = 0  # partner draws and bootstrap resamples
    level: float = 0.95

    def __post_init__(self) -> None:
        partners = self.partners
        if isinstance(partners, str) and partners.strip().isdigit():
            partners = int(partners)
        elif isinstance(partners, str) and partners.strip().lower() == EXACT:
            partners = EXACT
        if partners != EXACT and (isinstance(partners, bool) or not isinstance(partners, int) or partners < 1):
            raise ConfigError("partners", self.partners, f"a count of partner windows ≥ 1, or {EXACT!r} for every pair")
        object.__setattr__(self, "partners", partners)
        check_counts(self, {"exact_below": 0, "batch_size": 1, "bootstrap": 0, "seed": 0})
        check_level(self)

    def is_exact(self, n_windows: int) -> bool:
        """Whether a set of `n_windows` is projected over every pair of windows."""
        return self.partners == EXACT or n_windows <= self.exact_below


@dataclass(frozen=True)
class EmapResult(TableResult):
    """One row per (quantity, class) (COLUMNS) and the configuration that produced them."""

    kind: ClassVar[str] = "emap"

    def estimate(self, quantity: str, cls: str | int = ALL) -> float:
        """One number of the table, e.g. estimate("gap") or estimate("emap accuracy", 3)."""
        t = self.table
        rows = t[(t.quantity == quantity) & (t["class"] == str(cls))]
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} rows for quantity {quantity!r}, class {cls!r}")
        return float(rows.estimate.iloc[0])


@dataclass(frozen=True)
class Projection:
    """The model and its additive projection on every window (float64, on the CPU)."""

    model: torch.Tensor  # [window, class]: f(x_i)
    additive: torch.Tensor  # [window, class]: f̂(i), the EMAP logits
    conditional: torch.Tensor  # [modality, window, class]: A_m(i) = E[f | x_m = x_m,i]
    exact: bool
    evaluations: int  # model evaluations spent on mixed windows (the model's own logits aside)


# --- which windows each evaluation mixes, and where its logits go -------------------------------------

@dataclass(frozen=True)
class Plan:
    """Every model evaluation the projection needs. sources: [evaluation, modality] the window each
    modality is taken from; slots: [evaluation, term] the accumulator rows its logits are added to,
    each times weights [evaluation, term] (a weight-0 term pads). Accumulator rows (see `Slots`): the
    conditionals A_m(i), each window's (M − 1)·G term (sampled plans), the model's own logits."""

    sources: np.ndarray
    slots: np.ndarray
    weights: np.ndarray
    exact: bool


@dataclass(frozen=True)
class Slots:
    """Row numbers of the accumulator [row, class]: A_m(i) at m·n + i, the grand-mean term of window i at
    M·n + i, the model's logits at (M + 1)·n + i, and one sink row for padding terms."""

    n: int
    modalities: int

    def conditional(self, m: int, windows: np.ndarray) -> np.ndarray:
        return m * self.n + windows

    def grand(self, windows: np.ndarray) -> np.ndarray:
        return self.modalities * self.n + windows

    def model(self, windows: np.ndarray) -> np.ndarray:
        return (self.modalities + 1) * self.n + windows

    @property
    def sink(self) -> int:
        return (self.modalities + 2) * self.n

    @property
    def rows(self) -> int:
        return self.sink + 1


def _plan(parts: Sequence[tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]], slots: Slots, exact: bool) -> Plan:
    """A plan from parts (sources [e, modality], slot columns [e] each, weight columns [e] each), terms
    padded to the widest part with the sink at weight 0."""
    width = max(len(columns) for _, columns, _ in parts)
    sources, rows, weights = [], [], []
    for part_sources, columns, column_weights in parts:
        e = len(part_sources)
        pad = width - len(columns)
        sources.append(part_sources)
        rows.append(np.stack([*columns, *[np.full(e, slots.sink)] * pad], axis=1))
        weights.append(np.stack([*column_weights, *[np.zeros(e)] * pad], axis=1))
    return Plan(np.concatenate(sources).astype(np.int64), np.concatenate(rows).astype(np.int64),
                np.concatenate(weights), exact)


def _model_part(slots: Slots) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Each window whole: the model's own logits."""
    i = np.arange(slots.n)
    return np.repeat(i[:, None], slots.modalities, axis=1), [slots.model(i)], [np.ones(slots.n)]


def exact_plan(n: int, modalities: int) -> Plan:
    """Every pair (a, b): modality m from window a, every other modality from window b, a term of
    A_m(a) with weight 1/n. For two modalities the pairs for m = 1 are those for m = 0 read the other
    way round, so one set of n² evaluations serves both conditionals."""
    slots = Slots(n, modalities)
    a, b = (x.reshape(-1) for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    weight = np.full(n * n, 1.0 / n)
    parts = []
    for m in range(1 if modalities == 2 else modalities):
        sources = np.repeat(b[:, None], modalities, axis=1)
        sources[:, m] = a
        columns, weights = [slots.conditional(m, a)], [weight]
        if modalities == 2:
            columns.append(slots.conditional(1 - m, b))
            weights.append(weight)
        parts.append((sources, columns, weights))
    return _plan([*parts, _model_part(slots)], slots, exact=True)


def sampled_plan(partners: np.ndarray) -> Plan:
    """The evaluations of sampled EMAP from partners [window, modality, partner] (window positions).

    A_m(i): modality m from window i, the others from partner R_m[i, k], weight 1/K. Grand-mean term
    of window i, (M − 1)·G: for ordered pairs h ≠ b, modality b from R_h[i, k] and the others from
    R_b[i, k], weight 1/(M·K) (see the module docstring; for two modalities both orders give one
    evaluation, counted twice)."""
    n, modalities, k = partners.shape
    slots = Slots(n, modalities)
    window = np.repeat(np.arange(n), k)  # [window · partner]
    drawn = partners.transpose(0, 2, 1).reshape(n * k, modalities)  # [window · partner, modality]: R_m[i, k]
    weight = np.full(n * k, 1.0 / k)
    parts = []
    for m in range(modalities):
        sources = np.repeat(drawn[:, m : m + 1], modalities, axis=1)
        sources[:, m] = window
        parts.append((sources, [slots.conditional(m, window)], [weight]))
    # modality j takes R_{pattern[j]}: pattern (h, b) gives modality b R_h and every other modality R_b
    patterns = Counter(tuple(h if j == b else b for j in range(modalities))
                       for h in range(modalities) for b in range(modalities) if h != b)
    for pattern, count in sorted(patterns.items()):
        parts.append((drawn[:, list(pattern)], [slots.grand(window)], [weight * count / modalities]))
    return _plan([*parts, _model_part(slots)], slots, exact=False)


def partner_windows(keys: np.ndarray, modalities: int, partners: int, seed: int) -> np.ndarray:
    """Partners of each window per modality: [window, modality, partner] int, positions into the set,
    drawn uniformly with replacement (a window may partner itself, as every j does in the exact mean).

    keys: [window] distinct values naming the windows: the draws are made over the windows in the order
    of their keys and mapped back, so they depend on the seed and the set alone, not on its order."""
    keys = np.asarray(keys)
    n = len(keys)
    if len(np.unique(keys)) != n:
        raise ConfigError("keys", f"{len(np.unique(keys))} distinct of {n}", "need one distinct key (start) per window")
    order = np.argsort(keys, kind="stable")
    canonical = np.random.default_rng([_STREAM, seed]).integers(0, n, size=(n, modalities, partners))
    out = np.empty_like(canonical)
    out[order] = order[canonical]  # window order[r] is partnered with windows order[canonical[r]]
    return out


# --- evaluating mixed windows ---------------------------------------------------------------------------

def separable_depth(model: StagedTransformer) -> int:
    """The shared layer whose input is the deepest residual stream where each modality's positions
    still depend on that modality's input alone: 0 (the input of shared layer 0, after the modality
    encoders) when attention can cross modalities or reach CLS, `n_layers` (the input of the heads)
    when every edge the model lets exist joins two positions of one modality (the multimodal
    transformer; blocks are otherwise per position)."""
    ids = model.token_modalities.cpu()
    crossing = model.attention_edges.cpu() & (ids[:, None] != ids[None, :])
    return 0 if bool(crossing.any()) else model.n_layers


class EncodedPairs:
    """Logits of mixed windows from per-window encodings: each window is encoded once up to
    `separable_depth`, a mixed window gathers each modality's positions from its source window, and
    only the layers above (and the heads) run per evaluation.

    Only for isoprobe's transformers (StagedTransformer), whose embedding works per token and whose
    modality encoders see one modality each: the stage interface alone does not promise that."""

    def __init__(self, model: StagedTransformer, windows: WindowSet, names: tuple[str, ...], batch_size: int,
                 device: torch.device | str):
        self.model, self.depth = model, separable_depth(model)
        encoded = [residual_stream(model, inputs, self.depth)[-1]
                   for inputs in window_batches(windows.x, names, batch_size, device)]
        self.encodings = torch.cat(encoded)  # [window, pos, d_model]
        ids = model.token_modalities.to(self.encodings.device)
        self.columns = (ids - 1).clamp(min=0)  # [pos]: the modality each position comes from (CLS: any, constant)
        self.positions = torch.arange(len(ids), device=self.encodings.device)

    def __call__(self, sources: np.ndarray) -> torch.Tensor:
        """sources [batch, modality] -> logits [batch, class]."""
        index = torch.as_tensor(sources, device=self.encodings.device)[:, self.columns]  # [batch, pos]
        mixed = self.encodings[index, self.positions]  # [batch, pos, d_model]
        return run_from(self.model, self.depth, mixed, self.model.n_layers)


class MixedInputs:
    """Logits of mixed windows from full forwards: each modality's input gathered from its source window."""

    def __init__(self, model: torch.nn.Module, windows: WindowSet, names: tuple[str, ...], batch_size: int,
                 device: torch.device | str):
        self.model, self.windows, self.names, self.device = model, windows, names, device

    def __call__(self, sources: np.ndarray) -> torch.Tensor:
        """sources [batch, modality] -> logits [batch, class]."""
        inputs = [torch.as_tensor(np.asarray(self.windows.x[name][sources[:, m]]), device=self.device)
                  for m, name in enumerate(self.names)]
        return self.model(*inputs)


def encodes_per_modality(model: torch.nn.Module) -> bool:
    """Whether `EncodedPairs` applies (see its docstring)."""
    return isinstance(model, StagedTransformer)


# --- the projection -------------------------------------------------------------------------------------

def check_modalities(model: torch.nn.Module) -> tuple[str, ...]:
    """The model's modality groups; refused unless there are at least two (an additive function of one
    group is the model itself)."""
    names = tuple(getattr(model, "modality_names", ()))
    if len(names) < 2:
        raise ConfigError("modalities", ",".join(names) or None,
                          f"EMAP needs a model of two or more modality groups (e.g. emg,acc or emg[0:6],emg[6:12]); "
                          f"this one has {len(names)}: with one group there is no interaction to remove")
    return names


def _check_windows(windows: WindowSet, names: tuple[str, ...]) -> None:
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to evaluate")
    missing = [name for name in names if name not in windows.x]
    if missing:
        raise ConfigError("windows", sorted(windows.x), f"lack the model's modality group(s) {missing}")


@torch.no_grad()
def emap_projection(model: torch.nn.Module, windows: WindowSet, config: EmapConfig, device: str | torch.device = "cpu",
                    progress: Callable[[int, int], None] | None = None, reuse_encodings: bool = True) -> Projection:
    """The model's logits and their EMAP projection on `windows` (exact or sampled, see the module).

    reuse_encodings: encode each modality once per window where the model allows (`EncodedPairs`);
    False runs every evaluation through the whole model (the naive reference, same numbers)."""
    names = check_modalities(model)
    _check_windows(windows, names)
    n, modalities = len(windows), len(names)
    exact = config.is_exact(n)
    plan = exact_plan(n, modalities) if exact else \
        sampled_plan(partner_windows(windows.start, modalities, config.partners, config.seed))
    slots = Slots(n, modalities)
    model = model.to(device)
    with evaluating(model):
        kind = EncodedPairs if reuse_encodings and encodes_per_modality(model) else MixedInputs
        evaluate = kind(model, windows, names, config.batch_size, device)
        sums = _accumulate(evaluate, plan, slots.rows, config.batch_size, progress)
    conditional = sums[: modalities * n].view(modalities, n, -1)  # [modality, window, class]
    if exact:  # (M − 1)·G, G the mean of the conditionals over modalities and windows
        grand = (modalities - 1) * conditional.mean(dim=(0, 1)).expand(n, -1)
    else:
        grand = sums[slots.grand(np.arange(n))]
    additive = conditional.sum(dim=0) - grand
    return Projection(sums[slots.model(np.arange(n))].cpu(), additive.cpu(), conditional.cpu(), exact,
                      len(plan.sources) - n)


def _accumulate(evaluate: Callable[[np.ndarray], torch.Tensor], plan: Plan, rows: int, batch_size: int,
                progress: Callable[[int, int], None] | None) -> torch.Tensor:
    """Σ weight × logits into each evaluation's accumulator rows, in float64: [row, class]."""
    sums = None
    total = -(-len(plan.sources) // batch_size)
    for index, start in enumerate(range(0, len(plan.sources), batch_size)):
        chunk = slice(start, start + batch_size)
        logits = evaluate(plan.sources[chunk]).double()  # [batch, class]
        if sums is None:
            sums = torch.zeros(rows, logits.shape[-1], dtype=torch.float64, device=logits.device)
        slots = torch.as_tensor(plan.slots[chunk], device=logits.device)
        weights = torch.as_tensor(plan.weights[chunk], device=logits.device)
        for term in range(slots.shape[1]):
            sums.index_add_(0, slots[:, term], logits * weights[:, term, None])
        if progress is not None:
            progress(index + 1, total)
    return sums


def emap_logits(model: torch.nn.Module, windows: WindowSet, config: EmapConfig, device: str | torch.device = "cpu",
                progress: Callable[[int, int], None] | None = None, reuse_encodings: bool = True) -> torch.Tensor:
    """The EMAP logits f̂(i): [window, class] float64 (see `emap_projection`)."""
    return emap_projection(model, windows, config, device, progress, reuse_encodings).additive


# --- the table ------------------------------------------------------------------------------------------

def _caveat(segments: Segments) -> str:
    if segments.n_segments < 2:
        return f"{segments.n_segments} segment: no interval"
    if segments.n_segments < COVERED_SEGMENTS:
        return f"{segments.n_segments} segments (< {COVERED_SEGMENTS}): 95% CIs cover less than 95%"
    return ""


def emap_table(projection: Projection, windows: WindowSet, config: EmapConfig) -> pd.DataFrame:
    """The rows (COLUMNS): model accuracy, EMAP accuracy and their gap over all windows, then per class."""
    y = np.asarray(windows.y, dtype=np.int64)
    model_correct = (projection.model.argmax(-1).numpy() == y).astype(np.float64)
    emap_correct = (projection.additive.argmax(-1).numpy() == y).astype(np.float64)
    values = np.stack([model_correct, emap_correct, model_correct - emap_correct], axis=1)  # [window, quantity]
    bounds = (np.array([0.0, 0.0, -1.0]), np.array([1.0, 1.0, 1.0]))  # accuracies in [0, 1], the gap in [−1, 1]
    design = Segments.of_windows(windows)
    labels = np.asarray(windows.label)
    groups = [(ALL, ALL, np.arange(len(y)))]
    groups += [(str(c), str(labels[y == c][0]), np.flatnonzero(y == c)) for c in np.unique(y)]
    rows = []
    for cls, label, index in groups:
        segments = design if cls == ALL else design.take(index)
        mean, low, high = cluster_means(values[index], segments, config.bootstrap, config.seed, config.level, bounds)
        rows += [{"quantity": quantity, "class": cls, "label": label, "estimate": float(m), "ci_low": float(lo),
                  "ci_high": float(hi), "windows": len(index), "segments": segments.n_segments,
                  "exact": projection.exact, "caveat": _caveat(segments)}
                 for quantity, m, lo, hi in zip(QUANTITIES, mean, low, high)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def emap(model: torch.nn.Module, windows: WindowSet, config: EmapConfig, reference: WindowSet | None = None,
         device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None) -> EmapResult:
    """Model accuracy, EMAP accuracy and the gap on `windows` (labels `y`, segments, `start` keys), with
    cluster-bootstrap CIs over segments, overall and per class. `reference` is unused (EMAP needs only
    the evaluated set); it is taken for the attribution contract."""
    projection = emap_projection(model, windows, config, device, progress)
    return EmapResult(config, emap_table(projection, windows, config))
