"""`isoprobe compare`: how much of the decision runs through direct cross-modal attention (`cross`:
tokens of one modality reading tokens of another), by every method, side by side (DESIGN §5).

The methods do not all estimate one quantity, so every row carries its `estimand` (what quantity, over
which windows, relative to what) and a `block`; only rows of one block are shares of the same thing:

  share of clean accuracy       Σ(base correct − intervened correct) / Σ base correct, all windows:
    mask (IsoNet)               `cross` scores set to −inf
    mean ablation               `cross`'s contribution to the attention output → its training mean
    resample ablation           → a donor window's (seeded)
  share of clean logit margin   Σ(m_clean − m_intervened) / Σ m_clean over the windows the clean model
                                classifies correctly (m = true-class logit − the largest other; > 0 there,
                                so the share is bounded where a misclassified window's negative margin
                                would make it unbounded):
    mask, logit margin          exact
    attribution patching        first-order estimate (one forward and backward pass)
  related quantities            each on its own scale, not shares of the above:
    attention attribution       Σ cross-edge attribution / Σ attribution of every non-self edge, signed
                                (integrated gradients of the true-class logit over a gate on one layer's
                                attention pattern, Hao et al.), ratio of sums over windows, per layer only
                                (each layer's attributions answer another counterfactual: no sum over layers)
    pathway Shapley             φ_cross / (v(all) − v(none)), v = accuracy with the other pathways masked in
                                every shared layer
    interaction index           v(both) − v(emg) − v(acc) + v(none) in accuracy (absent modality → the
                                baseline): what needs both modalities, by any route (CLS included); ≈ −1
                                for fully redundant modalities; not a share of anything

Every number has a 95% stratified cluster-bootstrap CI over segments (`isoprobe.engine.stats`). Per layer
(each layer alone), the layer-resolved estimates side by side. How to read disagreements is in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from isoprobe.attribution.attention import AttentionConfig, attention_attributions
from isoprobe.attribution.estimands import ACCURACY, BLOCKS, DATA, MARGIN, RELATED, Estimate
from isoprobe.attribution.emap import EmapConfig, emap
from isoprobe.attribution.sanity import SanityConfig, sanity
from isoprobe.attribution.interaction import InteractConfig, interact
from isoprobe.data.pipeline import WindowSet
from isoprobe.diagnostics.pid import PIDConfig, data_pid
from isoprobe.diagnostics.shift import ShiftConfig, shift
from isoprobe.engine.ablate import AblationConfig, GridPlan, ablation_logits, grid_plan
from isoprobe.engine.attribution_patching import run_attribution_patching
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.engine.stats import Segments, cluster_ratio, logit_margin
from isoprobe.layersets import parse_layer_label, parse_layers
from isoprobe.options import Options, check_choices, check_counts, check_level
from isoprobe.results import TableResult

@dataclass
class CompareInputs:
    """What every method of compare is given: `layers` parsed once (0-based), and `plan` for the grids
    of `cross` conditions on them (so no method parses `--layers` again)."""

    model: torch.nn.Module
    windows: WindowSet
    reference: WindowSet | None
    config: "CompareConfig"
    device: str | torch.device
    engine: InterventionEngine
    layers: tuple[int, ...]

    def plan(self, mode: str, interventions: tuple[str, ...], draws: int | None = None) -> GridPlan:
        """`cross` on the layers, in `mode`, for each intervention (resample: `draws`, default the config's)."""
        return grid_plan(self.engine, mode, self.layers, ("cross",), None, interventions,
                         self.config.draws if draws is None else draws)

    @cached_property
    def segments(self) -> Segments:
        return Segments.of_windows(self.windows)


Producer = Callable[[CompareInputs], list[dict]]
METHODS: dict[str, Estimate] = {}  # name -> Estimate, in registration order
PRODUCERS: dict[Producer, tuple[str, ...]] = {}  # each producer and the estimates its rows carry


def compare_method(*estimates: Estimate) -> Callable[[Producer], Producer]:
    """Register a producer of compare rows (dicts with method, layers, estimate, ci_low, ci_high, windows,
    segments, caveat; per-layer rows have layers "L<k>") and the estimates they carry. A new method is
    one function and this decorator: compare, its CLI, the study and the report take it from here."""
    def register(producer: Producer) -> Producer:
        for estimate in estimates:
            METHODS[estimate.name] = estimate
        PRODUCERS[producer] = tuple(e.name for e in estimates)
        return producer
    return register


def estimate_of(method: str) -> Estimate:
    """The Estimate of a row's method ("interaction index (a × b)" is an "interaction index")."""
    return METHODS[method if method in METHODS else method.split(" (")[0]]


COLUMNS = ("block", "method", "layers", "estimate", "ci_low", "ci_high", "estimand", "windows", "segments", "caveat",
           "shift_cosine", "shift_mmd2", "shift_p", "shift_null95", "sanity_spearman", "sanity_flagged")
LAYER_COLUMNS = ("layer", "block", "method", "estimate", "ci_low", "ci_high", "null_by_construction")


@dataclass(frozen=True)
class CompareConfig(Options):
    layers: str = "all"
    baseline: Literal["zero", "mean", "donor"] = "zero"  # the interaction index's absent modality
    steps: int = 20  # attention attribution
    draws: int = 1  # resample ablation
    shift_windows: int = 1000  # windows entering the MMD of each ablation's representation shift
    shift_permutations: int = 1000
    pid_codes: int = 8  # k-means codes per modality of the data's PID row
    sanity: bool = False  # run the sanity cascade of the methods that have one (isoprobe.attribution.sanity)
    sanity_windows: int = 32
    batch_size: int = 256
    bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        check_choices(self)
        check_counts(self, {"steps": 2, "draws": 1, "batch_size": 1, "bootstrap": 0, "seed": 0, "shift_windows": 4,
                            "shift_permutations": 0, "sanity_windows": 2, "pid_codes": 2})
        check_level(self)


@dataclass(frozen=True)
class CompareResult(TableResult):
    """table: one row per method (COLUMNS); per_layer: one row per (layer, method) (LAYER_COLUMNS),
    `null_by_construction` where `cross` in that layer cannot change the prediction (to be drawn hollow);
    For the three ablations of all
    the layers, the shift_* columns say how far each moved the representation the head reads
    (`isoprobe.diagnostics.shift`): cosine with the clean one, the paired unbiased MMD², its permutation
    p and the 95th percentile of that permutation null — a larger shift for the same drop points to
    damage rather than lost signal. With `sanity`, sanity_spearman is the rank similarity of the row's
    method after the whole model is randomised and sanity_flagged whether it stayed above the threshold
    (an explanation of the input, not of the model); `sanity` holds the whole cascade."""

    per_layer: pd.DataFrame = field(default_factory=pd.DataFrame)
    sanity: pd.DataFrame = field(default_factory=pd.DataFrame)
    kind: ClassVar[str] = "compare"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"compare": self.table, "compare-layers": self.per_layer,
                **({"sanity": self.sanity} if len(self.sanity) else {})}

    def to_dict(self) -> dict:
        records = lambda frame: TableResult(self.config, frame).to_dict()["rows"]
        return {**super().to_dict(), "per_layer": records(self.per_layer)}


