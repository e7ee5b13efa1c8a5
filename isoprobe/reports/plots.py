"""The report's figures, each drawn twice from the same summary table: interactive (plotly) and static
(matplotlib's object API with seaborn). They only draw: every number comes from the table
(STYLE habit 8). Static figures are `matplotlib.figure.Figure` objects on their own Agg canvas, so
no pyplot state is touched and the caller's backend stays as it was.

Two conventions hold in every figure. A summary table's pooled rows are the summary; where a group
has fewer than MIN_UNITS units its unit rows follow (aggregate's module), and each unit is drawn as a
small marker with its own CI as an error bar where it has one, the pooled mean without an error bar.
Rows null by construction are hollow ∅ markers at 0: never a bar, a line or a number."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from isoprobe.attribution.estimands import BLOCKS, DATA, RELATED
from isoprobe.reports.aggregate import (ALONE, FEW_SEEDS, FEW_SUBJECTS, LAYER_PATHWAYS, LEVEL_COLUMN, MIN_UNITS,
                                        MODEL_COLUMNS, NULL_COLUMN, POOLED, RUN, SEED, SEGMENTS, SUBJECT)

NULL_MARK = "∅"
PATHWAY_COLOURS = {"uni": "#1f77b4", "cross": "#d62728", "relay": "#2ca02c", "readout": "#9467bd"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
PASSED, FAILED = "#2ca02c", "#d62728"
UNIT_COLOUR = "#333333"  # unit markers drawn over bars
UNIT_SIZE = 5  # plotly marker size of one unit (the pooled markers are about twice that)
WRAP = 3  # panels per row
BAR = 0.2  # bar width of the per-layer figure (four pathways per layer)
DODGE = 0.08  # the per-layer method figure: methods side by side around each layer
TESTED = {"estimate": "the estimate", "ci_low": "CI low", "ci_high": "CI high", "ci": "the whole CI"}


# --- shared helpers -----------------------------------------------------------------------------

def panels(table: pd.DataFrame, keys) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per group of `keys`; a title names only the keys that vary across the table (with
    one panel: the model and intervention, which is what a reader wants to see named)."""
    keys = [k for k in keys if k in table]
    varying = [k for k in keys if table[k].nunique(dropna=False) > 1] or \
        [k for k in ("arch", "modalities", "intervention") if k in keys] or keys[:1]
    # a key that repeats another (a recipe naming each model after its architecture) is said once
    varying = [k for i, k in enumerate(varying) if not any(table[k].astype(str).equals(table[j].astype(str)) for j in varying[:i])]
    out = []
    for _, rows in table.groupby(keys, sort=False, dropna=False):
        first = rows.iloc[0]
        out.append((" · ".join(str(first[k]) for k in varying), rows))
    return out


def model_label(row) -> str:
    return f"{row['arch']} {row['modalities']} ({row['configuration']})"


def run_label(rows: pd.DataFrame) -> str:
    """A run named by what tells it apart (its folder when the table lacks the identification columns)."""
    first = rows.iloc[0]
    if all(c in rows for c in ("arch", "modalities", "subject", "seed")):
        return f"{first['arch']} {first['modalities']} · subject {first['subject']} · seed {first['seed']}"
    return str(first["run"])


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def levels(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pooled rows, unit rows) of a summary table; a table without `level` is all pooled."""
    if LEVEL_COLUMN not in rows:
        return rows, rows.iloc[:0]
    pooled = (rows[LEVEL_COLUMN] == POOLED).to_numpy(bool)
    return rows[pooled], rows[~pooled]


def is_null(rows: pd.DataFrame) -> np.ndarray:
    """Which rows are null by construction [row] bool (none where the table has no such column)."""
    if NULL_COLUMN not in rows:
        return np.zeros(len(rows), dtype=bool)
    return rows[NULL_COLUMN].fillna(False).to_numpy(bool)


def number(value, spec: str = ".4g") -> str:
    """A number as the page shows it: rounded for display only (empty for a missing one; 0 for ±0)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    return format(0.0 if value == 0 else value, spec)


def unit_label(row) -> str:
    """A unit row named: 'subject 2', 'subject 2 (seed 0)', 'seed 1'."""
    seed = row["seed"]
    if row[LEVEL_COLUMN] == SEED:
        return f"seed {seed}"
    return f"subject {row['subject']}" + ("" if seed is None or pd.isna(seed) else f" (seed {seed})")


def units_name(units: pd.DataFrame) -> str:
    """The legend entry of unit markers."""
    names = {SUBJECT: "each subject", SEED: "each seed", RUN: "each run"}
    return " / ".join(dict.fromkeys(names[level] for level in units[LEVEL_COLUMN])) + " (its own CI where it has one)"


def pooled_note(row) -> str:
    """What a pooled row's CI is, in the words of a hover label."""
    unit, n = row["unit"], row["n"]
    if unit in (FEW_SUBJECTS, FEW_SEEDS):
        kind = "subjects" if unit == FEW_SUBJECTS else "seeds"
        return f"mean of {n} {kind}: no pooled CI below {MIN_UNITS}"
    if unit == SEGMENTS:
        return "one run: its CI, where it has one, over segments"
    if unit == "pair":
        return "one pair of runs: no CI"
    return f"95% CI: bootstrap over {n} {unit}"


def _unit_hover(units: pd.DataFrame, value: str, low: str, high: str) -> list[str]:
    out = []
    for _, row in units.iterrows():
        ci = (f" [{number(row[low])}, {number(row[high])}]" if pd.notna(row[low]) and pd.notna(row[high])
              else " (no CI of its own)")
        out.append(f"{unit_label(row)}: {number(row[value])}{ci}")
    return out


def _errors(rows: pd.DataFrame, value: str, low: str, high: str) -> tuple[np.ndarray, np.ndarray]:
    """(above, below) error-bar lengths; NaN where there is no CI, which neither renderer draws."""
    values = rows[value].to_numpy(float)
    return rows[high].to_numpy(float) - values, values - rows[low].to_numpy(float)


def _spread(base, width: float) -> np.ndarray:
    """Positions of unit markers: the units sharing one base position (their pooled element's) spread
    evenly over `width` around it, so that their error bars do not hide each other."""
    base = np.asarray(base, dtype=float)
    out = base.copy()
    for value in np.unique(base[np.isfinite(base)]):
        at = np.flatnonzero(base == value)
        if len(at) > 1:
            out[at] += np.linspace(-width / 2, width / 2, len(at))
    return out


def _grid(n: int, wrap: int) -> tuple[int, int]:
    cols = min(n, wrap)
    return math.ceil(n / cols), cols


def _sweeps(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The channel figure's sweeps (data set, data, model), each a row of panels A and B."""
    return panels(table, ["dataset", "data", "arch", "model"])


def _seconds(table: pd.DataFrame) -> list[str]:
    """The second-modality settings of the channel figure, sEMG alone first."""
    return sorted(set(table.second), key=lambda second: (second != ALONE, second))


def _channel_series(rows: pd.DataFrame, measure: str, second: str) -> pd.DataFrame:
    return rows[(rows.measure == measure) & (rows.second == second)].sort_values("semg_channels", kind="stable")


def _log_spread(x, width: float = 0.2) -> np.ndarray:
    """`_spread` on a log₂ axis (the channel figure's)."""
    return 2 ** _spread(np.log2(np.asarray(x, dtype=float)), width)


def _gain_colour(seconds: list[str], second: str) -> str:
    """Colours after the accuracy lines', so a gain never looks like the accuracy it is drawn next to."""
    return colour(len(seconds) + seconds.index(second))


def _accuracy_name(second: str) -> str:
    return "sEMG alone" if second == ALONE else f"sEMG + {second}"


def _layer_positions(rows: pd.DataFrame, pathways) -> np.ndarray:
    offset = rows.pathway.map({p: (i - (len(pathways) - 1) / 2) * BAR for i, p in enumerate(pathways)})
    return rows.layer.to_numpy(float) + offset.to_numpy(float)


def _bar_labels(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table.configuration + ": " + table.modalities))


