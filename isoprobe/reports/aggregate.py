"""Study tables summarised across runs, for the report. Pure pandas/numpy: no plotting here.

Uncertainty respects the design of the study (DESIGN §4): seeds of one subject are not independent
replicates of the population, so seeds are averaged within a subject first and the subjects are
resampled. With one subject the seeds are the only replicates; with a single run the run's own
cluster-bootstrap CI over segments is kept. Every summary row says which (`unit`) and how many (`n`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from isoprobe.errors import IsoprobeError

ID_COLUMNS = ("dataset", "data", "subject", "arch", "modalities", "configuration", "seed", "run")
# What identifies a model across subjects and seeds: the rows one summary row averages. `model` (the
# recipe's name for a model) is optional: it tells apart two models of one architecture.
MODEL_COLUMNS = ("dataset", "data", "arch", "model", "modalities", "configuration")
NULL_COLUMN = "null_by_construction"
LEVEL = 0.95
SINGLE_LAYER = re.compile(r"^L(\d+)$")
LAYER_PATHWAYS = ("uni", "cross", "relay", "readout")  # the paper's Figure 5, plus CLS's two routes
# Each data set's sEMG source modality; its other source (acc, force) is "the second modality".
SEMG_SOURCES = {"ninapro-db2": "emg", "hdsemg65": "hdsemg"}
ALONE = "none"  # `second` of a run with sEMG groups only


@dataclass(frozen=True)
class Measure:
    """A column to summarise and, where the run reports one, its per-run CI columns (over segments)."""

    value: str
    ci_low: str | None = None
    ci_high: str | None = None

    @property
    def low_name(self) -> str:
        return self.ci_low or f"{self.value}_ci_low"

    @property
    def high_name(self) -> str:
        return self.ci_high or f"{self.value}_ci_high"


def subject_bootstrap(values: np.ndarray, bootstrap: int, seed: int, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of the mean of `values` (one per unit) resampled with replacement:
    [unit] -> (low, high). The generator is seeded afresh for every call, so an interval does not
    depend on which other groups were summarised before it."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(bootstrap, len(values)))
    means = values[draws].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def summarise(table: pd.DataFrame, measures: Sequence[Measure], by: Sequence[str], *, bootstrap: int = 2000,
              seed: int = 0, name: str = "table") -> pd.DataFrame:
    """One row per group of `by`: each measure's mean with a CI, plus `unit` (subjects, seeds or
    segments), `n` (how many units; segments: the run's `segments` column where it has one) and
    `runs`. Rows null by construction (DESIGN §4) keep their mark and get no numbers: they are not
    measurements, so nothing of theirs is averaged or shown as one.

    `name` is the table's file name, for the error a (subject, seed) repeated within a group raises."""
    by = list(by)
    rows = []
    for key, group in table.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        repeated = group.duplicated(["subject", "seed"], keep=False)
        if repeated.any():
            first = group[repeated].iloc[0]
            raise IsoprobeError(f"{name}: subject {first.subject}, seed {first.seed} appears in more than one row of "
                                f"{dict(zip(by, key))} (runs {sorted(set(group[repeated].run))}); the rows to summarise "
                                "must differ in subject or seed")
        subjects = group.subject.nunique()
        if len(group) == 1:
            unit = "segments"
            n = int(group.segments.iloc[0]) if "segments" in group and pd.notna(group.segments.iloc[0]) else pd.NA
        elif subjects >= 2:
            unit, n = "subjects", subjects
        else:
            unit, n = "seeds", group.seed.nunique()
        row = dict(zip(by, key))
        null = bool(group[NULL_COLUMN].any()) if NULL_COLUMN in group else False
        for measure in measures:
            row.update(_summary(group, measure, unit, bootstrap, seed, null))
        row.update(unit=unit, n=n, runs=len(group))
        rows.append(row)
    columns = by + [c for m in measures for c in (m.value, m.low_name, m.high_name)] + ["unit", "n", "runs"]
    return pd.DataFrame(rows, columns=columns)


def _summary(group: pd.DataFrame, measure: Measure, unit: str, bootstrap: int, seed: int, null: bool) -> dict:
    names = (measure.value, measure.low_name, measure.high_name)
    if null:
        return dict.fromkeys(names, np.nan)
    if unit == "segments":
        row = group.iloc[0]
        low = row[measure.ci_low] if measure.ci_low else np.nan
        high = row[measure.ci_high] if measure.ci_high else np.nan
        return dict(zip(names, (float(row[measure.value]), float(low), float(high))))
    # subjects: seeds averaged within each subject first; seeds: one value per seed
    level = "subject" if unit == "subjects" else "seed"
    values = group.groupby(level, sort=True)[measure.value].agg(lambda v: np.mean(v.to_numpy(float))).to_numpy(float)
    low, high = subject_bootstrap(values, bootstrap, seed)
    return dict(zip(names, (float(values.mean()), low, high)))


def model_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in MODEL_COLUMNS if c in table]


