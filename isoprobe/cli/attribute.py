"""`isoprobe attribute CHECKPOINT --method NAME`: the methods of isoprobe.attribution.methods."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.attribution.methods import ATTRIBUTIONS
from isoprobe.cli.common import (OptionalCheckpointArgument, ModelOption, BootstrapOption, DataOption, DeviceOption, SeedOption, SplitOption,
                                 console, run_analysis, source, user_errors, write_result)

METHOD_HELP = "; ".join(f"{m.name} ({m.attributes_to})" for m in ATTRIBUTIONS.values())


def attribute(
    checkpoint: OptionalCheckpointArgument = None,
    method: Annotated[str, typer.Option(help=f"What to attribute with: {METHOD_HELP}.")] = "ig",
    target: Annotated[str, typer.Option(help="Explain the true class's logit or the predicted one's: true or predicted.")] = "true",
    baseline: Annotated[Optional[str], typer.Option(help="ig, layer-ig: zero or mean (the training split's mean window).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Points of the path integral (default: 50 for ig/layer-ig, 20 for attention).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="attention: shared layers, 1-based: 1-5, 2,4 or all.")] = None,
    bootstrap: BootstrapOption = 1000,
    seed: SeedOption = 0,
    model: ModelOption = None,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: Annotated[Optional[int], typer.Option(help="Windows per batch (default: the method's).")] = None,
    internal_batch_size: Annotated[Optional[int], typer.Option(help="Model evaluations per pass (bounds memory; default: the method's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write attribution.csv, .json and .md here.")] = None,
) -> None:
    """Attributions per modality (integrated gradients) or per attention pathway and layer (attention
    attribution), each a mean over windows with a 95% cluster-bootstrap CI over segments."""
    from rich.markup import escape

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.errors import ConfigError

    with user_errors(attribute):
        if method not in ATTRIBUTIONS:
            raise ConfigError("method", method, f"choose one of {', '.join(ATTRIBUTIONS)}")
        chosen = ATTRIBUTIONS[method]
        given = {"target": target, "bootstrap": bootstrap, "seed": seed, "steps": steps, "batch_size": batch_size,
                 "internal_batch_size": internal_batch_size, "baseline": baseline, "layers": layers}
        options = {name: value for name, value in given.items() if value is not None}
        for name in sorted(set(options) - chosen.options()):
            takes = [m.name for m in ATTRIBUTIONS.values() if name in m.options()]
            raise ConfigError(name, options[name], f"{method} takes no {name}; {', '.join(takes) or 'no method'} does")
        options_class, run = chosen.load()
        config = options_class(**chosen.fixed, **options)
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device, needs_attention=chosen.needs_attention)
        result = run_analysis(f"attributing ({method})", run, analysis, config, device)
        metrics = None
        if method == "ig":  # captum's infidelity and max-sensitivity of the input attributions
            from isoprobe.attribution.ig_metrics import IGMetricsResult, ig_metrics

            metrics = IGMetricsResult(config, ig_metrics(analysis.model, analysis.windows, config, analysis.reference,
                                                         device))
    table = result.table
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — {method} on the {split} split ({len(analysis.windows)} windows in "
                  f"{table.segments.max()} segments), explaining the {target} class's logit")
    console.print(terminal_table(table))
    console.print(completeness_line(table), style="dim")
    if metrics is not None:
        console.print(metrics_line(metrics.table), style="dim")
    write_result(attribute, result, out, analysis, seed, **source(checkpoint, model), split=split)
    if metrics is not None:
        write_result(attribute, metrics, out, analysis, seed, **source(checkpoint, model), split=split)


def metrics_line(metrics) -> str:
    """IG's infidelity and max-sensitivity (Yeh et al. 2019), each with its 95% CI over segments."""
    numbers = "; ".join(f"{row.metric} {row.estimate:.3g} [{row.ci_low:.3g}, {row.ci_high:.3g}]"
                        for row in metrics.itertuples())
    return (f"ig metrics: {numbers} ({metrics.windows.iloc[0]} windows, {metrics.perturbations.iloc[0]} perturbations "
            "each; infidelity in squared logits, sensitivity relative to the attribution's norm)")


def terminal_table(table):
    """One line per (site, part): its share of absolute attribution and its signed sum, with CIs."""
    from rich.table import Table

    shown = Table(box=None, pad_edge=False, collapse_padding=True)
    for column in ("site", "part", "share", "95% CI", "sum", "95% CI "):
        shown.add_column(column, justify="left" if column in ("site", "part") else "right", no_wrap=True)
    parts = table[table.part != "all"]
    for (site, part), rows in parts.groupby(["site", "part"], sort=False):
        value = {row.quantity: row for row in rows.itertuples()}
        cells = []
        for quantity, fmt in (("share", "{:.1%}"), ("sum", "{:+.3f}")):
            row = value.get(quantity)
            cells += ([fmt.format(row.estimate), f"[{fmt.format(row.ci_low)}, {fmt.format(row.ci_high)}]"] if row is not None
                      else ["", ""])
        shown.add_row(site, part, *cells)
    return shown


def completeness_line(table) -> str:
    """How well the attributions add up (completeness): the mean |δ| per site, and where given, |δ|
    relative to the explained logit difference."""
    totals = table[(table.part == "all") & table.quantity.isin(["abs_delta", "relative_delta"])]
    if totals.empty:
        return ""
    pieces = []
    for site, rows in totals.groupby("site", sort=False):
        value = dict(zip(rows.quantity, rows.estimate))
        relative = f" ({value['relative_delta']:.1e} of |f(x) − f(baseline)|)" if "relative_delta" in value else ""
        pieces.append(f"{site} {value.get('abs_delta', float('nan')):.1e}{relative}")
    return "completeness: mean |δ| (attributions against the logit difference) " + "; ".join(pieces)