def _ratio_row(method: str, layers: str, numerator: np.ndarray, denominator: np.ndarray, segments: Segments,
               config: CompareConfig) -> dict:
    """Σ numerator / Σ denominator over the windows of `segments`, with its CI."""
    estimate, low, high = cluster_ratio(numerator, denominator, segments, config.bootstrap, config.seed, config.level)
    return {"method": method, "layers": layers, "estimate": estimate, "ci_low": low, "ci_high": high,
            "windows": len(segments.codes), "segments": segments.n_segments, "caveat": segments.caveat()}


ABLATIONS = (("mask (IsoNet)", "mask"), ("mean ablation", "mean"), ("resample ablation", "resample"))
_SHARE = "Σ(base − intervened correct) / Σ base correct, all windows; "


@compare_method(
    Estimate("mask (IsoNet)", ACCURACY, _SHARE + "cross scores → −inf", "mask", layered=True, sanity="mask"),
    Estimate("mean ablation", ACCURACY, _SHARE + "cross contribution → training mean", "mean", layered=True),
    Estimate("resample ablation", ACCURACY, _SHARE + "cross contribution → a donor's", "resample", layered=True),
    Estimate("mask, logit margin", MARGIN, "Σ(m_clean − m_masked) / Σ m_clean, windows the clean model gets right; m = "
             "true-class logit − largest other", "margin", layered=True, sanity="mask"))
