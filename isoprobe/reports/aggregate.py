"""Study tables summarised across runs, for the report. Pure pandas/numpy: no plotting here.

Uncertainty respects the design of the study (DESIGN §4): seeds of one subject are not independent
replicates of the population, so seeds are averaged within a subject first and the subjects are
resampled (percentile bootstrap of the mean of the subject values). Subjects are resampled, not
segments within them: each subject's value carries its own segment noise, so segments are not
resampled again (a second, inner resampling would count that variance twice; Davison & Hinkley 1997,
Bootstrap Methods, §3.8, two-stage sampling). With one subject its seeds are the replicates; with a
single run the run's own cluster-bootstrap CI over segments is kept.

A bootstrap over two or three values is no interval, so below MIN_UNITS replicate units (subjects; seeds
where there is one subject) the pooled row has no CI and the summary lists each unit instead. Every
summary table has one row per group with `level` = "pooled" (the mean over the units, with `unit`
saying which units and whether they were resampled, `n` how many, `runs` how many runs), and, below
MIN_UNITS, one row per unit right after it: `level` = "subject" (the subject's seeds averaged; its run's
own segment CI where the subject has a single run, else none) or "seed" (one run, its own segment CI),
named in the `subject` and `seed` columns (empty on pooled rows). Figures draw the pooled rows as the
summary and, where there are unit rows, each unit as a small marker with its own CI. The planted
checks list every run whatever the count (`level` = "run"): each run's rule has its own verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from isoprobe.data.datasets import DATASETS
from isoprobe.data.modalities import parse_modalities
from isoprobe.errors import IsoprobeError
from isoprobe.layersets import parse_layer_label

ID_COLUMNS = ("dataset", "data", "subject", "arch", "modalities", "configuration", "seed", "run")
# What identifies a model across subjects and seeds: the rows one summary row averages. `model` (the
# recipe's name for a model) is optional: it tells apart two models of one architecture.
MODEL_COLUMNS = ("dataset", "data", "arch", "model", "modalities", "configuration")
NULL_COLUMN = "null_by_construction"
LEVEL = 0.95
LAYER_PATHWAYS = ("uni", "cross", "relay", "readout")  # the paper's Figure 5, plus CLS's two routes
ALONE = "none"  # `second` of a run with sEMG groups only
MIN_UNITS = 5  # fewer replicate units than this: no pooled CI, each unit listed and drawn instead
LEVEL_COLUMN = "level"
LEVEL_COLUMNS = (LEVEL_COLUMN, "subject", "seed")
POOLED, SUBJECT, SEED, RUN = "pooled", "subject", "seed", "run"  # values of `level`
# values of `unit`: what a row's CI resamples, or why it has none
SUBJECTS, SEEDS, SEGMENTS = "subjects", "seeds", "segments"
FEW_SUBJECTS = f"subjects, each drawn; no pooled CI below {MIN_UNITS}"
FEW_SEEDS = f"seeds of one subject, each drawn; no pooled CI below {MIN_UNITS}"
AVERAGED = "seeds averaged; no CI of its own"
CAVEAT_RUNS = 6  # runs named in a caveat note before "and N more"


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
    """One pooled row per group of `by`, followed below MIN_UNITS units by one row per unit (see the
    module): each measure's value with its CI, `level`, `subject`, `seed`, `unit`, `n` (how many units;
    segments: the run's `segments` column where it has one) and `runs`. Rows null by construction
    (DESIGN §4) keep their mark and get no numbers and no unit rows: they are not measurements, so
    nothing of theirs is averaged or shown as one.

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
        null = bool(group[NULL_COLUMN].any()) if NULL_COLUMN in group else False
        rows += _group_rows(dict(zip(by, key)), group, measures, null, bootstrap, seed)
    columns = by + list(LEVEL_COLUMNS) + [c for m in measures for c in (m.value, m.low_name, m.high_name)] + \
        ["unit", "n", "runs"]
    summary = pd.DataFrame(rows, columns=columns)
    for column in ("subject", "seed", "n"):  # identifiers and counts stay as written (no 1 -> 1.0), empty as None
        summary[column] = pd.Series([row[column] for row in rows], index=summary.index, dtype=object)
    return summary