def _bar_positions(rows: pd.DataFrame, archs: list[str], labels: list[str]) -> np.ndarray:
    """x of the accuracy figure's bars: architecture index, each configuration side by side."""
    width = 0.8 / len(labels)
    offset = [(labels.index(label) - (len(labels) - 1) / 2) * width for label in rows.configuration + ": " + rows.modalities]
    return np.array([archs.index(a) for a in rows.arch], dtype=float) + np.array(offset, dtype=float)


def _method_dodge(methods: list[str], method: str) -> float:
    return (methods.index(method) - (len(methods) - 1) / 2) * DODGE


def _compare_labels(rows: pd.DataFrame) -> pd.Series:
    """'method [layers]', with the scale of the related quantities (each its own) said in the label."""
    related = rows.block.astype(str) == RELATED
    data = rows.block.astype(str) == DATA
    return rows.method + " [" + rows.layers + "]" + np.where(related, " (own scale)", np.where(data, " (the data)", ""))


def compare_panel(rows: pd.DataFrame):
    """One model's panel of the compare figure, for both renderers: (row labels top to bottom, a function
    placing a frame's rows on the y axis, the measured pooled rows, the null ones, the unit rows)."""
    summary, units = levels(rows)
    labels = list(dict.fromkeys(_compare_labels(summary)))
    y = lambda frame: _compare_labels(frame).map({label: k for k, label in enumerate(labels)}).to_numpy(float)
    null = is_null(summary)
    return labels, y, summary[~null], summary[null], units


def _block_colours(rows: pd.DataFrame) -> list[str]:
    """One colour per block of compare (share of clean accuracy, of clean margin, related quantities)."""
    return [colour(BLOCKS.index(b) if b in BLOCKS else len(BLOCKS)) for b in rows.block]


def planted_layout(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The planted figure's rows of one panel placed on the y axis: check k spans k ± 0.35, its pooled
    row at the top where it averages several runs (a single run is its own summary), its runs below.
    Adds `y` and `half` (half the height of a row's slot: the extent of a run's region band and
    threshold lines). Returns (pooled rows, run rows, check labels top to bottom)."""
    check = (rows[LEVEL_COLUMN] == POOLED).cumsum().to_numpy() - 1  # a pooled row and the run rows after it
    y, half = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for k in range(check.max() + 1 if len(check) else 0):
        at = np.flatnonzero(check == k)  # the pooled row first
        slots = at if len(at) > 2 else at[1:]  # with one run, the pooled row is not drawn apart
        y[slots] = k + (np.linspace(-0.35, 0.35, len(slots)) if len(slots) > 1 else 0.0)
        half[slots] = 0.35 / max(len(slots) - 1, 1)
    placed = rows.assign(y=y, half=half)
    summary, runs = levels(placed)
    labels = [f"{row['check']}: {row['quantity']} ({row['method']}) · tests {TESTED.get(row['tested'], row['tested'])}"
              for _, row in summary.iterrows()]
    return summary, runs, labels


def _planted_y(summary: pd.DataFrame) -> np.ndarray:
    """Where a check's planted × goes: beside the mean over its runs, or on its one run."""
    return np.where(summary.y.notna(), summary.y, np.arange(len(summary), dtype=float))


def planted_extent(rows: pd.DataFrame) -> tuple[float, float]:
    """The x range of one planted panel: every finding, CI bound and threshold, with a margin; an open
    side of a region runs to its edge."""
    columns = [c for c in ("found", "ci_low", "ci_high", "low", "high") if c in rows]
    values = rows[columns].to_numpy(float).ravel()
    planted = pd.to_numeric(rows.planted, errors="coerce").to_numpy(float)
    values = np.concatenate([values, planted])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    margin = 0.08 * (high - low) if high > low else 0.05 * max(abs(low), 1.0)
    return low - margin, high + margin


def planted_region(run, extent: tuple[float, float]) -> tuple[float, float]:
    """A run's region (low, high) with an open side taken to the panel's edge."""
    low = float(run["low"]) if pd.notna(run["low"]) else extent[0]
    high = float(run["high"]) if pd.notna(run["high"]) else extent[1]
    return low, high


def planted_hover(run) -> str:
    region = " and ".join(part for part in (f"> {number(run['low'])}" if pd.notna(run["low"]) else "",
                                            f"< {number(run['high'])}" if pd.notna(run["high"]) else "") if part)
    return (f"subject {run['subject']}, seed {run['seed']}: found {number(run['found'])} "
            f"[{number(run['ci_low'])}, {number(run['ci_high'])}]; {TESTED.get(run['tested'], run['tested'])} "
            f"must be {region or 'anything'}: {'passed' if run['passed'] else 'failed'}")


# --- plotly ---------------------------------------------------------------------------------------

def _subplots(n: int, titles, height: int = 340, wrap: int = WRAP, **options):
    """A plotly figure of `n` panels, `wrap` to a row, and `at(i)`: the row= and col= of panel i."""
    from plotly.subplots import make_subplots

    rows, cols = _grid(n, wrap)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), **options)
    figure.update_layout(height=height * rows + 80, margin=dict(t=60, b=40, l=60, r=20), template="plotly_white",
                         legend=dict(orientation="h", y=-0.12 if rows == 1 else -0.05))
    figure.update_annotations(font_size=12)  # the panel titles
    return figure, lambda i: dict(row=i // cols + 1, col=i % cols + 1)


def _plotly_units(units: pd.DataFrame, x, y, value: str, low: str, high: str, marker_colour: str,
                  horizontal: bool = False):
    """Each unit as a small marker with its own CI (error bars only where it has one)."""
    import plotly.graph_objects as go

    above, below = _errors(units, value, low, high)
    bars = dict(type="data", array=above, arrayminus=below, thickness=1, width=2, color=marker_colour)
    return go.Scatter(x=np.asarray(x, dtype=float), y=np.asarray(y, dtype=float), mode="markers", name=units_name(units),
                      legendgroup="units", showlegend=False, marker=dict(size=UNIT_SIZE, color=marker_colour),
                      text=_unit_hover(units, value, low, high), hovertemplate="%{text}<extra></extra>",
                      **{"error_x" if horizontal else "error_y": bars})


def _plotly_null(x, y, marker_colour: str, hover):
    """Hollow ∅ markers: rows null by construction, drawn where a measurement would be 0, without a number."""
    import plotly.graph_objects as go

    return go.Scatter(x=np.asarray(x, dtype=float), y=np.asarray(y, dtype=float), mode="markers+text",
                      text=[NULL_MARK] * len(x), textposition="top center",
                      marker=dict(symbol="circle-open", size=10, color=marker_colour),
                      name=f"{NULL_MARK} null by construction", legendgroup="null", showlegend=False,
                      hovertext=list(hover), hoverinfo="text")


def _plotly_legend(figure, table: pd.DataFrame, at: dict) -> None:
    """One legend entry each for the unit markers and the ∅ markers, where the figure has them."""
    import plotly.graph_objects as go

    _, units = levels(table)
    if not units.empty:
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(size=UNIT_SIZE, color=UNIT_COLOUR),
                                    name=units_name(units), legendgroup="units"), **at)
    if is_null(table).any():
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(symbol="circle-open", size=10,
                                    color="black"), name=f"{NULL_MARK} null by construction (not a measurement)",
                                    legendgroup="null"), **at)