def _ablation_rows(inputs: CompareInputs) -> list[dict]:
    """mask, mean and resample on `cross`, each layer alone and all together: shares of clean accuracy,
    and for mask also the share of the clean logit margin over the correctly classified windows."""
    windows, config, design = inputs.windows, inputs.config, inputs.segments
    target = torch.as_tensor(windows.y).long()
    rows = []
    for method, intervention in ABLATIONS:
        ablation = AblationConfig(pathway="cross", intervention=intervention, mode="single", seed=config.seed,
                                  draws=config.draws if intervention == "resample" else 1, batch_size=config.batch_size,
                                  bootstrap=0)
        grid = ablation_logits(inputs.model, windows, ablation, reference=inputs.reference, device=inputs.device,
                               plan=inputs.plan("single", (intervention,)))
        base_correct = (grid.clean.argmax(1) == target).double().numpy()
        base_margin = logit_margin(grid.clean.double(), target).numpy()
        right = np.flatnonzero(base_margin > 0)
        for row in dict.fromkeys(c.row for c in grid.conditions):
            draws = [x for c, x in grid.logits.items() if c.row == row]
            correct = np.mean([(x.argmax(1) == target).double().numpy() for x in draws], axis=0)
            rows.append(_ratio_row(method, row.layer_label, base_correct - correct, base_correct, design, config))
            if intervention == "mask" and len(right):
                change = np.mean([logit_margin(x.double(), target).numpy() for x in draws], axis=0) - base_margin
                rows.append(_ratio_row("mask, logit margin", row.layer_label, -change[right], base_margin[right],
                                       design.take(right), config))
    return rows


@compare_method(Estimate("attribution patching", MARGIN, "first-order estimate of the same (one forward and backward "
                         "pass)", "patching", layered=True, sanity="attribution-patching"))
def _patching_rows(inputs: CompareInputs) -> list[dict]:
    """The first-order estimate of the same conditions, as the same share (correctly classified windows)."""
    config = inputs.config
    ablation = AblationConfig(pathway="cross", mode="single", batch_size=config.batch_size, bootstrap=0)
    result = run_attribution_patching(inputs.model, inputs.windows, ablation, check=0, device=inputs.device,
                        plan=inputs.plan("single", ("mask",)))
    right = np.flatnonzero(result.clean_margin > 0)
    if not len(right):
        return []
    design = inputs.segments.take(right)
    return [_ratio_row("attribution patching", label, -result.per_window[right, index], result.clean_margin[right],
                       design, config) for index, label in enumerate(result.table.layers)]


@compare_method(Estimate("attention attribution", RELATED, "Σ cross / Σ non-self edges of the signed attention "
                         "attribution (IG of the true-class logit over the layer's pattern), per layer", "attention",
                         layered=True, sanity="attention"))
def _attention_rows(inputs: CompareInputs) -> list[dict]:
    """Per layer: the cross edges' signed attribution over that of every non-self edge (ratio of sums)."""
    config = inputs.config
    data = attention_attributions(inputs.model, inputs.windows, AttentionConfig(steps=config.steps), device=inputs.device,
                                  layers=inputs.layers)
    if "cross" not in data.parts:
        return []
    names = list(data.parts)
    cross, others = names.index("cross"), [i for i, name in enumerate(names) if name != "self"]
    design = inputs.segments
    return [_ratio_row("attention attribution", f"L{layer + 1}", data.signed[:, i, cross],
                       data.signed[:, i, others].sum(axis=1), design, config) for i, layer in enumerate(data.layers)]


@compare_method(
    Estimate("pathway Shapley", RELATED, "φ_cross / (v(all) − v(none)), v = accuracy with the other pathways masked in "
             "every layer", "Shapley"),
    Estimate("interaction index", RELATED, "v(both) − v(one) − v(other) + v(none) in accuracy, absent modality → "
             "baseline; any route; not a share", "interaction"))
