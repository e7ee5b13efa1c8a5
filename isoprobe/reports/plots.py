"""The report's figures, each drawn twice from the same summary table: interactive (plotly) and static
(matplotlib's object API with seaborn). They only draw: every number comes from the table
(STYLE habit 8). Static figures are `matplotlib.figure.Figure` objects on their own Agg canvas, so
no pyplot state is touched and the caller's backend stays as it was."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from isoprobe.reports.aggregate import ALONE, LAYER_PATHWAYS, MODEL_COLUMNS

NULL_MARK = "∅"
PATHWAY_COLOURS = {"uni": "#1f77b4", "cross": "#d62728", "relay": "#2ca02c", "readout": "#9467bd"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
WRAP = 3  # panels per row
BAR = 0.2  # bar width of the per-layer figure (four pathways per layer)


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


def _errors(rows: pd.DataFrame, value: str, low: str, high: str) -> tuple[np.ndarray, np.ndarray]:
    """(above, below) error-bar lengths; 0 where there is no CI."""
    values = rows[value].to_numpy(float)
    return np.nan_to_num(rows[high].to_numpy(float) - values), np.nan_to_num(values - rows[low].to_numpy(float))


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


def _gain_colour(seconds: list[str], second: str) -> str:
    """Colours after the accuracy lines', so a gain never looks like the accuracy it is drawn next to."""
    return colour(len(seconds) + seconds.index(second))


def _accuracy_name(second: str) -> str:
    return "sEMG alone" if second == ALONE else f"sEMG + {second}"


def _layer_positions(rows: pd.DataFrame, pathways) -> np.ndarray:
    offset = rows.pathway.map({p: (i - (len(pathways) - 1) / 2) * BAR for i, p in enumerate(pathways)})
    return rows.layer.to_numpy(float) + offset.to_numpy(float)


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


def plotly_accuracy(table: pd.DataFrame):
    import plotly.graph_objects as go

    groups = panels(table, ["dataset", "data"])
    figure, at = _subplots(len(groups), [t for t, _ in groups])
    labels = list(dict.fromkeys(table.configuration + ": " + table.modalities))
    for i, (_, rows) in enumerate(groups):
        for j, label in enumerate(labels):
            bars = rows[rows.configuration + ": " + rows.modalities == label]
            if bars.empty:
                continue
            above, below = _errors(bars, "accuracy", "accuracy_ci_low", "accuracy_ci_high")
            figure.add_trace(go.Bar(x=bars.arch, y=bars.accuracy, name=label, legendgroup=label, showlegend=i == 0,
                                    marker_color=colour(j), offsetgroup=label,
                                    error_y=dict(type="data", array=above, arrayminus=below),
                                    customdata=np.stack([bars.unit, bars.n.astype(str)], axis=1),
                                    hovertemplate="%{x}: %{y:.4f}<br>CI over %{customdata[1]} %{customdata[0]}"),
                             **at(i))
        figure.update_yaxes(title_text="test accuracy", range=[0, 1.05], **at(i))
    figure.update_layout(barmode="group")
    return figure


def plotly_layer_drop(table: pd.DataFrame):
    import plotly.graph_objects as go

    groups = panels(table, [*MODEL_COLUMNS, "intervention", "heads"])
    figure, at = _subplots(len(groups), [t for t, _ in groups])
    pathways = [p for p in LAYER_PATHWAYS if p in set(table.pathway)]
    for i, (_, rows) in enumerate(groups):
        for pathway in pathways:
            measured = rows[(rows.pathway == pathway) & ~rows.null_by_construction]
            if not measured.empty:
                above, below = _errors(measured, "drop", "drop_ci_low", "drop_ci_high")
                figure.add_trace(go.Bar(x=_layer_positions(measured, pathways), y=measured["drop"], width=BAR,
                                        name=pathway, legendgroup=pathway, showlegend=i == 0,
                                        marker_color=PATHWAY_COLOURS[pathway],
                                        error_y=dict(type="data", array=above, arrayminus=below),
                                        customdata=measured.layers, hovertemplate=f"{pathway} %{{customdata}}: %{{y:+.4f}}"),
                                 **at(i))
            null = rows[(rows.pathway == pathway) & rows.null_by_construction]
            if not null.empty:
                figure.add_trace(go.Scatter(x=_layer_positions(null, pathways), y=np.zeros(len(null)),
                                            mode="markers+text", text=[NULL_MARK] * len(null), textposition="top center",
                                            marker=dict(symbol="circle-open", size=10, color=PATHWAY_COLOURS[pathway]),
                                            name=f"{NULL_MARK} null by construction", legendgroup="null",
                                            showlegend=False, hovertext=null.layers + f" {pathway}: null by construction",
                                            hoverinfo="text"), **at(i))
        layers = sorted(rows.layer.dropna().unique())
        figure.update_xaxes(tickvals=layers, ticktext=[f"L{int(v)}" for v in layers], title_text="layer", **at(i))
        figure.update_yaxes(title_text="accuracy drop", zeroline=True, **at(i))
    if table.null_by_construction.any():  # one legend entry for the hollow markers
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(symbol="circle-open", size=10,
                                    color="black"), name=f"{NULL_MARK} null by construction (not a measurement)"), **at(0))
    return figure