def layer_number(layers: pd.Series) -> pd.Series:
    """'L3' -> 3; a range or list of layers ('L1-L5', 'L2,L4') -> <NA>."""
    return layers.astype(str).str.extract(SINGLE_LAYER, expand=False).astype("Int64")


# The summaries each figure plots. Each takes one study table and returns what the figure shows.

def accuracy_summary(runs: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    return summarise(runs, [Measure("accuracy", "accuracy_ci_low", "accuracy_ci_high"), Measure("balanced_accuracy")],
                     model_columns(runs), bootstrap=bootstrap, seed=seed, name="runs.csv")


def ablation_summary(ablation: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """Every condition of ablation.csv across runs; `layer` is set for single-layer conditions."""
    by = [*model_columns(ablation), "intervention", "heads", "layers", "pathway", NULL_COLUMN]
    table = ablation.assign(**{NULL_COLUMN: as_bool(ablation[NULL_COLUMN], f"ablation.csv, column '{NULL_COLUMN}'")})
    summary = summarise(table, [Measure("drop", "drop_ci_low", "drop_ci_high"), Measure("relative_drop"),
                                Measure("chance_corrected_drop", "chance_corrected_ci_low", "chance_corrected_ci_high")],
                        by, bootstrap=bootstrap, seed=seed, name="ablation.csv")
    summary.insert(summary.columns.get_loc("layers") + 1, "layer", layer_number(summary.layers))
    return summary


def compare_summary(compare: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    return summarise(compare, [Measure("estimate", "ci_low", "ci_high")], [*model_columns(compare), "method", "layers", "definition"],
                     bootstrap=bootstrap, seed=seed, name="compare.csv")


def compare_layers_summary(compare_layers: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    summary = summarise(compare_layers, [Measure("estimate", "ci_low", "ci_high")], [*model_columns(compare_layers), "method", "layer"],
                        bootstrap=bootstrap, seed=seed, name="compare_layers.csv")
    summary.insert(summary.columns.get_loc("layer") + 1, "layer_number", layer_number(summary.layer))
    return summary


def final_site(shift: pd.DataFrame) -> pd.DataFrame:
    """Each condition's last site (the representation the head reads), with the accuracy drop of
    that condition, base − intervened, as ablation.csv defines `drop`."""
    condition = ["run", "layers", "pathway", "heads", "intervention"]
    last = shift.groupby(condition, sort=False, dropna=False).tail(1)
    return last.assign(drop=last.base_accuracy - last.accuracy)


def shift_summary(shift: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    return summarise(final_site(shift), [Measure("drop"), Measure("mmd2"), Measure("null_mmd2")],
                     [*model_columns(shift), "layers", "pathway", "heads", "intervention", "site"],
                     bootstrap=bootstrap, seed=seed, name="shift.csv")


def planted_summary(planted: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """Each check's finding across runs, with how many runs passed it (`passed`: all of them)."""
    by = [*model_columns(planted), "check", "quantity", "method", "planted"]
    table = planted.assign(passed=as_bool(planted.passed, "planted.csv, column 'passed'"))
    summary = summarise(table, [Measure("found", "ci_low", "ci_high")], by, bootstrap=bootstrap, seed=seed,
                        name="planted.csv")
    passes = table.groupby(by, sort=False, dropna=False).passed.agg(passed_runs="sum", passed="all").reset_index()
    summary = summary.merge(passes, on=by, how="left", sort=False)
    summary["passed_runs"] = summary.passed_runs.astype(int)
    return summary


def first_runs(table: pd.DataFrame, runs: int) -> pd.DataFrame:
    """The rows of the first `runs` runs, in the order the table lists them."""
    return table[table.run.isin(table.run.drop_duplicates().head(runs))]


def confusion_shares(confusion: pd.DataFrame, runs: int) -> pd.DataFrame:
    """Long-form confusion counts of the first `runs` runs with `share`: count over its true-class
    row total (row-normalised; a class with no windows gets 0)."""
    table = first_runs(confusion, runs).copy()
    table["true"], table["predicted"] = table["true"].astype(str), table["predicted"].astype(str)
    totals = table.groupby(["run", "true"], sort=False)["count"].transform("sum")
    table["share"] = np.where(totals > 0, table["count"] / totals.where(totals > 0, 1), 0.0)
    return table.reset_index(drop=True)


def curves_shown(curves: pd.DataFrame, runs: int) -> pd.DataFrame:
    columns = [c for c in ("run", "arch", "modalities", "subject", "seed", "epoch", "lambda", "train_accuracy",
                           "val_accuracy", "loss", "val_loss") if c in curves]
    return first_runs(curves, runs)[columns].reset_index(drop=True)


def headline(compare: pd.DataFrame | None, ablation: pd.DataFrame | None) -> dict | None:
    """The cross-modal share the summary paragraph states: IsoNet masking of `cross` in all the
    layers (compare's 'mask (IsoNet)', else ablation's widest cross/mask condition's relative drop),
    for the hierarchical multimodal model where there is one. A summary row as a dict, or None."""
    candidates = []
    if compare is not None:
        rows = compare[compare.method == "mask (IsoNet)"]
        candidates.append(("compare.csv", rows.rename(columns={"estimate": "share"})))
    if ablation is not None:
        rows = ablation[(ablation.pathway == "cross") & (ablation.intervention == "mask") & (ablation.heads == "all")
                        & ablation.layer.isna() & ~ablation[NULL_COLUMN]]
        rows = rows.rename(columns={"relative_drop": "share", "relative_drop_ci_low": "ci_low",
                                    "relative_drop_ci_high": "ci_high"})
        candidates.append(("ablation.csv", rows))
    for source, rows in candidates:
        rows = rows.dropna(subset=["share"])
        if rows.empty:
            continue
        preference = (rows.arch == "hierarchical").astype(int) * 2 + (rows.configuration == "multimodal").astype(int)
        best = rows.loc[preference.sort_values(ascending=False, kind="stable").index[0]]
        keep = [*model_columns(rows), "layers", "share", "ci_low", "ci_high", "unit", "n", "runs"]
        return {"source": source, **{k: _plain(best[k]) for k in keep}}
    return None


# --- the channel sweep (analyses/channel-sweep.toml) ------------------------------------------------

@dataclass(frozen=True)
class ChannelSplit:
    """A modality configuration as the channel sweep reads it: its sEMG groups, how many sEMG channels
    they hold, and the other groups (the second modality), `ALONE` where there are none."""

    semg: str
    channels: int
    second: str


def channel_split(dataset: str, modalities: str, where: str = "table") -> ChannelSplit | None:
    """How many sEMG channels `modalities` feeds the model (`emg[0:4],acc` -> 4, `hdsemg[::16],force` -> 8),
    counted against the data set's recordings. None for a configuration with no sEMG, or with groups of
    two different sEMG subsets (an equal-channel configuration: not a point of the sweep). `where` names
    the table for the error an unknown data set or an unreadable configuration raises."""
    from isoprobe.data.modalities import parse_modalities
    from isoprobe.models.modelspec import RECORDINGS  # imports torch: only here, not with the report module

    if dataset not in SEMG_SOURCES or dataset not in RECORDINGS:
        raise IsoprobeError(f"{where}: data set {dataset!r} has no known sEMG modality; the channel figure reads "
                            f"{', '.join(SEMG_SOURCES)}")
    try:
        groups = parse_modalities(modalities, RECORDINGS[dataset].channels)
    except IsoprobeError as exc:
        raise IsoprobeError(f"{where}: modalities {modalities!r} of data set {dataset}: {exc}") from None
    semg = [g for g in groups if g.source == SEMG_SOURCES[dataset]]
    if not semg or len({g.channels for g in semg}) > 1:
        return None
    second = ",".join(g.name for g in groups if g.source != SEMG_SOURCES[dataset]) or ALONE
    return ChannelSplit(",".join(g.name for g in semg), len(semg[0].channels), second)


def with_channels(table: pd.DataFrame, where: str) -> pd.DataFrame:
    """`table`'s rows that are points of a channel sweep, with `semg`, `semg_channels` and `second`."""
    splits = {key: channel_split(*key, where=where)
              for key in table[["dataset", "modalities"]].drop_duplicates().itertuples(index=False, name=None)}
    keys = list(zip(table.dataset, table.modalities))
    kept = table[np.array([splits[key] is not None for key in keys], dtype=bool)]
    found = [splits[key] for key in zip(kept.dataset, kept.modalities)]
    return kept.assign(semg=[s.semg for s in found], semg_channels=[s.channels for s in found],
                       second=[s.second for s in found])


def _layer_set(label: str) -> frozenset[int]:
    """'L3' -> {3}, 'L1-L5' -> {1..5}, 'L2,L4' -> {2, 4}; anything else -> empty."""
    layers = set()
    for part in str(label).split(","):
        match = re.fullmatch(r"L(\d+)(?:-L(\d+))?", part.strip())
        if match is None:
            return frozenset()
        first = int(match.group(1))
        layers.update(range(first, int(match.group(2) or first) + 1))
    return frozenset(layers)


def all_layers(ablation: pd.DataFrame) -> pd.Series:
    """Whether each row's `layers` spans every shared layer of its run: layers 1 to the deepest any row of
    the run names ('L1-L5' where the run has L1 … L5)."""
    sets = ablation.layers.map(_layer_set)
    deepest = sets.map(lambda s: max(s, default=0)).groupby(ablation.run).transform("max")
    return pd.Series([bool(s) and s == frozenset(range(1, d + 1)) for s, d in zip(sets, deepest)], index=ablation.index,
                     dtype=bool)


CHANNEL_COLUMNS = ("measure", "second", "modalities", "semg_channels", "layers", NULL_COLUMN, "value", "ci_low",
                   "ci_high", "unit", "n", "runs")


def channel_summary(runs: pd.DataFrame, ablation: pd.DataFrame | None, bootstrap: int, seed: int) -> pd.DataFrame:
    """The channel-count figure's numbers, one row per point: for every sweep (data set, data, model)
    whose runs cover two or more sEMG channel counts with the same second modality (or none),

    - `accuracy`: test accuracy of each configuration, summarised like the accuracy figure;
    - `gain`: accuracy with the second modality − without, paired by subject and seed on the same sEMG
      groups, then summarised (seeds averaged within a subject, subjects resampled; with one subject,
      seeds; a single pair has unit `pair` and no CI); `runs` counts pairs;
    - `relative_drop`: the relative accuracy drop of masking `cross` in all shared layers at once
      (ablation.csv, heads all) in the two-modality runs; rows null by construction keep the mark, no number.

    An empty table where no sweep has two channel counts."""
    sweep = [c for c in ("dataset", "data", "arch", "model") if c in runs]
    points = with_channels(runs, "runs.csv")
    counts = points.groupby([*sweep, "second"], dropna=False).semg_channels.transform("nunique")
    swept = points[counts >= 2][sweep].drop_duplicates()
    points = points.merge(swept, on=sweep, sort=False)
    if points.empty:
        return pd.DataFrame(columns=[*sweep, *CHANNEL_COLUMNS])
    by = [*sweep, "second", "modalities", "semg_channels"]
    options = dict(bootstrap=bootstrap, seed=seed)
    parts = [_as_value(points, Measure("accuracy", "accuracy_ci_low", "accuracy_ci_high"), by, "runs.csv", **options)
             .assign(measure="accuracy")]
    alone = points[points.second == ALONE]
    paired = points[points.second != ALONE].merge(alone, on=[*sweep, "semg", "subject", "seed"], suffixes=("", "_alone"))
    if not paired.empty:
        paired = paired.assign(gain=paired.accuracy - paired.accuracy_alone,
                               modalities=paired.modalities + " − " + paired.modalities_alone)
        gain = _as_value(paired.drop(columns="segments"), Measure("gain"), by, "runs.csv", **options)
        single = gain.unit == "segments"  # one pair: nothing to resample (the runs' own CIs are not paired)
        gain.loc[single, "unit"], gain.loc[single, "n"] = "pair", 1
        parts.append(gain.assign(measure="gain"))
    if ablation is not None:
        cross = ablation[(ablation.pathway == "cross") & (ablation.intervention == "mask") & (ablation.heads == "all")
                         & all_layers(ablation)]
        cross = with_channels(cross, "ablation.csv").merge(swept, on=sweep, sort=False)
        cross = cross[cross.second != ALONE]
        if not cross.empty:
            cross = cross.assign(**{NULL_COLUMN: as_bool(cross[NULL_COLUMN], f"ablation.csv, column '{NULL_COLUMN}'")})
            parts.append(_as_value(cross, Measure("relative_drop"), [*by, "layers", NULL_COLUMN], "ablation.csv",
                                   **options).assign(measure="relative_drop"))
    table = pd.concat(parts, ignore_index=True).reindex(columns=[*sweep, *CHANNEL_COLUMNS])
    table[NULL_COLUMN] = table[NULL_COLUMN].eq(True)  # accuracy and gain rows are measurements
    order = {"accuracy": 0, "gain": 1, "relative_drop": 2}
    table = table.sort_values([*sweep, "measure", "second", "semg_channels", "modalities"], kind="stable",
                              key=lambda column: column.map(order) if column.name == "measure" else column)
    return table.reset_index(drop=True)


def _as_value(table: pd.DataFrame, measure: Measure, by: list[str], name: str, **options) -> pd.DataFrame:
    """`summarise` of one measure, its columns named value, ci_low and ci_high."""
    summary = summarise(table, [measure], by, name=name, **options)
    return summary.rename(columns={measure.value: "value", measure.low_name: "ci_low", measure.high_name: "ci_high"})


def _plain(value):
    """A pandas/numpy scalar as the JSON-ready Python value (NaN/NA -> None)."""
    if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def as_bool(column: pd.Series, where: str) -> pd.Series:
    """A column of true/false as CSV writers spell it (True, false, 1, 0) as booleans; `where` names it."""
    if column.dtype == bool:
        return column
    text = column.astype(str).str.strip().str.lower()
    unknown = ~text.isin(["true", "false", "1", "0"])
    if unknown.any():
        raise IsoprobeError(f"{where}: expected true or false, got {column[unknown].iloc[0]!r}")
    return text.isin(["true", "1"])