def _group_rows(head: dict, group: pd.DataFrame, measures: Sequence[Measure], null: bool, bootstrap: int,
                seed: int) -> list[dict]:
    if len(group) == 1:  # a single run: its own CI over segments
        return [head | {LEVEL_COLUMN: POOLED, "subject": None, "seed": None} | _run_row(group.iloc[0], measures, null)]
    level = SUBJECT if group.subject.nunique() >= 2 else SEED
    units = [members for _, members in group.groupby(level, sort=True)]
    few = len(units) < MIN_UNITS
    pooled = head | {LEVEL_COLUMN: POOLED, "subject": None, "seed": None}
    for measure in measures:
        names = (measure.value, measure.low_name, measure.high_name)
        if null:
            pooled.update(dict.fromkeys(names, np.nan))
            continue
        # subjects: seeds averaged within each subject first; seeds: one value per seed
        values = np.array([_mean(members[measure.value]) for members in units])
        low, high = (np.nan, np.nan) if few else subject_bootstrap(values, bootstrap, seed)
        pooled.update(zip(names, (float(values.mean()), low, high)))
    unit = {SUBJECT: (SUBJECTS, FEW_SUBJECTS), SEED: (SEEDS, FEW_SEEDS)}[level][few]
    pooled.update(unit=unit, n=len(units), runs=len(group))
    if null or not few:
        return [pooled]
    out = [pooled]
    for members in units:
        row = head | {LEVEL_COLUMN: level, "subject": _plain(members.subject.iloc[0]),
                      "seed": _plain(members.seed.iloc[0]) if len(members) == 1 else None}
        if len(members) == 1:  # the unit is one run: its value and its own CI over segments
            out.append(row | _run_row(members.iloc[0], measures, null))
            continue
        for measure in measures:  # a subject's seeds averaged: a value without a CI of its own
            row.update(zip((measure.value, measure.low_name, measure.high_name),
                           (_mean(members[measure.value]), np.nan, np.nan)))
        out.append(row | dict(unit=AVERAGED, n=len(members), runs=len(members)))
    return out


def _run_row(run: pd.Series, measures: Sequence[Measure], null: bool) -> dict:
    """One run's values with its own CI columns (NaN where the table records none), unit `segments`."""
    row = {}
    for measure in measures:
        names = (measure.value, measure.low_name, measure.high_name)
        if null:
            row.update(dict.fromkeys(names, np.nan))
            continue
        low = run[measure.ci_low] if measure.ci_low else np.nan
        high = run[measure.ci_high] if measure.ci_high else np.nan
        row.update(zip(names, (float(run[measure.value]), float(low), float(high))))
    segments = _plain(run["segments"]) if "segments" in run.index else None
    return row | dict(unit=SEGMENTS, n=None if segments is None else int(segments), runs=1)


def _mean(values: pd.Series) -> float:
    return float(np.mean(values.to_numpy(float)))


def pooled(summary: pd.DataFrame) -> pd.DataFrame:
    """The pooled rows of a summary (one per group)."""
    return summary[summary[LEVEL_COLUMN] == POOLED]