def accuracy_bars(rows: pd.DataFrame, labels: list[str]):
    """One panel of the accuracy figure, for both renderers: ([(colour index, label, its summary rows, their x
    positions, CI lengths above, below)] for each bar label present, the unit rows, the architectures)."""
    summary, units = levels(rows)
    archs = list(dict.fromkeys(summary.arch))
    bars = []
    for j, label in enumerate(labels):
        chosen = summary[summary.configuration + ": " + summary.modalities == label]
        if not chosen.empty:
            above, below = _errors(chosen, "accuracy", "accuracy_ci_low", "accuracy_ci_high")
            bars.append((j, label, chosen, _bar_positions(chosen, archs, labels), above, below))
    return bars, units, archs


def plotly_accuracy(table: pd.DataFrame):
    import plotly.graph_objects as go

    groups = panels(table, ["dataset", "data"])
    figure, at = _subplots(len(groups), [t for t, _ in groups])
    labels = _bar_labels(table)
    width = 0.8 / len(labels)
    shown = set()
    for i, (_, rows) in enumerate(groups):
        bar_groups, units, archs = accuracy_bars(rows, labels)
        for j, label, bars, x, above, below in bar_groups:
            figure.add_trace(go.Bar(x=x, y=bars.accuracy, width=width, name=label,
                                    legendgroup=label, showlegend=label not in shown, marker_color=colour(j),
                                    error_y=dict(type="data", array=above, arrayminus=below),
                                    customdata=np.stack([bars.arch, [pooled_note(r) for _, r in bars.iterrows()]], axis=1),
                                    hovertemplate=f"%{{customdata[0]}} · {label}: %{{y:.4f}}<br>%{{customdata[1]}}"
                                                  "<extra></extra>"), **at(i))
            shown.add(label)
        if not units.empty:
            x = _spread(_bar_positions(units, archs, labels), 0.5 * width)
            figure.add_trace(_plotly_units(units, x, units.accuracy, "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                                           UNIT_COLOUR), **at(i))
        figure.update_xaxes(tickvals=list(range(len(archs))), ticktext=archs, **at(i))
        figure.update_yaxes(title_text="test accuracy", range=[0, 1.05], **at(i))
    figure.update_layout(barmode="overlay")
    _plotly_legend(figure, table, at(0))
    return figure


def plotly_layer_drop(table: pd.DataFrame):
    import plotly.graph_objects as go

    groups = panels(table, [*MODEL_COLUMNS, "intervention", "heads"])
    figure, at = _subplots(len(groups), [t for t, _ in groups])
    pathways = [p for p in LAYER_PATHWAYS if p in set(table.pathway)]
    for i, (_, rows) in enumerate(groups):
        summary, units = levels(rows)
        null = is_null(summary)
        for pathway in pathways:
            measured = summary[(summary.pathway == pathway).to_numpy() & ~null]
            if not measured.empty:
                above, below = _errors(measured, "drop", "drop_ci_low", "drop_ci_high")
                figure.add_trace(go.Bar(x=_layer_positions(measured, pathways), y=measured["drop"], width=BAR,
                                        name=pathway, legendgroup=pathway, showlegend=i == 0,
                                        marker_color=PATHWAY_COLOURS[pathway],
                                        error_y=dict(type="data", array=above, arrayminus=below),
                                        customdata=np.stack([measured.layers, [pooled_note(r) for _, r in measured.iterrows()]],
                                                            axis=1),
                                        hovertemplate=f"{pathway} %{{customdata[0]}}: %{{y:+.4f}}<br>%{{customdata[1]}}"
                                                      "<extra></extra>"), **at(i))
            empty = summary[(summary.pathway == pathway).to_numpy() & null]
            if not empty.empty:
                figure.add_trace(_plotly_null(_layer_positions(empty, pathways), np.zeros(len(empty)),
                                              PATHWAY_COLOURS[pathway], empty.layers + f" {pathway}: null by construction"),
                                 **at(i))
            mine = units[units.pathway == pathway]
            if not mine.empty:
                figure.add_trace(_plotly_units(mine, _spread(_layer_positions(mine, pathways), 0.6 * BAR), mine["drop"],
                                               "drop", "drop_ci_low", "drop_ci_high", UNIT_COLOUR), **at(i))
        layers = sorted(summary.layer.dropna().unique())
        figure.update_xaxes(tickvals=layers, ticktext=[f"L{int(v)}" for v in layers], title_text="layer", **at(i))
        figure.update_yaxes(title_text="accuracy drop", zeroline=True, **at(i))
    _plotly_legend(figure, table, at(0))
    return figure


def _heat_matrix(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(drop values, cell labels) as layer × pathway frames of the pooled rows; null cells are NaN,
    labelled ∅."""
    rows, _ = levels(rows)
    pathways = [p for p in (*LAYER_PATHWAYS, *sorted(set(rows.pathway) - set(LAYER_PATHWAYS))) if p in set(rows.pathway)]
    values = rows.pivot_table(index="layers", columns="pathway", values="drop", aggfunc="first", dropna=False)
    order = rows.drop_duplicates("layers").sort_values("layer").layers
    values = values.reindex(index=order, columns=pathways)
    labels = values.map(lambda v: "" if pd.isna(v) else f"{v:+.3f}")
    null = rows[is_null(rows)].set_index(["layers", "pathway"])
    for layer, pathway in null.index:
        labels.loc[layer, pathway] = NULL_MARK
    return values, labels


def plotly_heatmap(table: pd.DataFrame):
    import plotly.graph_objects as go

    table, _ = levels(table)
    groups = panels(table, [*MODEL_COLUMNS, "intervention", "heads"])
    figure, at = _subplots(len(groups), [t for t, _ in groups], height=300 + 20 * table.pathway.nunique())
    limit = float(np.nanmax(np.abs(table["drop"].to_numpy(float)))) if table["drop"].notna().any() else 1.0
    for i, (_, rows) in enumerate(groups):
        values, labels = _heat_matrix(rows)
        figure.add_trace(go.Heatmap(z=values.to_numpy(float).T, x=list(values.index), y=list(values.columns),
                                    text=labels.to_numpy().T, texttemplate="%{text}", colorscale="RdBu_r", zmid=0,
                                    zmin=-limit, zmax=limit, showscale=i == 0, colorbar=dict(title="drop"),
                                    hovertemplate="%{x} %{y}: %{text}<extra></extra>"), **at(i))
        figure.update_yaxes(autorange="reversed", **at(i))  # pathways top to bottom, as in the static figure
    return figure


def plotly_compare(table: pd.DataFrame):
    import plotly.graph_objects as go

    groups = panels(table, MODEL_COLUMNS)
    figure, at = _subplots(len(groups), [t for t, _ in groups], height=60 + 34 * table.method.nunique(), wrap=1)
    for i, (_, rows) in enumerate(groups):
        labels, y, measured, empty, units = compare_panel(rows)
        above, below = _errors(measured, "estimate", "ci_low", "ci_high")
        figure.add_trace(go.Scatter(x=measured.estimate, y=y(measured), mode="markers", name="pooled",
                                    marker=dict(size=9, color=_block_colours(measured)), showlegend=False,
                                    error_x=dict(type="data", array=above, arrayminus=below),
                                    text=_compare_labels(measured) + " — " + measured.block + ": " + measured.estimand,
                                    customdata=[pooled_note(r) for _, r in measured.iterrows()],
                                    hovertemplate="%{text}<br>%{x:+.4f}, %{customdata}<extra></extra>"), **at(i))
        if not empty.empty:
            figure.add_trace(_plotly_null(np.zeros(len(empty)), y(empty), colour(0),
                                          _compare_labels(empty) + ": null by construction"), **at(i))
        if not units.empty:
            figure.add_trace(_plotly_units(units, units.estimate, _spread(y(units), 0.5), "estimate", "ci_low", "ci_high",
                                           UNIT_COLOUR, horizontal=True), **at(i))
        figure.add_vline(x=0, line=dict(color="grey", dash="dot"), **at(i))
        figure.update_xaxes(title_text="estimate (blocks by colour: shares of clean accuracy, of clean margin; related; the data)",
                            **at(i))
        figure.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", **at(i))
    _plotly_legend(figure, table, at(0))
    return figure


@dataclass(frozen=True)
class LineAxes:
    """What a figure of lines over layers (or steps) draws: one line per value of `series`, at x = `x`
    labelled by `label`, y = `estimate` with `ci_low`/`ci_high`."""

    series: str
    y_title: str
    x: str = "layer_number"
    label: str = "layer"
    x_title: str = "layer"
    tick_rotation: int = 0  # degrees, for long tick labels


COMPARE_LAYERS = LineAxes("method", "estimate (see the caption: three scales)")
KNOCKOUT = LineAxes("pathway", "relative change of p(true class)")
SANITY = LineAxes("method", "Spearman ρ with the trained output", x="step_index", label="step",
                  x_title="weights re-drawn from the output down, cumulatively", tick_rotation=35)


PID = LineAxes("part", "bits (plug-in over k-means codes)", x="k", label="k_label",
               x_title="codes per modality (K)")


def line_renderers(spec: LineAxes) -> tuple[Callable, Callable]:
    """(plotly renderer, static renderer) of a figure of lines drawn as `spec` says."""
    return (lambda table: _plotly_lines(table, spec)), (lambda table: _static_lines(table, spec))


def _plotly_lines(table: pd.DataFrame, spec: LineAxes):
    """Per model, one line per value of the series over x, with CIs, null points as hollow ∅ markers and
    the units below 5 beside each pooled point."""
    import plotly.graph_objects as go

    groups = panels(table, MODEL_COLUMNS)
    figure, at = _subplots(len(groups), [t for t, _ in groups])
    methods = list(dict.fromkeys(table[spec.series]))
    shown = set()
    for i, (_, rows) in enumerate(groups):
        summary, units = levels(rows)
        for j, method in enumerate(methods):
            line = summary[summary[spec.series] == method].sort_values(spec.x, kind="stable")
            null = is_null(line)
            x = line[spec.x].to_numpy(float) + _method_dodge(methods, method)
            if not null.all():  # the measured layers; a null layer leaves a gap (its value is NaN), not a 0
                above, below = _errors(line, "estimate", "ci_low", "ci_high")
                figure.add_trace(go.Scatter(x=x, y=line.estimate.where(~null), mode="lines+markers", name=method,
                                            legendgroup=method, showlegend=method not in shown, line=dict(color=colour(j)),
                                            error_y=dict(type="data", array=above, arrayminus=below),
                                            customdata=np.stack([line[spec.label], [pooled_note(r) for _, r in line.iterrows()]],
                                                                axis=1),
                                            hovertemplate=f"{method} %{{customdata[0]}}: %{{y:+.4f}}<br>%{{customdata[1]}}"
                                                          "<extra></extra>"), **at(i))
                shown.add(method)
            if null.any():
                figure.add_trace(_plotly_null(x[null], np.zeros(int(null.sum())), colour(j),
                                              line[spec.label][null] + f" {method}: null by construction"), **at(i))
            mine = units[units[spec.series] == method]
            if not mine.empty:
                figure.add_trace(_plotly_units(mine, _spread(mine[spec.x].to_numpy(float) + _method_dodge(methods, method),
                                                             0.6 * DODGE),
                                               mine.estimate, "estimate", "ci_low", "ci_high", colour(j)), **at(i))
        ticks = _ticks(summary, spec)
        figure.update_xaxes(tickvals=list(ticks), ticktext=list(ticks.values()), title_text=spec.x_title,
                            tickangle=-spec.tick_rotation, **at(i))
        figure.update_yaxes(title_text=spec.y_title, zeroline=True, **at(i))
    _plotly_legend(figure, table, at(0))
    return figure


def _ticks(summary: pd.DataFrame, spec: LineAxes) -> dict[float, str]:
    """x value -> its label, in order."""
    pairs = summary[[spec.x, spec.label]].dropna().drop_duplicates(spec.x).sort_values(spec.x)
    return dict(zip(pairs[spec.x].astype(float), pairs[spec.label].astype(str)))


def plotly_shift(table: pd.DataFrame):
    import plotly.graph_objects as go

    figure, at = _subplots(1, [""], height=420)
    summary, units = levels(table)
    for j, intervention in enumerate(dict.fromkeys(summary.intervention)):
        rows = summary[summary.intervention == intervention]
        labels = rows.apply(model_label, axis=1) + " " + rows.pathway + " " + rows.layers
        above, below = _errors(rows, "drop", "drop_ci_low", "drop_ci_high")
        figure.add_trace(go.Scatter(x=rows.mmd2, y=rows["drop"], mode="markers", name=intervention,
                                    marker=dict(size=11, color=colour(j)), text=labels,
                                    customdata=[pooled_note(r) for _, r in rows.iterrows()],
                                    error_y=dict(type="data", array=above, arrayminus=below),
                                    hovertemplate="%{text}<br>MMD² %{x:.4g}, drop %{y:+.4f}<br>%{customdata}"
                                                  "<extra></extra>"))
        figure.add_trace(go.Scatter(x=rows.mmd2_null95, y=rows["drop"], mode="markers", name=f"{intervention}: null 95%",
                                    marker=dict(size=9, symbol="line-ns-open", color=colour(j)), text=labels,
                                    hovertemplate="%{text}<br>null 95% %{x:.4g}<extra></extra>"))
        mine = units[units.intervention == intervention]
        if not mine.empty:
            trace = _plotly_units(mine, mine.mmd2, mine["drop"], "drop", "drop_ci_low", "drop_ci_high", colour(j))
            trace.text = [f"{text}; MMD² {number(m)}" for text, m in zip(trace.text, mine.mmd2)]
            figure.add_trace(trace)
    figure.update_xaxes(title_text="MMD² of the head's input (intervened vs clean)")
    figure.update_yaxes(title_text="accuracy drop")
    _plotly_legend(figure, table, {})
    return figure


EMAP_QUANTITIES = ("model accuracy", "emap accuracy", "gap")


def emap_panel(table: pd.DataFrame):
    """The EMAP figure's rows for both renderers: (model labels top to bottom, y of a frame's rows, pooled
    rows and unit rows of each quantity)."""
    summary, units = levels(table)
    labels = list(dict.fromkeys(summary.apply(model_label, axis=1)))
    y = lambda frame: frame.apply(model_label, axis=1).map({label: k for k, label in enumerate(labels)}).to_numpy(float)
    return labels, y, summary, units


def plotly_emap(table: pd.DataFrame):
    import plotly.graph_objects as go

    labels, y, summary, units = emap_panel(table)
    figure, at = _subplots(2, ["accuracy: the model and its additive projection", "gap (model − EMAP)"],
                           height=max(300, 60 * len(labels) + 120), wrap=2, shared_yaxes=True)
    for j, quantity in enumerate(EMAP_QUANTITIES):
        rows, panel, offset = summary[summary.quantity == quantity], at(int(quantity == "gap")), 0.12 * (j == 1)
        above, below = _errors(rows, "estimate", "ci_low", "ci_high")
        figure.add_trace(go.Scatter(x=rows.estimate, y=y(rows) + offset, mode="markers", name=quantity,
                                    marker=dict(size=11, color=colour(j)), error_x=dict(type="data", array=above,
                                                                                         arrayminus=below),
                                    text=rows.apply(model_label, axis=1),
                                    customdata=[pooled_note(r) for _, r in rows.iterrows()],
                                    hovertemplate=f"%{{text}}<br>{quantity} %{{x:.4f}}<br>%{{customdata}}<extra></extra>"),
                         **panel)
        mine = units[units.quantity == quantity]
        if not mine.empty:
            figure.add_trace(_plotly_units(mine, mine.estimate, _spread(y(mine) + offset, 0.2), "estimate", "ci_low",
                                           "ci_high", colour(j), horizontal=True), **panel)
    figure.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", **at(0))
    figure.update_xaxes(title_text="accuracy", **at(0))
    figure.update_xaxes(title_text="accuracy points", zeroline=True, **at(1))
    _plotly_legend(figure, table, at(0))
    return figure


def plotly_channels(table: pd.DataFrame):
    import plotly.graph_objects as go

    sweeps, seconds = _sweeps(table), _seconds(table)
    cross = (table.measure == "relative_drop").any()
    cols = 2 if cross else 1
    titles = [t for title, _ in sweeps for t in (f"A. {title}: accuracy", f"B. {title}: cross share")[:cols]]
    figure, at = _subplots(len(titles), titles, height=380, wrap=cols,
                           specs=[[{"secondary_y": True}, {}][:cols]] * len(sweeps))
    for i, (_, everything) in enumerate(sweeps):
        rows, units = levels(everything)
        a, b = at(i * cols), at(i * cols + 1)
        for j, second in enumerate(seconds):
            line = _channel_series(rows, "accuracy", second)
            above, below = _errors(line, "value", "ci_low", "ci_high")
            figure.add_trace(go.Scatter(x=line.semg_channels, y=line.value, mode="lines+markers", name=_accuracy_name(second),
                                        legendgroup=f"accuracy {second}", showlegend=i == 0, line=dict(color=colour(j)),
                                        error_y=dict(type="data", array=above, arrayminus=below), text=line.modalities,
                                        customdata=[pooled_note(r) for _, r in line.iterrows()],
                                        hovertemplate="%{text}: %{y:.4f}<br>%{customdata}<extra></extra>"),
                             secondary_y=False, **a)
            mine = _channel_series(units, "accuracy", second)
            if not mine.empty:
                figure.add_trace(_plotly_units(mine, _log_spread(mine.semg_channels), mine.value, "value", "ci_low", "ci_high",
                                               colour(j)), secondary_y=False, **a)
            gain = _channel_series(rows, "gain", second)
            if not gain.empty:
                above, below = _errors(gain, "value", "ci_low", "ci_high")
                figure.add_trace(go.Scatter(x=gain.semg_channels, y=gain.value, mode="lines+markers",
                                            name=f"gain of + {second} (right axis)", legendgroup=f"gain {second}",
                                            showlegend=i == 0, line=dict(color=_gain_colour(seconds, second), dash="dash"),
                                            marker=dict(symbol="diamond"), text=gain.modalities,
                                            error_y=dict(type="data", array=above, arrayminus=below),
                                            customdata=[pooled_note(r) for _, r in gain.iterrows()],
                                            hovertemplate="%{text}: %{y:+.4f}<br>%{customdata}<extra></extra>"),
                                 secondary_y=True, **a)
            mine = _channel_series(units, "gain", second)
            if not mine.empty:
                figure.add_trace(_plotly_units(mine, _log_spread(mine.semg_channels), mine.value, "value", "ci_low", "ci_high",
                                               _gain_colour(seconds, second)), secondary_y=True, **a)
            drop = _channel_series(rows, "relative_drop", second)
            if cross and not drop.empty:
                null = is_null(drop)
                measured, empty = drop[~null], drop[null]
                above, below = _errors(measured, "value", "ci_low", "ci_high")
                figure.add_trace(go.Scatter(x=measured.semg_channels, y=measured.value, mode="lines+markers",
                                            name=f"cross drop, + {second}", legendgroup=f"cross {second}",
                                            showlegend=i == 0, line=dict(color=colour(j)), marker=dict(symbol="square"),
                                            error_y=dict(type="data", array=above, arrayminus=below),
                                            text=measured.modalities + " [" + measured.layers + "]",
                                            customdata=[pooled_note(r) for _, r in measured.iterrows()],
                                            hovertemplate="%{text}: %{y:+.4f}<br>%{customdata}<extra></extra>"), **b)
                if not empty.empty:
                    figure.add_trace(_plotly_null(empty.semg_channels, np.zeros(len(empty)), colour(j),
                                                  empty.modalities + ": null by construction"), **b)
                mine = _channel_series(units, "relative_drop", second)
                if not mine.empty:
                    figure.add_trace(_plotly_units(mine, _log_spread(mine.semg_channels), mine.value, "value", "ci_low",
                                                   "ci_high", colour(j)), **b)
        ticks = sorted(set(rows.semg_channels))
        for where in (a, b)[:cols]:
            figure.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks], title_text="sEMG channels",
                                **where)
        figure.update_yaxes(title_text="test accuracy", secondary_y=False, **a)
        figure.update_yaxes(title_text="gain (with − without)", secondary_y=True, showgrid=False, tickmode="auto",
                            zeroline=True, zerolinecolor="grey", **a)
        if cross:
            figure.update_yaxes(title_text="relative cross drop (all layers)", rangemode="tozero", zeroline=True, **b)
    _plotly_legend(figure, table, at(0))
    return figure


def plotly_curves(table: pd.DataFrame):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    runs = list(dict.fromkeys(table.run))
    titles = [run_label(table[table.run == run]) for run in runs]
    figure = make_subplots(rows=2, cols=len(runs), subplot_titles=titles + [""] * len(runs), shared_xaxes=True,
                           vertical_spacing=0.08)
    figure.update_layout(height=560, template="plotly_white", margin=dict(t=60, b=40, l=60, r=20))
    figure.update_annotations(font_size=10)
    series = [("val_accuracy", 1, "#1f77b4"), ("train_accuracy", 1, "#aec7e8"), ("lambda", 1, "#ff7f0e"),
              ("val_loss", 2, "#d62728"), ("loss", 2, "#ff9896")]
    for i, run in enumerate(runs):
        rows = table[table.run == run]
        for name, row, line in series:
            figure.add_trace(go.Scatter(x=rows.epoch, y=rows[name], mode="lines", name="λ(t)" if name == "lambda" else name,
                                        legendgroup=name, showlegend=i == 0, line=dict(color=line)), row=row, col=i + 1)
        figure.update_xaxes(title_text="epoch", row=2, col=i + 1)
    figure.update_yaxes(title_text="accuracy, λ", row=1, col=1)
    figure.update_yaxes(title_text="loss", row=2, col=1)
    return figure


def plotly_confusion(table: pd.DataFrame):
    import plotly.graph_objects as go

    runs = list(dict.fromkeys(table.run))
    figure, at = _subplots(len(runs), [run_label(table[table.run == run]) for run in runs], height=420)
    for i, run in enumerate(runs):
        share = _confusion_matrix(table[table.run == run], "share")
        counts = _confusion_matrix(table[table.run == run], "count")
        figure.add_trace(go.Heatmap(z=share.to_numpy(float), x=list(share.columns), y=list(share.index), zmin=0, zmax=1,
                                    colorscale="Viridis", showscale=i == 0, colorbar=dict(title="share"),
                                    customdata=counts.to_numpy(float),
                                    hovertemplate="true %{y}, predicted %{x}: %{z:.3f} (%{customdata:.0f})<extra></extra>"),
                         **at(i))
        figure.update_xaxes(title_text="predicted", type="category", **at(i))
        figure.update_yaxes(title_text="true", type="category", autorange="reversed", **at(i))
    return figure


def _confusion_matrix(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    classes = list(dict.fromkeys([*rows["true"], *rows["predicted"]]))
    return rows.pivot_table(index="true", columns="predicted", values=value, aggfunc="sum", fill_value=0) \
        .reindex(index=classes, columns=classes, fill_value=0)


def plotly_planted(table: pd.DataFrame):
    """Per check: each run's finding with its CI, green where its own rule passed and red where it
    failed, over the region its tested number must lie in (shaded, one band per run: a threshold such
    as chance differs between runs) with the region's finite bounds as dashed thresholds; the pooled
    mean over several runs in black (its CI only from MIN_UNITS units); × the planted value where it is
    a number."""
    import plotly.graph_objects as go

    groups = panels(table, MODEL_COLUMNS)
    checks = len(levels(table)[0].drop_duplicates(["check", "quantity", "method", "tested"]))
    figure, at = _subplots(len(groups), [t for t, _ in groups], height=140 + 60 * checks, wrap=1)
    shown = set()
    for i, (_, rows) in enumerate(groups):
        summary, runs, labels = planted_layout(rows)
        extent = planted_extent(rows)
        lines_x, lines_y = [], []
        for _, run in runs.iterrows():
            low, high = planted_region(run, extent)
            figure.add_shape(type="rect", x0=low, x1=high, y0=run.y - run.half, y1=run.y + run.half, layer="below",
                             fillcolor=PASSED, opacity=0.13, line=dict(width=0), name=f"region {run['run']}", **at(i))
            for bound in (run["low"], run["high"]):
                if pd.notna(bound):
                    lines_x += [float(bound), float(bound), None]
                    lines_y += [run.y - run.half, run.y + run.half, None]
        if lines_x:
            figure.add_trace(go.Scatter(x=lines_x, y=lines_y, mode="lines", name="rule threshold", legendgroup="threshold",
                                        showlegend="threshold" not in shown, line=dict(color="black", width=1.2, dash="dash"),
                                        hoverinfo="skip"), **at(i))
            shown.add("threshold")
        for passed, name, marker in ((True, "run passed its rule", PASSED), (False, "run failed its rule", FAILED)):
            part = runs[runs.passed.astype(bool) == passed]
            if part.empty:
                continue
            above, below = _errors(part, "found", "ci_low", "ci_high")
            figure.add_trace(go.Scatter(x=part.found, y=part.y, mode="markers", name=name, legendgroup=name,
                                        showlegend=name not in shown, marker=dict(size=9, color=marker),
                                        error_x=dict(type="data", array=above, arrayminus=below, color=marker),
                                        text=[planted_hover(run) for _, run in part.iterrows()],
                                        hovertemplate="%{text}<extra></extra>"), **at(i))
            shown.add(name)
        several = summary[summary.y.notna()]
        if not several.empty:
            above, below = _errors(several, "found", "ci_low", "ci_high")
            text = [f"mean of {r['runs']} runs: {number(r['found'])}; {r['passed_runs']} of {r['runs']} passed; "
                    f"{pooled_note(r)}" for _, r in several.iterrows()]
            figure.add_trace(go.Scatter(x=several.found, y=several.y, mode="markers", name="mean over runs",
                                        legendgroup="mean", showlegend="mean" not in shown,
                                        marker=dict(size=10, symbol="diamond-open", color="black", line=dict(width=2)),
                                        error_x=dict(type="data", array=above, arrayminus=below, color="black"),
                                        text=text, hovertemplate="%{text}<extra></extra>"), **at(i))
            shown.add("mean")
        planted = pd.to_numeric(summary.planted, errors="coerce")
        if planted.notna().any():
            figure.add_trace(go.Scatter(x=planted[planted.notna()], y=_planted_y(summary)[planted.notna().to_numpy()],
                                        mode="markers", name="planted", legendgroup="planted",
                                        showlegend="planted" not in shown,
                                        marker=dict(symbol="x-thin-open", size=14, color="black", line=dict(width=2))), **at(i))
            shown.add("planted")
        figure.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", **at(i))
        figure.update_xaxes(title_text="value", range=list(extent), **at(i))
    return figure


# --- matplotlib (object API) --------------------------------------------------------------------

def _figure(n: int, width: float = 5.0, height: float = 3.6, wrap: int = WRAP, **options):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = _grid(n, wrap)
    figure = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(figure)  # its own canvas: nothing global is switched
    axes = figure.subplots(rows, cols, squeeze=False, **options).ravel()
    for extra in axes[n:]:
        extra.set_visible(False)
    return figure, axes


def _static_units(ax, units: pd.DataFrame, x, y, value: str, low: str, high: str, marker_colour: str,
                  horizontal: bool = False) -> None:
    """Each unit as a small marker with its own CI (error bars only where it has one)."""
    if units.empty:
        return
    above, below = _errors(units, value, low, high)
    ax.errorbar(np.asarray(x, dtype=float), np.asarray(y, dtype=float), fmt="o", markersize=3, color=marker_colour,
                elinewidth=0.8, capsize=1.5, zorder=4, **{"xerr" if horizontal else "yerr": [below, above]})


def _static_null(ax, x, y, marker_colour: str, vertical_text: bool = True) -> None:
    """Hollow ∅ markers (null by construction) at 0, without a number."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ax.scatter(x, y, s=40, facecolors="none", edgecolors=marker_colour, zorder=3)
    for a, b in zip(x, y):
        ax.annotate(NULL_MARK, (a, b), textcoords="offset points", xytext=(0, 6) if vertical_text else (7, -3),
                    ha="center", fontsize=8)


def _static_legend(handles: dict, table: pd.DataFrame) -> dict:
    """`handles` with one entry each for the unit markers and the ∅ markers, where the figure has them."""
    from matplotlib.lines import Line2D

    _, units = levels(table)
    if not units.empty:
        handles[units_name(units)] = Line2D([], [], marker="o", markersize=3, linestyle="", color=UNIT_COLOUR)
    if is_null(table).any():
        handles[f"{NULL_MARK} null by construction"] = Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                                                              markeredgecolor="black")
    return handles


def _legend(figure, handles: dict, columns: int = 3) -> None:
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                      ncols=max(1, min(len(handles), columns)), fontsize=8)