def _game_rows(inputs: CompareInputs) -> list[dict]:
    """Pathway Shapley share of `cross` and the modality interaction index(es), on accuracy."""
    config, windows, n_layers = inputs.config, inputs.windows, inputs.engine.n_layers
    games = interact(inputs.model, windows, InteractConfig(baseline=config.baseline, batch_size=config.batch_size,
                                                           bootstrap=config.bootstrap, seed=config.seed, level=config.level),
                     reference=inputs.reference, device=inputs.device).table
    accuracy = games[games.metric == "accuracy"]
    shapley = accuracy[(accuracy.method == "pathway game") & (accuracy.quantity == "shapley share") & (accuracy.part == "cross")]
    interaction = accuracy[(accuracy.method == "modality game") & (accuracy.quantity == "interaction")]
    caveat = inputs.segments.caveat()
    rows = []
    for method, frame in (("pathway Shapley", shapley), ("interaction index", interaction)):
        for row in frame.itertuples():
            name = method if method == "pathway Shapley" or len(frame) == 1 else f"{method} ({row.part})"
            rows.append({"method": name, "layers": f"L1-L{n_layers}" if method == "pathway Shapley" else "inputs",
                         "estimate": row.estimate, "ci_low": row.ci_low, "ci_high": row.ci_high, "windows": row.windows,
                         "segments": row.segments, "caveat": caveat})
    return rows


@compare_method(Estimate("EMAP gap", RELATED, "model accuracy − accuracy of its best additive projection (EMAP, Hessel & "
                         "Lee 2020), accuracy points: what needs cross-modal interaction by any route; not a share",
                         "EMAP"))
def _emap_rows(inputs: CompareInputs) -> list[dict]:
    """The accuracy the model loses when projected onto an additive function of its modalities."""
    config = inputs.config
    table = emap(inputs.model, inputs.windows, EmapConfig(batch_size=config.batch_size, bootstrap=config.bootstrap,
                                                          seed=config.seed, level=config.level),
                 device=inputs.device).table
    gap = table[(table.quantity == "gap") & (table["class"].astype(str) == "all")].iloc[0]
    return [{"method": "EMAP gap", "layers": "inputs", "estimate": gap.estimate, "ci_low": gap.ci_low,
             "ci_high": gap.ci_high, "windows": gap.windows, "segments": gap.segments, "caveat": gap.caveat}]


@compare_method(Estimate("data synergy (PID)", DATA, "S / I(X_a, X_b; Y) of the labels (BROJA partial information "
                         "decomposition, plug-in over k-means codes of each modality's features): the share of the label "
                         "information only the two modalities together give — a ceiling on what needs cross-modal "
                         "interaction; a property of the data, not of the model", "PID synergy"))
def _pid_rows(inputs: CompareInputs) -> list[dict]:
    """The data's synergy fraction, on the evaluated windows with codes fitted on the training split."""
    if len(inputs.windows.x) != 2:
        return []  # the decomposition is over two modality groups
    config = inputs.config
    result = data_pid(inputs.windows, inputs.reference, PIDConfig(ks=(config.pid_codes,), permutations=0,
                                                                   bootstrap=min(config.bootstrap, 100), seed=config.seed,
                                                                   level=config.level))
    row = result.table[result.table.part == "synergy"].iloc[0]
    return [{"method": "data synergy (PID)", "layers": "inputs", "estimate": row.fraction,
             "ci_low": row.fraction_ci_low, "ci_high": row.fraction_ci_high, "windows": row.windows,
             "segments": row.segments, "caveat": row.caveat if isinstance(row.caveat, str) else ""}]


