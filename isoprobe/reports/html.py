"""`DIR/report/`: a study's tables turned into one offline page (index.html with plotly), static figures
(PNG, SVG), the numbers of every figure (CSV, Markdown) and report.json holding every number shown.

`build_report` computes (aggregate.py); `write_report` only draws and writes (plots.py), into a
temporary folder renamed to `report/` at the end, so a failed report leaves the old one or none."""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from isoprobe.atomic import atomic_folder
from isoprobe.attribution.estimands import ACCURACY, BLOCKS, DATA, MARGIN, RELATED
from isoprobe.errors import ConfigError
from isoprobe.reports import aggregate
from isoprobe.reports.aggregate import FEW_SEEDS, FEW_SUBJECTS, MIN_UNITS, SEEDS, SEGMENTS, SUBJECTS
from isoprobe.reports.inputs import Study, load_study
from isoprobe.reports import plots
from isoprobe.reports.plots import number

FORMAT, VERSION = "isoprobe-report", 1
HTML_ROWS = 60  # longer tables are linked, not inlined


@dataclass(frozen=True)
class ReportConfig:
    """subject_bootstrap: resamples of the bootstrap over subjects (or the seeds of one subject), across
    runs — not the segment bootstrap within a run, which the analyses did; seed: its generator's seed;
    runs_shown: how many runs get training curves and confusion matrices (the first in the tables)."""

    subject_bootstrap: int = 2000
    seed: int = 0
    runs_shown: int = 4

    def __post_init__(self):
        if not isinstance(self.subject_bootstrap, int) or self.subject_bootstrap < 100:
            raise ConfigError("subject_bootstrap", self.subject_bootstrap, "must be an integer ≥ 100")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("seed", self.seed, "must be an integer ≥ 0")
        if not isinstance(self.runs_shown, int) or self.runs_shown < 1:
            raise ConfigError("runs_shown", self.runs_shown, "must be an integer ≥ 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FigureSpec:
    """One figure: what it is called and says, the tables it came from, the numbers it plots and notes
    printed under it (e.g. runs with too few segments for their CIs and tests to mean much)."""

    id: str
    title: str
    caption: str
    sources: tuple[str, ...]
    table: pd.DataFrame
    notes: tuple[str, ...] = ()


@dataclass
class Report:
    title: str
    summary: str
    headline: dict | None
    runs: int
    figures: list[FigureSpec]
    left_out: list[dict]  # {"figure", "table", "reason"}
    config: ReportConfig
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FigureDef:
    """One figure of the report: its id, the study table it draws from (without it the figure is left
    out, and the report says why), how its numbers are summarised and captioned (`build`: a FigureSpec,
    or a reason to leave it out, or None to draw nothing quietly), and its two renderers (`plots.py`:
    interactive plotly and static matplotlib, each taking the FigureSpec's table)."""

    id: str
    table: str
    build: Callable[[dict[str, pd.DataFrame], "ReportConfig"], "FigureSpec | str | None"]
    plotly: Callable
    static: Callable


FIGURES: dict[str, FigureDef] = {}  # in page order


def register_figure(figure_id: str, table: str, plotly: Callable, static: Callable):
    """Register a figure builder (decorator): a new figure is one builder, two renderers and this line."""
    def decorator(build):
        FIGURES[figure_id] = FigureDef(figure_id, table, build, plotly, static)
        return build
    return decorator


def write_report(root: Path, config: ReportConfig | None = None) -> Path:
    """Read the study folder `root`, write `root/report/` and return that folder."""
    report = build_report(load_study(root), config or ReportConfig())
    target = Path(root) / "report"
    with atomic_folder(target) as folder:
        render(report, folder)
    return target


# --- what the report shows --------------------------------------------------------------------------

def build_report(study: Study, config: ReportConfig) -> Report:
    tables, b, s = study.tables, config.subject_bootstrap, config.seed
    figures: list[FigureSpec] = []
    left_out = []
    for figure in FIGURES.values():
        if figure.table not in tables:
            if figure.table in study.absent:
                left_out.append({"figure": figure.id, "table": f"{figure.table}.csv", "reason": study.absent[figure.table]})
            continue
        built = figure.build(tables, config)
        if isinstance(built, str):
            left_out.append({"figure": figure.id, "table": f"{figure.table}.csv", "reason": built})
        elif built is not None:
            figures.append(built)
    compare = aggregate.compare_summary(tables["compare"], b, s) if "compare" in tables else None
    ablation = aggregate.ablation_summary(tables["ablation"], b, s) if "ablation" in tables else None
    top = aggregate.headline(compare, ablation)
    runs = len(set().union(*(set(t.run) for t in tables.values())))
    title = str(study.meta.get("title") or f"isoprobe study: {study.root.resolve().name}")
    return Report(title, _summary(tables, top, runs), top, runs, figures, left_out, config, study.meta)


def _summarised(figure_id: str, title: str, source: str, summarise: Callable, text: str) -> Callable:
    """The builder of a figure that draws one study table's summary (aggregate) under a fixed caption."""
    def build(tables, config) -> FigureSpec:
        table = summarise(tables[source], config.subject_bootstrap, config.seed)
        return FigureSpec(figure_id, title, _caption(text, table, config.subject_bootstrap), (f"{source}.csv",), table)
    return build


register_figure("accuracy", "runs", plots.plotly_accuracy, plots.static_accuracy)(_summarised(
    "accuracy", "Accuracy by architecture and modality configuration", "runs", aggregate.accuracy_summary,
    "Test accuracy of each architecture (x) under each modality configuration (bars: unimodal, multimodal, "
    "equal-channel, with the modality groups used), averaged over runs."))


@register_figure("channels", "runs", plots.plotly_channels, plots.static_channels)
def _channels(tables, config) -> FigureSpec | None:
    table = aggregate.channel_summary(tables["runs"], tables.get("ablation"), config.subject_bootstrap, config.seed)
    if table.empty:  # drawn for studies that sweep the sEMG channel count (analyses/channel-sweep.toml)
        return None
    drops = (table.measure == "relative_drop").any()
    sources = ("runs.csv", "ablation.csv") if drops else ("runs.csv",)
    notes = tuple(aggregate.caveat_notes(_runs_of(tables["ablation"], table[table.measure == "relative_drop"]),
                                         "ablation.csv")) if drops else ()
    return FigureSpec("channels", "Second modality and cross-modal share against sEMG channel count",
                      _channels_caption(table, config.subject_bootstrap), sources, table, notes)


def _single_layers(tables, config) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Ablation's single-layer conditions summarised, and the few-segment notes of the runs they draw."""
    ablation = aggregate.ablation_summary(tables["ablation"], config.subject_bootstrap, config.seed)
    layered = tables["ablation"][aggregate.layer_number(tables["ablation"].layers).notna().to_numpy(bool)]
    return ablation[ablation.layer.notna()], tuple(aggregate.caveat_notes(layered, "ablation.csv"))


@register_figure("layer_drop", "ablation", plots.plotly_layer_drop, plots.static_layer_drop)
def _layer_drop(tables, config) -> FigureSpec | str:
    single, notes = _single_layers(tables, config)
    table = single[single.pathway.isin(aggregate.LAYER_PATHWAYS)].reset_index(drop=True)
    if table.empty:
        return "no single-layer uni, cross, relay or readout rows"
    return FigureSpec("layer_drop", "Per-layer pathway masking (the paper's Figure 5)", _caption(
        f"Accuracy drop (base − intervened accuracy) when one pathway is intervened on ({_listed(table.intervention)}) "
        "in one shared layer at a time: uni = token edges within a modality, cross = token edges between "
        "modalities, relay = modality tokens reading CLS, readout = CLS reading modality tokens. "
        f"Hollow markers with {'∅'} are null by construction (the condition touches no edge the prediction can "
        "depend on, e.g. uni/cross at the last layer): not measurements, so no bar and no number.", table,
        config.subject_bootstrap), ("ablation.csv",), table, notes)


@register_figure("layer_heatmap", "ablation", plots.plotly_heatmap, plots.static_heatmap)
def _layer_heatmap(tables, config) -> FigureSpec | str:
    single, notes = _single_layers(tables, config)
    table = aggregate.pooled(single).drop(columns=list(aggregate.LEVEL_COLUMNS)).reset_index(drop=True)
    if table.empty:
        return "no single-layer rows"
    return FigureSpec("layer_heatmap", "Layer × pathway drops", _caption(
        "Mean accuracy drop for every pathway ablated in one layer at a time (red: accuracy falls). "
        "∅: null by construction; blank: not run. The CIs of the cells, and below "
        f"{MIN_UNITS} units each unit's drop, are in the per-layer figure and its table.", table, config.subject_bootstrap),
        ("ablation.csv",), table, notes)


@register_figure("compare", "compare", plots.plotly_compare, plots.static_compare)
def _compare(tables, config) -> FigureSpec:
    compare = aggregate.compare_summary(tables["compare"], config.subject_bootstrap, config.seed)
    return FigureSpec("compare", "How much runs through cross-modal attention, by every method", _caption(
        "Each estimate of `isoprobe compare`, over the layers in brackets, coloured by what it estimates (the "
        "`estimand` column says it in full); only estimates of one block are shares of the same thing. "
        + _blocks_text(compare) + (" Hollow markers with ∅ are null by construction: not measurements, so no number."
                                   if compare[aggregate.NULL_COLUMN].any() else ""),
        compare, config.subject_bootstrap), ("compare.csv",), compare)


BLOCK_TEXT = {  # how to read each block of compare (isoprobe.attribution.estimands)
    ACCURACY: "the share of clean accuracy removed (Σ(base − intervened correct) / Σ base correct over all windows)",
    MARGIN: "the share of the clean true-class logit margin removed, over the windows the clean model gets right",
    RELATED: "related quantities, each on its own scale, not shares of the above",
    DATA: "properties of the data, whatever the model: what the labels need (a ceiling, not a pathway share)",
}


def _blocks_text(compare: pd.DataFrame) -> str:
    """Per block present, in its colour: what its rows estimate and which methods gave them (the table's own
    methods, so a newly registered method is named without editing this caption)."""
    names = ("Blue", "Orange", "Green", "Red")
    pieces = []
    for index, block in enumerate(BLOCKS):
        methods = list(dict.fromkeys(compare.method[compare.block == block]))
        if methods:
            pieces.append(f"{names[index]}: {BLOCK_TEXT[block]} — {', '.join(methods)}.")
    return " ".join(pieces)


register_figure("compare_layers", "compare_layers", *plots.line_renderers(plots.COMPARE_LAYERS))(_summarised(
    "compare_layers", "Cross-modal attention per layer, by method", "compare_layers", aggregate.compare_layers_summary,
    "The per-layer estimates of `isoprobe compare` (each layer alone) for every method that has them, the "
    "methods side by side around each layer: shares of clean accuracy (mask, mean, resample), shares of the "
    "clean margin (mask margin, attribution patching), and attention attribution (cross edges' share of the "
    "layer's signed attribution over non-self edges: a related quantity on its own scale). Hollow markers with "
    "∅ are null by construction (`cross` in that layer cannot change the prediction: no cross-modal attention "
    "exists, as in the multimodal transformer, or only CLS reaches the head): not measurements, so no line "
    "through them and no number."))

register_figure("knockout", "knockout", *plots.line_renderers(plots.KNOCKOUT))(_summarised(
    "knockout", "Knockout windows: the true class's probability per layer and pathway", "knockout",
    aggregate.knockout_summary,
    "Attention knockout as vision-language analyses report it (Geva et al. 2023; Zhang et al., CVPR 2025): for "
    "each layer (x), the pathway masked in a window of consecutive layers centred on it (the `window` column; "
    "clipped at the ends), over the windows the clean model classifies correctly; y: the mean relative change "
    "of the true class's probability, (p_new − p_base) / p_base (0: no effect; −1: the probability gone). One "
    "line per directed pair of modalities (a->b: a's tokens reading b's) and for relay (modality tokens reading "
    "CLS) and readout (CLS reading modality tokens). Hollow markers with ∅ are null by construction."))

register_figure("emap", "emap", plots.plotly_emap, plots.static_emap)(_summarised(
    "emap", "Does the model need cross-modal interaction at all? (EMAP)", "emap", aggregate.emap_summary,
    "EMAP (Hessel & Lee, EMNLP 2020): each model projected onto its best additive function of the modalities, "
    "from model evaluations on the evaluated windows (each modality's input kept, the other's averaged over "
    "partner windows; exact over every pair for small sets, else K partners per window from the seed). Left: "
    "the model's accuracy and its projection's; right: the gap (model − EMAP), what the decision owes to "
    "cross-modal interaction by any route — attention, the CLS relay or a non-linear head. A gap near 0 says "
    "an additive model would do as well, whatever the attention pathways carry."))

register_figure("pid", "pid", *plots.line_renderers(plots.PID))(_summarised(
    "pid", "How much synergy is in the data? Partial information decomposition", "pid", aggregate.pid_summary,
    "The BROJA partial information decomposition (Bertschinger et al. 2014, as Liang et al., NeurIPS 2023, "
    "estimate it) of I(X_a, X_b; Y) into redundancy (what either modality gives), each modality's unique "
    "information and synergy (what only the two together give), in bits, for each number K of k-means codes per "
    "modality (x; codes of each modality's features — per-channel log-RMS and band powers for sEMG, mean levels "
    "for the second modality — fitted on the training split). `labels`: Y is the gesture, a property of the "
    "data and the ceiling on what needs cross-modal interaction; a model's row decomposes its predictions. A "
    "plug-in estimate over codes is biased upward as K grows: `floor95` (the table) is the 95th percentile of the "
    "same estimate with the labels permuted, and `expected_bits` the value the synthetic generator planted."))

register_figure("sanity", "sanity", *plots.line_renderers(plots.SANITY))(_summarised(
    "sanity", "Sanity checks: does each method's output depend on the trained weights?", "sanity",
    aggregate.sanity_summary,
    "Cascading randomisation (Adebayo et al. 2018), from `isoprobe compare --sanity`: the model's weights are "
    "re-drawn stage by stage from the output down (head, last shared layer, …, encoders, embeddings; x), and each "
    "method's output is compared with its output on the trained model by Spearman's ρ over its cells (y; 1 at "
    "the trained model). A method whose ρ stays high once every weight is re-drawn explains the input, not the "
    "model: above 0.5 at the last step it is flagged (`flagged_runs`), and compare's rows carry the flag "
    "(`sanity_flagged`). sanity.csv also holds the random-target check (the output for a random other class "
    "against the true class's: a high ρ says a method hardly depends on which class it explains)."))

register_figure("shift_vs_drop", "shift", plots.plotly_shift, plots.static_shift)(_summarised(
    "shift_vs_drop", "Distribution shift against drop, per intervention", "shift", aggregate.shift_summary,
    "For each condition of `isoprobe shift` at its last site (the representation the head reads): the paired "
    "unbiased MMD² (RBF kernel, median-heuristic bandwidth; each window's own clean–intervened term left out, "
    "so its expectation is 0 when nothing moved) between intervened and clean representations (x) against "
    "the accuracy drop of the same condition (base − intervened accuracy, y). Vertical ticks: the 95th "
    "percentile of the statistic's permutation null (clean and intervened swapped by segment); a point left "
    "of its tick is within what swapping alone gives. A larger shift for the same drop points to damage "
    "rather than lost signal."))


def _first_runs(figure_id: str, title: str, source: str, select: Callable, text: str) -> Callable:
    """The builder of a figure with one panel per run, for the first `runs_shown` runs of a study table;
    text: the caption after "… of the first k of n runs"."""
    def build(tables, config) -> FigureSpec:
        table = select(tables[source], config.runs_shown)
        shown, total = table.run.nunique(), tables[source].run.nunique()
        return FigureSpec(figure_id, title, text.format(shown=shown, total=total), (f"{source}.csv",), table)
    return build


register_figure("curves", "curves", plots.plotly_curves, plots.static_curves)(_first_runs(
    "curves", "Training curves and λ(t)", "curves", aggregate.curves_shown,
    "Training of the first {shown} of {total} runs, per epoch: validation and training accuracy, λ(t) — the "
    "weight of the CLS head in the loss L(t) = λ(t)·L_CLS + (1 − λ(t))·L_avg — and training and validation "
    "loss, from each run's metrics.jsonl. One run per panel, so no CIs."))

register_figure("confusion", "confusion", plots.plotly_confusion, plots.static_confusion)(_first_runs(
    "confusion", "Confusion matrices", "confusion", aggregate.confusion_shares,
    "Row-normalised confusion matrices of the first {shown} of {total} runs on the test split: each cell is "
    "the share of the true class's windows (row) predicted as the column's class, count / row total "
    "(counts in the table and on hover). One run per panel, so no CIs."))


@register_figure("planted", "planted", plots.plotly_planted, plots.static_planted)
def _planted(tables, config) -> FigureSpec:
    table = aggregate.planted_summary(tables["planted"], config.subject_bootstrap, config.seed)
    return FigureSpec("planted", "Planted truth against what each method found", _caption(
        "Synthetic data only: for each check (rows `level` run), each run's finding with its own 95% CI over "
        "segments, green where that run passed its rule and red where it failed. A rule tests one number (named "
        "after 'tests': the estimate, the CI's low or high end, or the whole CI) and passes when it lies in a "
        "region: shaded for each run, its finite bounds dashed (a bound such as chance differs between runs). "
        "Black diamond: the mean over the runs of a check (rows `level` pooled; `passed_runs` of `runs` passed, "
        "`passed` when all did; `low` and `high` filled only where every run has the same region); × the "
        "planted value where it is a number (the `planted` column states each rule).", table, config.subject_bootstrap,
        PLANTED_TEXT), ("planted.csv",), table)


def _runs_of(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of `table` whose model and modalities a summary shows."""
    keys = [c for c in aggregate.MODEL_COLUMNS if c in table and c in summary]
    return table.merge(summary[keys].drop_duplicates(), on=keys, sort=False)


def _channels_caption(table: pd.DataFrame, bootstrap: int) -> str:
    drops = aggregate.pooled(table[table.measure == "relative_drop"])
    if drops.empty:
        panel_b = "B (the cross-modal share) is not drawn: ablation.csv holds no all-layer cross masking of these runs."
    else:
        panel_b = ("B: the relative accuracy drop ((base − intervened) / base accuracy) when IsoNet masking removes "
                   f"every cross-modal attention edge in all shared layers together ({_listed(drops.layers)}), in the "
                   "runs with the second modality; hollow markers with ∅ are null by construction, not measurements.")
        each = aggregate.unit_rows(table[table.measure == "relative_drop"])
        if (drops.unit == SEGMENTS).any() or not each.empty:
            panel_b += (" A single run's relative drop (a lone run's, or each unit's below "
                        f"{MIN_UNITS}) has no CI: ablation.csv records CIs of the absolute drop only.")
    return _caption(
        "Runs that differ only in how many sEMG channels they feed the model (x, log₂ scale; counted from the "
        "modality configuration against the data set's recordings), one row of panels per data set and model. "
        "A: test accuracy (share of test windows classified right) with sEMG alone and with the second modality "
        f"({_listed(table.second[table.second != aggregate.ALONE])}) added (left axis), and the gain, with − without in accuracy points (dashed, right axis): each run paired "
        "with the run of the same subject and seed on the same sEMG channels, the pairs' gains summarised like "
        "the accuracies (rows `gain`, where `runs` counts pairs). " + panel_b, table, bootstrap)


UNIT_TEXT = {
    SUBJECTS: "percentile bootstrap over subjects ({b} resamples of the mean of the subject values; each subject's "
              "seeds averaged first; subjects resampled; each subject's value carries its own segment noise, so segments "
              "are not resampled again)",
    SEEDS: "percentile bootstrap over the seeds of the one subject ({b} resamples)",
    SEGMENTS: "the run's own cluster bootstrap over segments (the windows of one gesture repetition resampled together)",
    "pair": "none for a gain from a single pair of runs (one subject and seed, with and without the second modality)",
    FEW_SUBJECTS: f"no pooled CI, since a bootstrap over fewer than {MIN_UNITS} subjects is no interval: each subject's "
                  "value is drawn as a small marker (its seeds averaged; where the subject has a single run, with that "
                  "run's own CI over segments as an error bar, if the table records one; rows `level` subject) and the "
                  "mean over subjects without an error bar",
    FEW_SEEDS: f"no pooled CI, since a bootstrap over fewer than {MIN_UNITS} seeds is no interval: each seed's run is "
               "drawn as a small marker with its own CI over segments as an error bar, if the table records one (rows "
               "`level` seed), and the mean over seeds without an error bar",
}
# The planted figure draws every run (rows `level` run) whatever the number of units.
PLANTED_TEXT = {FEW_SUBJECTS: f"none for the mean over runs (black, fewer than {MIN_UNITS} subjects: no pooled CI)",
                FEW_SEEDS: f"none for the mean over runs (black, fewer than {MIN_UNITS} seeds: no pooled CI)"}


def _caption(text: str, table: pd.DataFrame, bootstrap: int, units: dict | None = None) -> str:
    """`text` and the 95% CI's unit of resampling, as the pooled summary rows record it (`units`: the
    words for a unit where they differ from UNIT_TEXT's)."""
    parts = []
    pooled = aggregate.pooled(table) if aggregate.LEVEL_COLUMN in table else table
    bounds = [c for c in pooled.columns if c.endswith("ci_low") or c.endswith("ci_high")]
    for unit, rows in pooled.groupby("unit", sort=False):
        if unit == SEGMENTS and rows[bounds].isna().all().all():
            parts.append("none (single runs, and this table records no CI for a run)")
            continue
        counts = rows.n.dropna().astype(int)
        kind = {FEW_SUBJECTS: SUBJECTS, FEW_SEEDS: SEEDS}.get(unit, unit)
        count = (f"n = {counts.min()}" + (f"–{counts.max()}" if counts.max() != counts.min() else "") + f" {kind}"
                 if len(counts) else "n not recorded")
        share = f"; {len(rows)} of {len(pooled)} rows" if pooled.unit.nunique() > 1 else ""
        words = {**UNIT_TEXT, **(units or {})}[unit].format(b=bootstrap)
        parts.append(f"{words}, {count}{share}")
    means = "Values are means over runs where a row has several (column `runs`). " if (pooled.runs > 1).any() else ""
    return f"{text} {means}95% CIs: {'; '.join(parts)}."


def _listed(values: pd.Series) -> str:
    return ", ".join(dict.fromkeys(values.astype(str)))


def _summary(tables: dict, top: dict | None, runs: int) -> str:
    ids = pd.concat([t[[c for c in ("data", "dataset", "arch", "subject", "seed") if c in t]] for t in tables.values()])
    data = "; ".join(f"{label} ({dataset})" for label, dataset in ids[["data", "dataset"]].drop_duplicates().itertuples(index=False))
    text = (f"Data: {data}. Architectures: {_listed(ids.arch)}. {runs} run{'s' if runs != 1 else ''} "
            f"({ids.subject.nunique()} subject{'s' if ids.subject.nunique() != 1 else ''}, "
            f"{ids.seed.nunique()} seed{'s' if ids.seed.nunique() != 1 else ''}). ")
    if top is None:
        return text + "No result of masking cross-modal attention in the tables (compare.csv, ablation.csv)."
    return text + (f"Headline: masking every cross-modal attention edge in {top['layers']} of the {top['arch']} "
                   f"{top['modalities']} model removes {top['share']:.1%} of its accuracy{_headline_ci(top)}: the "
                   f"cross-modal share by IsoNet masking (from {top['source']}; the paper reports about 30%).")


def _headline_ci(top: dict) -> str:
    """The headline's uncertainty in words: its pooled CI, or below MIN_UNITS each unit's share with its own CI."""
    def ci(row) -> str:
        return (f"95% CI {row['ci_low']:.1%} to {row['ci_high']:.1%}"
                if row["ci_low"] is not None and row["ci_high"] is not None else "")

    unit, n = top["unit"], top["n"]
    if ci(top):
        over = f"bootstrap over {n} {unit}" if unit in (SUBJECTS, SEEDS) else "the run's own, over segments"
        return f" ({ci(top)}, {over})"
    if unit in (FEW_SUBJECTS, FEW_SEEDS):
        kind = SUBJECTS if unit == FEW_SUBJECTS else SEEDS
        each = "; ".join(f"{'seed ' + str(u['seed']) if u['level'] == aggregate.SEED else 'subject ' + str(u['subject'])} "
                         f"{u['share']:.1%}" + (f" ({ci(u)})" if ci(u) else "") for u in top["units"])
        return f" (the mean of {n} {kind}, too few for a pooled CI below {MIN_UNITS}; each: {each})"
    return " (no CI)"


# --- writing -------------------------------------------------------------------------------------------

def render(report: Report, folder: Path) -> None:
    """Write the report into `folder` (an empty temporary one)."""
    import plotly.io as pio
    import plotly.offline

    (folder / "figures").mkdir()
    (folder / "tables").mkdir()
    (folder / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    sections, entries = [], []
    for position, spec in enumerate(report.figures, 1):
        files = {"png": f"figures/{spec.id}.png", "svg": f"figures/{spec.id}.svg",
                 "csv": f"tables/{spec.id}.csv", "md": f"tables/{spec.id}.md"}
        spec.table.to_csv(folder / files["csv"], index=False)
        (folder / files["md"]).write_text(spec.table.to_markdown(index=False, floatfmt=".4g") + "\n", encoding="utf-8")
        static = FIGURES[spec.id].static(spec.table)
        _save_png(static, folder / files["png"])
        static.set_layout_engine("none")  # keep the layout the PNG computed rather than solving it again
        static.savefig(folder / files["svg"], metadata={"Date": None})
        interactive = FIGURES[spec.id].plotly(spec.table)
        div = pio.to_html(interactive, full_html=False, include_plotlyjs=False, div_id=f"figure-{spec.id}",
                          default_height=f"{interactive.layout.height or 450}px",
                          config={"displaylogo": False, "responsive": True})
        sections.append(_figure_html(position, spec, div, files))
        entries.append({"id": spec.id, "div": f"figure-{spec.id}", "title": spec.title, "caption": spec.caption,
                        "notes": list(spec.notes), "sources": list(spec.sources), "files": files,
                        "columns": list(spec.table.columns), "rows": records(spec.table)})
    document = {"format": FORMAT, "version": VERSION, "title": report.title, "summary": report.summary,
                "headline": report.headline, "runs": report.runs, "figures": entries, "left_out": report.left_out,
                "options": report.config.to_dict(), "recipe": report.meta.get("recipe"),
                "provenance": report.meta.get("provenance")}
    (folder / "report.json").write_text(json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    (folder / "index.html").write_text(_page(report, sections), encoding="utf-8")


def records(table: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts, numbers exactly as the CSV holds them (floats by repr), NaN as null."""
    return [{column: _plain(value) for column, value in zip(table.columns, row)} for row in table.itertuples(index=False)]


def _plain(value):
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _figure_html(position: int, spec: FigureSpec, div: str, files: dict) -> str:
    links = " · ".join(f'<a href="{path}">{kind.upper()}</a>' for kind, path in files.items())
    notes = "".join(f'<p class="caveat">{html.escape(note)}</p>\n' for note in spec.notes)
    return (f'<section class="figure" id="section-{spec.id}">\n<h3>{position}. {html.escape(spec.title)}</h3>\n{div}\n'
            f'<p class="caption">{html.escape(spec.caption)}</p>\n{notes}<p class="files">Static figure and numbers: '
            f'{links} (from {", ".join(spec.sources)})</p>\n</section>')


def _table_html(spec: FigureSpec) -> str:
    """The figure's table, numbers rounded for display (tables/*.csv and report.json keep every digit);
    its constant text columns said once above it rather than on every row, and so are columns with no
    value at all."""
    table = spec.table
    empty = [c for c in table.columns if len(table) > 1 and table[c].isna().all()]
    constant = [c for c in table.columns if len(table) > 1 and c not in empty and table[c].nunique(dropna=False) == 1
                and not pd.api.types.is_numeric_dtype(table[c])]
    common = "; ".join([f"{c} = {_display(table[c].iloc[0])}" for c in constant] +
                       ([f"no value in {', '.join(empty)}"] if empty else []))
    shown = table.drop(columns=constant + empty).head(HTML_ROWS)
    more = (f'<p class="more">{len(table) - HTML_ROWS} more rows in <a href="tables/{spec.id}.csv">tables/{spec.id}.csv</a>.</p>'
            if len(table) > HTML_ROWS else "")
    body = shown.map(_display).to_html(index=False, border=0, classes="numbers")
    common = f'<p class="notes">Every row: {html.escape(common)}.</p>' if common else ""
    return f'<h3 id="table-{spec.id}">{html.escape(spec.title)}</h3>\n{common}<div class="scroll">{body}</div>\n{more}'


def _display(value) -> str:
    """A table cell as the page shows it: floats rounded to 4 significant digits, missing values empty."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) or value is None or value is pd.NA:
        return number(value)
    return str(value)


STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.summary{font-size:1.05em;line-height:1.5}.caption{color:#333;line-height:1.45}.files,.more,.notes{color:#666;font-size:.9em}
.caveat{color:#8a5300;font-size:.9em}
.scroll{overflow-x:auto}table.numbers{border-collapse:collapse;font-size:.82em}
table.numbers th,table.numbers td{padding:2px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.8em}"""


def _page(report: Report, sections: list[str]) -> str:
    notes = "".join(f"<li>{html.escape(n['figure'])} left out: {html.escape(n['reason'])}</li>" for n in report.left_out)
    notes = f'<ul class="notes">{notes}</ul>' if notes else ""
    tables = "\n".join(_table_html(spec) for spec in report.figures)
    provenance = {k: report.meta[k] for k in ("recipe", "provenance") if k in report.meta}
    provenance_html = (f"<pre>{html.escape(json.dumps(provenance, indent=2, ensure_ascii=False, default=str))}</pre>"
                       if provenance else "<p>No study.json: the study's recipe and provenance are not recorded.</p>")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(report.title)}</title>
<style>{STYLE}</style>
<script src="plotly.min.js" charset="utf-8"></script>
</head>
<body>
<h1>{html.escape(report.title)}</h1>
<p class="summary">{html.escape(report.summary)}</p>
{notes}
<h2>Figures</h2>
{chr(10).join(sections)}
<h2>Tables</h2>
<p class="notes">The numbers behind each figure, rounded to 4 significant digits for display (every digit in
tables/*.csv and report.json).</p>
{tables}
<h2>Provenance</h2>
{provenance_html}
</body>
</html>
"""


def _save_png(figure, path: Path) -> None:
    """PNG at 110 dpi in a 256-colour palette: plots have few colours, and the palette makes the files
    about a third of the size (an example report is committed with the code)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(256).save(path, format="PNG", optimize=True)