def static_accuracy(table: pd.DataFrame):
    groups = panels(table, ["dataset", "data"])
    figure, axes = _figure(len(groups))
    labels = _bar_labels(table)
    width = 0.8 / len(labels)
    handles: dict = {}
    for ax, (title, rows) in zip(axes, groups):
        bar_groups, units, archs = accuracy_bars(rows, labels)
        for j, label, bars, x, above, below in bar_groups:
            handles.setdefault(label, ax.bar(x, bars.accuracy, width, yerr=[below, above], color=colour(j), capsize=3))
        _static_units(ax, units, _spread(_bar_positions(units, archs, labels), 0.5 * width), units.accuracy, "accuracy",
                      "accuracy_ci_low", "accuracy_ci_high", UNIT_COLOUR)
        ax.set_xticks(range(len(archs)), archs)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("test accuracy")
        ax.set_title(title, fontsize=10)
    _legend(figure, _static_legend(handles, table), columns=2)
    return figure


def static_layer_drop(table: pd.DataFrame):
    groups = panels(table, [*MODEL_COLUMNS, "intervention", "heads"])
    figure, axes = _figure(len(groups))
    pathways = [p for p in LAYER_PATHWAYS if p in set(table.pathway)]
    handles: dict = {}
    for ax, (title, rows) in zip(axes, groups):
        summary, units = levels(rows)
        null = is_null(summary)
        for pathway in pathways:
            measured = summary[(summary.pathway == pathway).to_numpy() & ~null]
            above, below = _errors(measured, "drop", "drop_ci_low", "drop_ci_high")
            handles.setdefault(pathway, ax.bar(_layer_positions(measured, pathways), measured["drop"], BAR,
                                               yerr=[below, above], capsize=2, color=PATHWAY_COLOURS[pathway]))
            empty = summary[(summary.pathway == pathway).to_numpy() & null]
            _static_null(ax, _layer_positions(empty, pathways), np.zeros(len(empty)), PATHWAY_COLOURS[pathway])
            mine = units[units.pathway == pathway]
            _static_units(ax, mine, _spread(_layer_positions(mine, pathways), 0.6 * BAR), mine["drop"], "drop",
                          "drop_ci_low", "drop_ci_high", UNIT_COLOUR)
        layers = sorted(summary.layer.dropna().unique())
        ax.set_xticks(layers, [f"L{int(v)}" for v in layers])
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, -0.05 * (high - low)), high)  # room for the ∅ markers at 0
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_xlabel("layer")
        ax.set_ylabel("accuracy drop")
        ax.set_title(title, fontsize=10)
    _legend(figure, _static_legend(handles, table), columns=6)
    return figure