def _heat_matrix(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(drop values, cell labels) as layer × pathway frames; null cells are NaN, labelled ∅."""
    pathways = [p for p in (*LAYER_PATHWAYS, *sorted(set(rows.pathway) - set(LAYER_PATHWAYS))) if p in set(rows.pathway)]
    values = rows.pivot_table(index="layers", columns="pathway", values="drop", aggfunc="first", dropna=False)
    order = rows.drop_duplicates("layers").sort_values("layer").layers
    values = values.reindex(index=order, columns=pathways)
    labels = values.map(lambda v: "" if pd.isna(v) else f"{v:+.3f}")
    null = rows[rows.null_by_construction].set_index(["layers", "pathway"])
    for layer, pathway in null.index:
        labels.loc[layer, pathway] = NULL_MARK
    return values, labels


def plotly_heatmap(table: pd.DataFrame):
    import plotly.graph_objects as go

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
        above, below = _errors(rows, "estimate", "ci_low", "ci_high")
        figure.add_trace(go.Scatter(x=rows.estimate, y=rows.method + " [" + rows.layers + "]", mode="markers",
                                    marker=dict(size=9, color=colour(0)), showlegend=False,
                                    error_x=dict(type="data", array=above, arrayminus=below),
                                    text=rows.definition, hovertemplate="%{y}: %{x:+.4f}<br>%{text}<extra></extra>"),
                         **at(i))
        figure.add_vline(x=0, line=dict(color="grey", dash="dot"), **at(i))
        figure.update_xaxes(title_text="cross-modal share", **at(i))
        figure.update_yaxes(autorange="reversed", **at(i))
    return figure


def plotly_compare_layers(table: pd.DataFrame):
    import plotly.graph_objects as go

    groups = panels(table, MODEL_COLUMNS)
    figure, at = _subplots(len(groups), [t for t, _ in groups])
    methods = list(dict.fromkeys(table.method))
    for i, (_, rows) in enumerate(groups):
        for j, method in enumerate(methods):
            line = rows[rows.method == method].sort_values("layer_number")
            above, below = _errors(line, "estimate", "ci_low", "ci_high")
            figure.add_trace(go.Scatter(x=line.layer, y=line.estimate, mode="lines+markers", name=method,
                                        legendgroup=method, showlegend=i == 0, line=dict(color=colour(j)),
                                        error_y=dict(type="data", array=above, arrayminus=below)), **at(i))
        figure.update_xaxes(title_text="layer", **at(i))
        figure.update_yaxes(title_text="cross-modal share", **at(i))
    return figure


def plotly_shift(table: pd.DataFrame):
    import plotly.graph_objects as go

    figure, at = _subplots(1, [""], height=420)
    for j, intervention in enumerate(dict.fromkeys(table.intervention)):
        rows = table[table.intervention == intervention]
        labels = rows.apply(model_label, axis=1) + " " + rows.pathway + " " + rows.layers
        above, below = _errors(rows, "drop", "drop_ci_low", "drop_ci_high")
        figure.add_trace(go.Scatter(x=rows.mmd2, y=rows["drop"], mode="markers", name=intervention,
                                    marker=dict(size=11, color=colour(j)), text=labels,
                                    error_y=dict(type="data", array=above, arrayminus=below),
                                    hovertemplate="%{text}<br>MMD² %{x:.4g}, drop %{y:+.4f}<extra></extra>"))
        figure.add_trace(go.Scatter(x=rows.null_mmd2, y=rows["drop"], mode="markers", name=f"{intervention}: null MMD²",
                                    marker=dict(size=9, symbol="line-ns-open", color=colour(j)), text=labels,
                                    hovertemplate="%{text}<br>null MMD² %{x:.4g}<extra></extra>"))
    figure.update_xaxes(title_text="MMD² of the head's input (intervened vs clean)")
    figure.update_yaxes(title_text="accuracy drop")
    return figure


def plotly_channels(table: pd.DataFrame):
    import plotly.graph_objects as go

    sweeps, seconds = _sweeps(table), _seconds(table)
    cross = (table.measure == "relative_drop").any()
    cols = 2 if cross else 1
    titles = [t for title, _ in sweeps for t in (f"A. {title}: accuracy", f"B. {title}: cross share")[:cols]]
    figure, at = _subplots(len(titles), titles, height=380, wrap=cols,
                           specs=[[{"secondary_y": True}, {}][:cols]] * len(sweeps))
    for i, (_, rows) in enumerate(sweeps):
        a, b = at(i * cols), at(i * cols + 1)
        for j, second in enumerate(seconds):
            line = _channel_series(rows, "accuracy", second)
            above, below = _errors(line, "value", "ci_low", "ci_high")
            figure.add_trace(go.Scatter(x=line.semg_channels, y=line.value, mode="lines+markers", name=_accuracy_name(second),
                                        legendgroup=f"accuracy {second}", showlegend=i == 0, line=dict(color=colour(j)),
                                        error_y=dict(type="data", array=above, arrayminus=below), text=line.modalities,
                                        customdata=np.stack([line.unit, line.n.astype(str)], axis=1),
                                        hovertemplate="%{text}: %{y:.4f}<br>CI over %{customdata[1]} %{customdata[0]}"
                                                      "<extra></extra>"), secondary_y=False, **a)
            gain = _channel_series(rows, "gain", second)
            if not gain.empty:
                above, below = _errors(gain, "value", "ci_low", "ci_high")
                figure.add_trace(go.Scatter(x=gain.semg_channels, y=gain.value, mode="lines+markers",
                                            name=f"gain of + {second} (right axis)", legendgroup=f"gain {second}",
                                            showlegend=i == 0, line=dict(color=_gain_colour(seconds, second), dash="dash"),
                                            marker=dict(symbol="diamond"), text=gain.modalities,
                                            error_y=dict(type="data", array=above, arrayminus=below),
                                            customdata=np.stack([gain.unit, gain.n.astype(str)], axis=1),
                                            hovertemplate="%{text}: %{y:+.4f}<br>CI over %{customdata[1]} %{customdata[0]}"
                                                          "<extra></extra>"), secondary_y=True, **a)
            drop = _channel_series(rows, "relative_drop", second)
            if cross and not drop.empty:
                measured, null = drop[~drop.null_by_construction], drop[drop.null_by_construction]
                above, below = _errors(measured, "value", "ci_low", "ci_high")
                figure.add_trace(go.Scatter(x=measured.semg_channels, y=measured.value, mode="lines+markers",
                                            name=f"cross drop, + {second}", legendgroup=f"cross {second}",
                                            showlegend=i == 0, line=dict(color=colour(j)), marker=dict(symbol="square"),
                                            error_y=dict(type="data", array=above, arrayminus=below),
                                            text=measured.modalities + " [" + measured.layers + "]",
                                            hovertemplate="%{text}: %{y:+.4f}<extra></extra>"), **b)
                if not null.empty:
                    figure.add_trace(go.Scatter(x=null.semg_channels, y=np.zeros(len(null)), mode="markers+text",
                                                text=[NULL_MARK] * len(null), textposition="top center",
                                                marker=dict(symbol="circle-open", size=10, color=colour(j)),
                                                name=f"{NULL_MARK} null by construction", showlegend=False,
                                                hovertext=null.modalities + ": null by construction", hoverinfo="text"), **b)
        ticks = sorted(set(rows.semg_channels))
        for where in (a, b)[:cols]:
            figure.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks], title_text="sEMG channels",
                                **where)
        figure.update_yaxes(title_text="test accuracy", secondary_y=False, **a)
        figure.update_yaxes(title_text="gain (with − without)", secondary_y=True, showgrid=False, tickmode="auto",
                            zeroline=True, zerolinecolor="grey", **a)
        if cross:
            figure.update_yaxes(title_text="relative cross drop (all layers)", rangemode="tozero", zeroline=True, **b)
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
    import plotly.graph_objects as go

    groups = panels(table, MODEL_COLUMNS)
    figure, at = _subplots(len(groups), [t for t, _ in groups],
                           height=120 + 40 * len(table.drop_duplicates(["check", "quantity", "method"])), wrap=1)
    for i, (_, rows) in enumerate(groups):
        labels = rows.check + ": " + rows.quantity + " (" + rows.method + ")"
        for passed, name, marker in ((True, "passed", "#2ca02c"), (False, "failed", "#d62728")):
            part = rows.passed == passed
            above, below = _errors(rows[part], "found", "ci_low", "ci_high")
            figure.add_trace(go.Scatter(x=rows.found[part], y=labels[part], mode="markers", name=f"found ({name})",
                                        legendgroup=name, showlegend=i == 0, marker=dict(size=10, color=marker),
                                        error_x=dict(type="data", array=above, arrayminus=below),
                                        text=rows.planted[part], hovertemplate="found %{x:.4f}; planted: %{text}<extra></extra>"),
                             **at(i))
        planted = pd.to_numeric(rows.planted, errors="coerce")
        figure.add_trace(go.Scatter(x=planted[planted.notna()], y=labels[planted.notna()], mode="markers", name="planted",
                                    legendgroup="planted", showlegend=i == 0,
                                    marker=dict(symbol="x-thin-open", size=14, color="black", line=dict(width=2))), **at(i))
        figure.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=list(labels), **at(i))
        figure.update_xaxes(title_text="value", **at(i))
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


def static_accuracy(table: pd.DataFrame):
    groups = panels(table, ["dataset", "data"])
    figure, axes = _figure(len(groups))
    labels = list(dict.fromkeys(table.configuration + ": " + table.modalities))
    for ax, (title, rows) in zip(axes, groups):
        archs = list(dict.fromkeys(rows.arch))
        width = 0.8 / len(labels)
        for j, label in enumerate(labels):
            bars = rows[rows.configuration + ": " + rows.modalities == label]
            if bars.empty:
                continue
            x = np.array([archs.index(a) for a in bars.arch]) + (j - (len(labels) - 1) / 2) * width
            above, below = _errors(bars, "accuracy", "accuracy_ci_low", "accuracy_ci_high")
            ax.bar(x, bars.accuracy, width, yerr=[below, above], color=colour(j), label=label, capsize=3)
        ax.set_xticks(range(len(archs)), archs)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("test accuracy")
        ax.set_title(title, fontsize=10)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(len(labels), 3), fontsize=8)
    return figure


def static_layer_drop(table: pd.DataFrame):
    groups = panels(table, [*MODEL_COLUMNS, "intervention", "heads"])
    figure, axes = _figure(len(groups))
    pathways = [p for p in LAYER_PATHWAYS if p in set(table.pathway)]
    for ax, (title, rows) in zip(axes, groups):
        for pathway in pathways:
            measured = rows[(rows.pathway == pathway) & ~rows.null_by_construction]
            above, below = _errors(measured, "drop", "drop_ci_low", "drop_ci_high")
            ax.bar(_layer_positions(measured, pathways), measured["drop"], BAR, yerr=[below, above], capsize=2,
                   color=PATHWAY_COLOURS[pathway], label=pathway)
            null = rows[(rows.pathway == pathway) & rows.null_by_construction]
            x = _layer_positions(null, pathways)
            ax.scatter(x, np.zeros(len(null)), s=40, facecolors="none", edgecolors=PATHWAY_COLOURS[pathway])
            for position in x:
                ax.annotate(NULL_MARK, (position, 0), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        layers = sorted(rows.layer.dropna().unique())
        ax.set_xticks(layers, [f"L{int(v)}" for v in layers])
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, -0.05 * (high - low)), high)  # room for the ∅ markers at 0
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_xlabel("layer")
        ax.set_ylabel("accuracy drop")
        ax.set_title(title, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    if table.null_by_construction.any():
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black"))
        labels.append(f"{NULL_MARK} null by construction")
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    return figure


def static_heatmap(table: pd.DataFrame):
    import seaborn as sns

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
        above, below = _errors(rows, "estimate", "ci_low", "ci_high")
        y = np.arange(len(rows))
        ax.errorbar(rows.estimate, y, xerr=[below, above], fmt="o", color=colour(0), capsize=3)
        ax.set_yticks(y, rows.method + " [" + rows.layers + "]", fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel("cross-modal share")
        ax.set_title(title, fontsize=10)
    return figure


def static_compare_layers(table: pd.DataFrame):
    groups = panels(table, MODEL_COLUMNS)
    figure, axes = _figure(len(groups))
    for ax, (title, rows) in zip(axes, groups):
        for j, method in enumerate(dict.fromkeys(table.method)):
            line = rows[rows.method == method].sort_values("layer_number")
            above, below = _errors(line, "estimate", "ci_low", "ci_high")
            ax.errorbar(line.layer, line.estimate, yerr=[below, above], marker="o", color=colour(j), label=method,
                        capsize=2, linewidth=1)
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_xlabel("layer")
        ax.set_ylabel("cross-modal share")
        ax.set_title(title, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    return figure


def static_shift(table: pd.DataFrame):
    figure, (ax, *_) = _figure(1, width=6.0, height=4.2)
    for j, intervention in enumerate(dict.fromkeys(table.intervention)):
        rows = table[table.intervention == intervention]
        above, below = _errors(rows, "drop", "drop_ci_low", "drop_ci_high")
        ax.errorbar(rows.mmd2, rows["drop"], yerr=[below, above], fmt="o", color=colour(j), label=intervention, capsize=3)
        ax.scatter(rows.null_mmd2, rows["drop"], marker="|", s=120, color=colour(j), label=f"{intervention}: null MMD²")
    ax.set_xlabel("MMD² of the head's input (intervened vs clean)")
    ax.set_ylabel("accuracy drop")
    ax.legend(fontsize=8)
    return figure


def static_channels(table: pd.DataFrame):
    sweeps, seconds = _sweeps(table), _seconds(table)
    cross = (table.measure == "relative_drop").any()
    cols = 2 if cross else 1
    figure, axes = _figure(len(sweeps) * cols, width=5.5, height=3.8, wrap=cols)
    handles: dict = {}
    for i, (title, rows) in enumerate(sweeps):
        a = axes[i * cols]
        right = a.twinx()
        for j, second in enumerate(seconds):
            line = _channel_series(rows, "accuracy", second)
            above, below = _errors(line, "value", "ci_low", "ci_high")
            handles.setdefault(_accuracy_name(second), a.errorbar(
                line.semg_channels, line.value, yerr=[below, above], marker="o", color=colour(j), capsize=3))
            gain = _channel_series(rows, "gain", second)
            if not gain.empty:
                above, below = _errors(gain, "value", "ci_low", "ci_high")
                handles.setdefault(f"gain of + {second} (right axis)", right.errorbar(
                    gain.semg_channels, gain.value, yerr=[below, above], marker="D", linestyle="--",
                    color=_gain_colour(seconds, second), capsize=3))
            if cross:
                drop = _channel_series(rows, "relative_drop", second)
                measured, null = drop[~drop.null_by_construction], drop[drop.null_by_construction]
                if not measured.empty:
                    above, below = _errors(measured, "value", "ci_low", "ci_high")
                    handles.setdefault(f"cross drop, + {second}", axes[i * cols + 1].errorbar(
                        measured.semg_channels, measured.value, yerr=[below, above], marker="s", color=colour(j),
                        capsize=3))
                for x in null.semg_channels:
                    axes[i * cols + 1].scatter([x], [0], s=40, facecolors="none", edgecolors=colour(j))
                    axes[i * cols + 1].annotate(NULL_MARK, (x, 0), textcoords="offset points", xytext=(0, 6), ha="center",
                                                fontsize=8)
                if not null.empty:
                    from matplotlib.lines import Line2D

                    handles.setdefault(f"{NULL_MARK} null by construction", Line2D(
                        [], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black"))
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
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 3),
                  fontsize=8)
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
    groups = panels(table, MODEL_COLUMNS)
    figure, axes = _figure(len(groups), width=8.0, height=0.8 + 0.4 * len(table.drop_duplicates(["check", "quantity", "method"])),
                           wrap=1)
    for ax, (title, rows) in zip(axes, groups):
        labels = rows.check + ": " + rows.quantity + " (" + rows.method + ")"
        y = np.arange(len(rows))
        above, below = _errors(rows, "found", "ci_low", "ci_high")
        colours = np.where(rows.passed, "#2ca02c", "#d62728")
        for k in range(len(rows)):
            ax.errorbar(rows.found.iloc[k], y[k], xerr=[[below[k]], [above[k]]], fmt="o", color=colours[k], capsize=3)
        planted = pd.to_numeric(rows.planted, errors="coerce").to_numpy(float)
        ax.scatter(planted, y, marker="x", color="black", label="planted", zorder=3)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("value (green: passed, red: failed)")
        ax.set_title(title, fontsize=10)
    return figure


PLOTLY = {"accuracy": plotly_accuracy, "channels": plotly_channels, "layer_drop": plotly_layer_drop, "layer_heatmap": plotly_heatmap,
          "compare": plotly_compare, "compare_layers": plotly_compare_layers, "shift_vs_drop": plotly_shift,
          "curves": plotly_curves, "confusion": plotly_confusion, "planted": plotly_planted}
STATIC = {"accuracy": static_accuracy, "channels": static_channels, "layer_drop": static_layer_drop, "layer_heatmap": static_heatmap,
          "compare": static_compare, "compare_layers": static_compare_layers, "shift_vs_drop": static_shift,
          "curves": static_curves, "confusion": static_confusion, "planted": static_planted}