def unit_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-unit rows of a summary (subjects or seeds, where a group has fewer than MIN_UNITS)."""
    return summary[summary[LEVEL_COLUMN] != POOLED]


def with_null(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """`table` with NULL_COLUMN as booleans: read where the table has it, False where it has none (older
    compare tables) or a row leaves it empty."""
    if NULL_COLUMN not in table:
        return table.assign(**{NULL_COLUMN: False})
    column = table[NULL_COLUMN]
    column = column.astype(object).where(column.notna(), False)
    return table.assign(**{NULL_COLUMN: as_bool(column, f"{name}, column '{NULL_COLUMN}'")})


def model_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in MODEL_COLUMNS if c in table]


def layer_number(layers: pd.Series) -> pd.Series:
    """'L3' -> 3; a range or list of layers ('L1-L5', 'L2,L4') -> <NA>."""
    numbers = [parsed[0] + 1 if len(parsed) == 1 else pd.NA for parsed in map(parse_layer_label, layers.astype(str))]
    return pd.Series(numbers, index=layers.index, dtype="Int64")


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
    """compare.csv across runs; rows null by construction (an optional column: older tables lack it) get no number."""
    return summarise(with_null(compare, "compare.csv"), [Measure("estimate", "ci_low", "ci_high")],
                     [*model_columns(compare), "block", "method", "layers", "estimand", NULL_COLUMN], bootstrap=bootstrap,
                     seed=seed, name="compare.csv")


def compare_layers_summary(compare_layers: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """compare's per-layer estimates across runs; a layer where `cross` cannot change the prediction (the
    optional `null_by_construction` column, e.g. every layer of the multimodal transformer) gets no number."""
    summary = summarise(with_null(compare_layers, "compare_layers.csv"), [Measure("estimate", "ci_low", "ci_high")],
                        [*model_columns(compare_layers), "block", "method", "layer", NULL_COLUMN], bootstrap=bootstrap,
                        seed=seed, name="compare_layers.csv")
    summary.insert(summary.columns.get_loc("layer") + 1, "layer_number", layer_number(summary.layer))
    return summary


def knockout_summary(knockout: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """knockout.csv across runs: per window centre (`layer`, `layer_number`) and pathway, the mean relative
    change of the true class's probability over the correctly classified windows (`estimate`, with its CI);
    `window` names the layers each window knocked out."""
    table = knockout.assign(**{NULL_COLUMN: as_bool(knockout[NULL_COLUMN], f"knockout.csv, column '{NULL_COLUMN}'")})
    table = table.rename(columns={"prob_change": "estimate", "prob_change_ci_low": "ci_low",
                                  "prob_change_ci_high": "ci_high", "layers": "window"})
    table["layer"] = "L" + pd.to_numeric(table.window_centre).astype(int).astype(str)
    summary = summarise(table, [Measure("estimate", "ci_low", "ci_high")],
                        [*model_columns(table), "intervention", "heads", "pathway", "layer", "window", NULL_COLUMN],
                        bootstrap=bootstrap, seed=seed, name="knockout.csv")
    summary.insert(summary.columns.get_loc("layer") + 1, "layer_number", layer_number(summary.layer))
    return summary


def emap_summary(emap: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """emap.csv across runs, over every class: the model's accuracy, its additive projection's (EMAP) and
    the gap between them."""
    table = emap[emap["class"].astype(str) == "all"]
    return summarise(table, [Measure("estimate", "ci_low", "ci_high")], [*model_columns(table), "quantity"],
                     bootstrap=bootstrap, seed=seed, name="emap.csv")


def pid_summary(pid: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """pid.csv across runs: per K (`k_label`) and part, the bits (`estimate`, with the run's segment CI), the
    permutation floor's 95th percentile and the planted bits. The labels' PID depends on the data, the
    subject and the modality groups, not on the model: one row per subject stands for every model trained
    on them (`arch` "labels"); a model's predictions keep their model."""
    labels = pid.target == "labels"
    data = pid[labels].drop_duplicates(["dataset", "data", "subject", "modalities", "k", "part"]).assign(
        arch="labels", configuration="data", **({"model": "labels"} if "model" in pid else {}))
    table = pd.concat([data, pid[~labels]], ignore_index=True).rename(columns={"bits": "estimate"})
    table["k_label"] = "K=" + table.k.astype(int).astype(str)
    table["part"] = table.part.str.replace("_", " ")
    return summarise(table, [Measure("estimate", "ci_low", "ci_high"), Measure("floor95"), Measure("expected_bits")],
                     [*model_columns(table), "target", "k", "k_label", "part"], bootstrap=bootstrap, seed=seed,
                     name="pid.csv")


def sanity_summary(sanity: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """sanity.csv (compare --sanity) across runs: per method and cascade step, Spearman's ρ of its output
    with the trained model's (`estimate`, with the run's segment CI); `flagged_runs` of `runs` flagged
    (above the threshold once every weight is re-drawn). The random-target rows, off the cascade, stay in
    sanity.csv."""
    table = sanity.assign(step_index=pd.to_numeric(sanity.step_index, errors="coerce")).rename(
        columns={"spearman": "estimate"})
    table = table[table.step_index.notna()]
    summary = summarise(table, [Measure("estimate", "ci_low", "ci_high")],
                        [*model_columns(table), "method", "step_index", "step"], bootstrap=bootstrap, seed=seed,
                        name="sanity.csv")
    flags = table[table.flagged.notna()].assign(flagged=lambda t: as_bool(t.flagged, "sanity.csv, column 'flagged'"))
    flagged = flags.groupby([*model_columns(table), "method"], dropna=False).flagged.sum().rename("flagged_runs")
    return summary.merge(flagged.reset_index(), on=[*model_columns(table), "method"], how="left")


def final_site(shift: pd.DataFrame) -> pd.DataFrame:
    """Each condition's last site (the representation the head reads), with the accuracy drop of
    that condition, base − intervened, as ablation.csv defines `drop`."""
    condition = ["run", "layers", "pathway", "heads", "intervention"]
    last = shift.groupby(condition, sort=False, dropna=False).tail(1)
    return last.assign(drop=last.base_accuracy - last.accuracy)


def shift_summary(shift: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    return summarise(final_site(shift), [Measure("drop"), Measure("mmd2"), Measure("mmd2_null95")],
                     [*model_columns(shift), "layers", "pathway", "heads", "intervention", "site"],
                     bootstrap=bootstrap, seed=seed, name="shift.csv")


PLANTED_RULE = ("tested", "low", "high")  # the number a rule tests and the region it must lie in


def planted_summary(planted: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """Each check across runs: a pooled row, then one row per run (`level` run).

    Pooled: the mean finding with the pooled CI every figure uses (none below MIN_UNITS units),
    `passed_runs` (how many runs passed) and `passed` (all did); `low`/`high` the region when every run
    shares it, else empty (a threshold such as chance differs between runs: each run row has its own);
    `planted` each distinct wording of the runs, joined by ' | '. A run row: its finding with its own CI
    over segments, the number its rule tests (`tested`), its region and its own verdict."""
    by = [*model_columns(planted), "check", "quantity", "method", "tested"]
    table = planted.assign(passed=as_bool(planted.passed, "planted.csv, column 'passed'"))
    summary = pooled(summarise(table, [Measure("found", "ci_low", "ci_high")], by, bootstrap=bootstrap, seed=seed,
                               name="planted.csv"))
    rows = []
    for (key, group), total in zip(table.groupby(by, sort=False, dropna=False), summary.to_dict("records")):
        regions = group[["low", "high"]].drop_duplicates()
        same = len(regions) == 1
        rows.append(total | dict(run=None, planted=" | ".join(dict.fromkeys(group.planted.astype(str))),
                                 low=float(regions.low.iloc[0]) if same else np.nan,
                                 high=float(regions.high.iloc[0]) if same else np.nan,
                                 passed=bool(group.passed.all()), passed_runs=int(group.passed.sum())))
        for run in group.to_dict("records"):
            rows.append(dict(zip(by, key)) | {
                LEVEL_COLUMN: RUN, "subject": _plain(run["subject"]), "seed": _plain(run["seed"]), "run": run["run"],
                "planted": run["planted"], "found": float(run["found"]), "ci_low": float(run["ci_low"]),
                "ci_high": float(run["ci_high"]), "low": float(run["low"]), "high": float(run["high"]),
                "passed": bool(run["passed"]), "passed_runs": int(run["passed"]), "unit": SEGMENTS, "n": None, "runs": 1})
    columns = [*by, *LEVEL_COLUMNS, "run", "planted", "found", "ci_low", "ci_high", "low", "high", "passed",
               "passed_runs", "unit", "n", "runs"]
    out = pd.DataFrame(rows, columns=columns)
    for column in ("subject", "seed", "n"):
        out[column] = pd.Series([row.get(column) for row in rows], index=out.index, dtype=object)
    return out


def caveat_notes(table: pd.DataFrame, name: str) -> list[str]:
    """One line per distinct few-segment caveat in `table` (its optional `caveat` column, empty where the
    run's segments allow a 5% test and a covering CI; older tables lack it), naming the runs concerned."""
    if "caveat" not in table:
        return []
    text = table.caveat.astype(object).where(table.caveat.notna(), "").astype(str).str.strip()
    notes = []
    for caveat, runs in table[text != ""].groupby(text[text != ""], sort=False).run:
        names = list(dict.fromkeys(runs.astype(str)))
        listed = ", ".join(names[:CAVEAT_RUNS]) + (f" and {len(names) - CAVEAT_RUNS} more" if len(names) > CAVEAT_RUNS
                                                   else "")
        notes.append(f"Few segments ({name}, {len(names)} run{'s' if len(names) != 1 else ''}: {listed}): {caveat}.")
    return notes


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
    for the hierarchical multimodal model where there is one. A pooled summary row as a dict, with
    `units`: its unit rows (each subject's or seed's share and own CI; empty from MIN_UNITS units on)
    — or None."""
    candidates = []
    if compare is not None:
        summary = compare.rename(columns={"estimate": "share"})
        candidates.append(("compare.csv", summary, summary[(summary.method == "mask (IsoNet)") & ~summary[NULL_COLUMN]]))
    if ablation is not None:
        rows = ablation[(ablation.pathway == "cross") & (ablation.intervention == "mask") & (ablation.heads == "all")
                        & ablation.layer.isna() & ~ablation[NULL_COLUMN]]
        names = {"relative_drop": "share", "relative_drop_ci_low": "ci_low", "relative_drop_ci_high": "ci_high"}
        candidates.append(("ablation.csv", ablation.rename(columns=names), rows.rename(columns=names)))
    for source, summary, rows in candidates:
        rows = pooled(rows).dropna(subset=["share"])
        if rows.empty:
            continue
        preference = (rows.arch == "hierarchical").astype(int) * 2 + (rows.configuration == "multimodal").astype(int)
        at = preference.sort_values(ascending=False, kind="stable").index[0]
        best = rows.loc[at]
        keep = [*model_columns(rows), "layers", "share", "ci_low", "ci_high", "unit", "n", "runs"]
        units = [{k: _plain(unit[k]) for k in (LEVEL_COLUMN, "subject", "seed", "share", "ci_low", "ci_high")}
                 for _, unit in units_after(summary, at).iterrows()]
        return {"source": source, **{k: _plain(best[k]) for k in keep}, "units": units}
    return None


def units_after(summary: pd.DataFrame, label) -> pd.DataFrame:
    """The unit rows of the pooled row at index `label`: those that follow it up to the next pooled row."""
    position = summary.index.get_loc(label)
    following = summary.iloc[position + 1:]
    pooled_next = np.flatnonzero(following[LEVEL_COLUMN].to_numpy() == POOLED)
    return following.iloc[:pooled_next[0] if len(pooled_next) else len(following)]


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
    if dataset not in DATASETS:
        raise IsoprobeError(f"{where}: data set {dataset!r} has no known sEMG modality; the channel figure reads "
                            f"{', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    try:
        groups = parse_modalities(modalities, spec.channels)
    except IsoprobeError as exc:
        raise IsoprobeError(f"{where}: modalities {modalities!r} of data set {dataset}: {exc}") from None
    semg = [g for g in groups if g.source == spec.semg]
    if not semg or len({g.channels for g in semg}) > 1:
        return None
    second = ",".join(g.name for g in groups if g.source != spec.semg) or ALONE
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


def all_layers(ablation: pd.DataFrame) -> pd.Series:
    """Whether each row's `layers` spans every shared layer of its run: layers 1 to the deepest any row of
    the run names ('L1-L5' where the run has L1 … L5)."""
    sets = ablation.layers.map(lambda label: frozenset(layer + 1 for layer in parse_layer_label(label)))
    deepest = sets.map(lambda s: max(s, default=0)).groupby(ablation.run).transform("max")
    return pd.Series([bool(s) and s == frozenset(range(1, d + 1)) for s, d in zip(sets, deepest)], index=ablation.index,
                     dtype=bool)


CHANNEL_COLUMNS = ("measure", "second", "modalities", "semg_channels", "layers", NULL_COLUMN, *LEVEL_COLUMNS, "value",
                   "ci_low", "ci_high", "unit", "n", "runs")


def channel_summary(runs: pd.DataFrame, ablation: pd.DataFrame | None, bootstrap: int, seed: int) -> pd.DataFrame:
    """The channel-count figure's numbers, one row per point: for every sweep (data set, data, model)
    whose runs cover two or more sEMG channel counts with the same second modality (or none),

    - `accuracy`: test accuracy of each configuration, summarised like the accuracy figure;
    - `gain`: accuracy with the second modality − without, paired by subject and seed on the same sEMG
      groups, then summarised (seeds averaged within a subject, subjects resampled; with one subject,
      seeds; a single pair has unit `pair` and no CI); `runs` counts pairs;
    - `relative_drop`: the relative accuracy drop of masking `cross` in all shared layers at once
      (ablation.csv, heads all) in the two-modality runs; rows null by construction keep the mark, no number.

    Below MIN_UNITS units each point's unit rows follow it, as in every summary (see the module).
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
        single = gain.unit == SEGMENTS  # one pair: nothing to resample (the runs' own CIs are not paired)
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