def static_heatmap(table: pd.DataFrame):
    import seaborn as sns

    table, _ = levels(table)
    groups = panels(table, [*MODEL_COLUMNS, "intervention", "heads"])
    figure, axes = _figure(len(groups), height=3.0 + 0.2 * table.pathway.nunique())
    limit = float(np.nanmax(np.abs(table["drop"].to_numpy(float)))) if table["drop"].notna().any() else 1.0
    for ax, (title, rows) in zip(axes, groups):
        values, labels = _heat_matrix(rows)
        sns.heatmap(values.T.astype(float), ax=ax, annot=labels.T.to_numpy(), fmt="", cmap="RdBu_r", center=0,
                    vmin=-limit, vmax=limit, cbar_kws={"label": "accuracy drop"}, annot_kws={"fontsize": 7})
        # seaborn leaves NaN cells (null by construction) unannotated: mark them by hand
        for (row, col), label in np.ndenumerate(labels.T.to_numpy()):
            if label == NULL_MARK:
                ax.text(col + 0.5, row + 0.5, NULL_MARK, ha="center", va="center", fontsize=9, color="#555")
        ax.set_xlabel("layer")
        ax.set_ylabel("pathway")
        ax.set_title(title, fontsize=10)
    return figure


def static_compare(table: pd.DataFrame):
    groups = panels(table, MODEL_COLUMNS)
    figure, axes = _figure(len(groups), width=8.0, height=0.8 + 0.4 * table.method.nunique(), wrap=1)
    for ax, (title, rows) in zip(axes, groups):
        labels, y, measured, empty, units = compare_panel(rows)
        above, below = _errors(measured, "estimate", "ci_low", "ci_high")
        for x, y_at, low, high, block_colour in zip(measured.estimate, y(measured), below, above, _block_colours(measured)):
            ax.errorbar([x], [y_at], xerr=[[low], [high]], fmt="o", color=block_colour, capsize=3)
        _static_null(ax, np.zeros(len(empty)), y(empty), colour(0), vertical_text=False)
        _static_units(ax, units, units.estimate, _spread(y(units), 0.5), "estimate", "ci_low", "ci_high", UNIT_COLOUR,
                      horizontal=True)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # first method on top
        ax.axvline(0, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel("estimate (colour: share of clean accuracy, of clean margin; related, own scale; the data)")
        ax.set_title(title, fontsize=10)
    _legend(figure, _static_legend({}, table))
    return figure


def _static_lines(table: pd.DataFrame, spec: LineAxes):
    """The static twin of `_plotly_lines`."""
    groups = panels(table, MODEL_COLUMNS)
    figure, axes = _figure(len(groups))
    methods = list(dict.fromkeys(table[spec.series]))
    handles: dict = {}
    for ax, (title, rows) in zip(axes, groups):
        summary, units = levels(rows)
        for j, method in enumerate(methods):
            line = summary[summary[spec.series] == method].sort_values(spec.x, kind="stable")
            null = is_null(line)
            x = line[spec.x].to_numpy(float) + _method_dodge(methods, method)
            if not null.all():  # a null layer leaves a gap in the line (its value is NaN), not a 0
                above, below = _errors(line, "estimate", "ci_low", "ci_high")
                handles.setdefault(method, ax.errorbar(x, line.estimate.where(~null), yerr=[below, above], marker="o",
                                                       color=colour(j), capsize=2, linewidth=1))
            _static_null(ax, x[null], np.zeros(int(null.sum())), colour(j))
            mine = units[units[spec.series] == method]
            _static_units(ax, mine, _spread(mine[spec.x].to_numpy(float) + _method_dodge(methods, method), 0.6 * DODGE),
                          mine.estimate, "estimate", "ci_low", "ci_high", colour(j))
        ticks = _ticks(summary, spec)
        ax.set_xticks(list(ticks), list(ticks.values()), rotation=spec.tick_rotation,
                      ha="right" if spec.tick_rotation else "center")
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_xlabel(spec.x_title)
        ax.set_ylabel(spec.y_title)
        ax.set_title(title, fontsize=10)
    _legend(figure, _static_legend(handles, table))
    return figure


def static_shift(table: pd.DataFrame):
    figure, (ax, *_) = _figure(1, width=6.0, height=4.2)
    summary, units = levels(table)
    for j, intervention in enumerate(dict.fromkeys(summary.intervention)):
        rows = summary[summary.intervention == intervention]
        above, below = _errors(rows, "drop", "drop_ci_low", "drop_ci_high")
        ax.errorbar(rows.mmd2, rows["drop"], yerr=[below, above], fmt="o", color=colour(j), label=intervention, capsize=3)
        ax.scatter(rows.mmd2_null95, rows["drop"], marker="|", s=120, color=colour(j), label=f"{intervention}: null 95%")
        mine = units[units.intervention == intervention]
        _static_units(ax, mine, mine.mmd2, mine["drop"], "drop", "drop_ci_low", "drop_ci_high", colour(j))
    ax.set_xlabel("MMD² of the head's input (intervened vs clean)")
    ax.set_ylabel("accuracy drop")
    handles, labels = ax.get_legend_handles_labels()
    handles = _static_legend(dict(zip(labels, handles)), table)
    ax.legend(list(handles.values()), list(handles), fontsize=8)
    return figure


def static_emap(table: pd.DataFrame):
    labels, y, summary, units = emap_panel(table)
    figure, axes = _figure(2, width=5.0, height=max(2.6, 0.5 * len(labels) + 1.4), wrap=2, sharey=True)
    for j, quantity in enumerate(EMAP_QUANTITIES):
        rows, ax, offset = summary[summary.quantity == quantity], axes[int(quantity == "gap")], 0.12 * (j == 1)
        above, below = _errors(rows, "estimate", "ci_low", "ci_high")
        ax.errorbar(rows.estimate, y(rows) + offset, xerr=[below, above], fmt="o", color=colour(j), label=quantity,
                    capsize=3)
        mine = units[units.quantity == quantity]
        _static_units(ax, mine, mine.estimate, _spread(y(mine) + offset, 0.2), "estimate", "ci_low", "ci_high",
                      colour(j), horizontal=True)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("accuracy (model and its additive projection)")
    axes[1].axvline(0, color="grey", linewidth=0.6)
    axes[1].set_xlabel("gap (model − EMAP), accuracy points")
    handles = {}
    for ax in axes[:2]:
        handles.update(dict(zip(*reversed(ax.get_legend_handles_labels()))))
    _legend(figure, _static_legend(handles, table))
    return figure


def static_channels(table: pd.DataFrame):
    sweeps, seconds = _sweeps(table), _seconds(table)
    cross = (table.measure == "relative_drop").any()
    cols = 2 if cross else 1
    figure, axes = _figure(len(sweeps) * cols, width=5.5, height=3.8, wrap=cols)
    handles: dict = {}
    for i, (title, everything) in enumerate(sweeps):
        rows, units = levels(everything)
        a = axes[i * cols]
        right = a.twinx()
        for j, second in enumerate(seconds):
            line = _channel_series(rows, "accuracy", second)
            above, below = _errors(line, "value", "ci_low", "ci_high")
            handles.setdefault(_accuracy_name(second), a.errorbar(
                line.semg_channels, line.value, yerr=[below, above], marker="o", color=colour(j), capsize=3))
            mine = _channel_series(units, "accuracy", second)
            _static_units(a, mine, _log_spread(mine.semg_channels), mine.value, "value", "ci_low", "ci_high", colour(j))
            gain = _channel_series(rows, "gain", second)
            if not gain.empty:
                above, below = _errors(gain, "value", "ci_low", "ci_high")
                handles.setdefault(f"gain of + {second} (right axis)", right.errorbar(
                    gain.semg_channels, gain.value, yerr=[below, above], marker="D", linestyle="--",
                    color=_gain_colour(seconds, second), capsize=3))
                mine = _channel_series(units, "gain", second)
                _static_units(right, mine, _log_spread(mine.semg_channels), mine.value, "value", "ci_low", "ci_high",
                              _gain_colour(seconds, second))
            if cross:
                b = axes[i * cols + 1]
                drop = _channel_series(rows, "relative_drop", second)
                null = is_null(drop)
                measured, empty = drop[~null], drop[null]
                if not measured.empty:
                    above, below = _errors(measured, "value", "ci_low", "ci_high")
                    handles.setdefault(f"cross drop, + {second}", b.errorbar(
                        measured.semg_channels, measured.value, yerr=[below, above], marker="s", color=colour(j),
                        capsize=3))
                _static_null(b, empty.semg_channels, np.zeros(len(empty)), colour(j))
                mine = _channel_series(units, "relative_drop", second)
                _static_units(b, mine, _log_spread(mine.semg_channels), mine.value, "value", "ci_low", "ci_high", colour(j))
        right.axhline(0, color="grey", linewidth=0.6, linestyle=":")
        right.set_ylabel("gain (with − without)")
        a.set_ylabel("test accuracy")
        a.set_title(f"A. {title}: accuracy", fontsize=10)
        ticks = sorted(set(rows.semg_channels))
        for ax in axes[i * cols:(i + 1) * cols]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("sEMG channels")
        if cross:
            b = axes[i * cols + 1]
            b.axhline(0, color="grey", linewidth=0.6)
            b.set_ylabel("relative cross drop (all layers)")
            b.set_title(f"B. {title}: cross share", fontsize=10)
    _legend(figure, _static_legend(handles, table))
    return figure


def static_curves(table: pd.DataFrame):
    runs = list(dict.fromkeys(table.run))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5 * len(runs), 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(runs), squeeze=False, sharex="col")
    for i, run in enumerate(runs):
        rows = table[table.run == run]
        top, bottom = axes[0, i], axes[1, i]
        top.plot(rows.epoch, rows.val_accuracy, color="#1f77b4", label="val_accuracy")
        top.plot(rows.epoch, rows.train_accuracy, color="#aec7e8", label="train_accuracy")
        top.plot(rows.epoch, rows["lambda"], color="#ff7f0e", label="λ(t)")
        bottom.plot(rows.epoch, rows.val_loss, color="#d62728", label="val_loss")
        bottom.plot(rows.epoch, rows.loss, color="#ff9896", label="loss")
        top.set_title(run_label(rows), fontsize=8)
        bottom.set_xlabel("epoch")
    axes[0, 0].set_ylabel("accuracy, λ")
    axes[1, 0].set_ylabel("loss")
    handles = [h for ax in axes[:, 0] for h in ax.get_legend_handles_labels()[0]]
    labels = [label for ax in axes[:, 0] for label in ax.get_legend_handles_labels()[1]]
    figure.legend(handles, labels, loc="outside lower center", ncols=5, fontsize=8)
    return figure