def compare(model: torch.nn.Module, windows: WindowSet, config: CompareConfig, reference: WindowSet | None = None,
            device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None,
            layers: tuple[int, ...] | None = None) -> CompareResult:
    """Every estimate (see the module docstring) on `windows`; layers: `config.layers` already parsed
    against the model (0-based; parsed here when not given)."""
    engine = InterventionEngine(model.to(device))
    layers = layers if layers is not None else parse_layers(config.layers, engine.n_layers)
    all_label = f"L{layers[0] + 1}-L{layers[-1] + 1}" if len(layers) > 1 else f"L{layers[0] + 1}"
    inputs = CompareInputs(model, windows, reference, config, device, engine, layers)
    steps = len(PRODUCERS) + 1
    report = (lambda done: progress(done, steps)) if progress is not None else (lambda done: None)
    rows = []
    for done, producer in enumerate(PRODUCERS, start=1):
        rows += producer(inputs)
        report(done)
    shifted = shift(model, windows, ShiftConfig(interventions=("mask", "mean", "resample"), bootstrap=config.bootstrap,
                                                 seed=config.seed, level=config.level, batch_size=config.batch_size,
                                                 max_windows=config.shift_windows, permutations=config.shift_permutations),
                    reference=reference, device=device, plan=inputs.plan("joint", ("mask", "mean", "resample"), draws=1)).table
    final = shifted[shifted.site.str.startswith("final")].set_index("intervention")
    long = pd.DataFrame(rows)
    for column in ("shift_cosine", "shift_mmd2", "shift_p", "shift_null95"):
        long[column] = np.nan
    for method, intervention in ABLATIONS:
        if intervention in final.index:
            at = (long.method == method) & (long.layers == all_label)
            for column, shown in (("cosine", "shift_cosine"), ("mmd2", "shift_mmd2"), ("p_value", "shift_p"),
                                  ("mmd2_null95", "shift_null95")):
                long.loc[at, shown] = final.loc[intervention, column]
    kinds = [estimate_of(m) for m in long.method]
    long["block"], long["estimand"] = [k.block for k in kinds], [k.estimand for k in kinds]
    checked = _sanity(inputs, kinds) if config.sanity else pd.DataFrame()
    long["sanity_spearman"], long["sanity_flagged"] = np.nan, None
    if len(checked):
        last = checked[checked.flagged.notna()].set_index("method")
        for at, kind in enumerate(kinds):
            if kind.sanity in last.index:
                long.loc[long.index[at], ["sanity_spearman", "sanity_flagged"]] = (
                    float(last.loc[kind.sanity, "spearman"]), bool(last.loc[kind.sanity, "flagged"]))
    report(steps)
    single = long.layers.map(lambda label: len(parse_layer_label(label)) == 1).to_numpy(bool)  # one layer alone
    summary = long[~single | (len(layers) == 1)]
    summary = summary.assign(_block=summary.block.map(BLOCKS.index)).sort_values("_block", kind="stable")
    per_layer = long[single].rename(columns={"layers": "layer"})
    # Every layered method looks at `cross` in one layer: where that cannot change the prediction (no
    # cross edge in the model; the last layer of a model read from CLS) its 0 is no finding.
    null = [engine.null_by_construction(Condition(parse_layer_label(label), "cross")) for label in per_layer.layer]
    per_layer = per_layer.assign(null_by_construction=np.array(null, dtype=bool))[list(LAYER_COLUMNS)]
    order = {m: i for i, m in enumerate(METHODS)}
    per_layer = per_layer.assign(_layer=per_layer.layer.map(parse_layer_label), _method=per_layer.method.map(order))
    per_layer = per_layer.sort_values(["_layer", "_method"]).drop(columns=["_layer", "_method"])
    return CompareResult(config, summary[list(COLUMNS)].reset_index(drop=True), per_layer.reset_index(drop=True), checked)


def _sanity(inputs: CompareInputs, kinds: list[Estimate]) -> pd.DataFrame:
    """The sanity cascade (isoprobe.attribution.sanity) of the methods behind the rows that have one."""
    methods = tuple(dict.fromkeys(k.sanity for k in kinds if k.sanity is not None))
    if not methods:
        return pd.DataFrame()
    config = inputs.config
    return sanity(inputs.model, inputs.windows, SanityConfig(methods=methods, windows=config.sanity_windows,
                                                             bootstrap=min(config.bootstrap, 200), seed=config.seed,
                                                             level=config.level),
                  reference=inputs.reference, device=inputs.device).table