def static_confusion(table: pd.DataFrame):
    import seaborn as sns

    runs = list(dict.fromkeys(table.run))
    classes = table["true"].nunique()
    size = max(3.5, 0.3 * classes + 2)
    figure, axes = _figure(len(runs), width=size + 1, height=size)
    for ax, run in zip(axes, runs):
        share = _confusion_matrix(table[table.run == run], "share")
        sns.heatmap(share.astype(float), ax=ax, vmin=0, vmax=1, cmap="viridis", square=True,
                    cbar_kws={"label": "share of true class"})
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(run_label(table[table.run == run]), fontsize=8)
    return figure


def static_planted(table: pd.DataFrame):
    """As plotly_planted: each run's finding coloured by its own verdict over its rule's region and
    thresholds; the pooled mean in black."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    groups = panels(table, MODEL_COLUMNS)
    checks = len(levels(table)[0].drop_duplicates(["check", "quantity", "method", "tested"]))
    figure, axes = _figure(len(groups), width=9.0, height=0.9 + 0.6 * checks, wrap=1)
    handles = {"region the tested number must lie in": Patch(color=PASSED, alpha=0.15),
               "rule threshold": Line2D([], [], color="black", linestyle="--", linewidth=1)}
    for ax, (title, rows) in zip(axes, groups):
        summary, runs, labels = planted_layout(rows)
        extent = planted_extent(rows)
        for _, run in runs.iterrows():
            low, high = planted_region(run, extent)
            ax.fill_betweenx([run.y - run.half, run.y + run.half], low, high, color=PASSED, alpha=0.15, linewidth=0)
            bounds = [float(b) for b in (run["low"], run["high"]) if pd.notna(b)]
            ax.vlines(bounds, run.y - run.half, run.y + run.half, colors="black", linestyles="--", linewidth=1)
        for passed, name, marker in ((True, "run passed its rule", PASSED), (False, "run failed its rule", FAILED)):
            part = runs[runs.passed.astype(bool) == passed]
            if part.empty:
                continue
            above, below = _errors(part, "found", "ci_low", "ci_high")
            handles.setdefault(name, ax.errorbar(part.found, part.y, xerr=[below, above], fmt="o", color=marker,
                                                 capsize=3, markersize=5, zorder=4))
        several = summary[summary.y.notna()]
        if not several.empty:
            above, below = _errors(several, "found", "ci_low", "ci_high")
            handles.setdefault("mean over runs", ax.errorbar(several.found, several.y, xerr=[below, above], fmt="D",
                                                             markerfacecolor="none", color="black", capsize=3, zorder=4))
        planted = pd.to_numeric(summary.planted, errors="coerce")
        if planted.notna().any():
            handles.setdefault("planted", ax.scatter(planted[planted.notna()], _planted_y(summary)[planted.notna().to_numpy()],
                                                     marker="x", color="black", zorder=5))
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # first check on top
        ax.set_xlim(*extent)
        ax.set_xlabel("value")
        ax.set_title(title, fontsize=10)
    _legend(figure, handles)
    return figure
