"""`isoprobe sanity CHECKPOINT`: does each attribution survive randomising the model (Adebayo et al. 2018)?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from isoprobe.cli.common import (
    BootstrapOption,
    OptionalCheckpointArgument, ModelOption,
    DataOption,
    DeviceOption,
    SeedOption,
    SplitOption,
    console,
    run_analysis,
    user_errors,
    write_result, source,
)


def sanity(
    checkpoint: OptionalCheckpointArgument = None,
    methods: Annotated[str | None, typer.Option(help="Which registered methods to check, comma-separated (ig, "
                                                        "layer-ig, attention, attribution-patching, mask); default all.")] = None,
    windows: Annotated[int, typer.Option(help="Windows the checks run on: a subsample fixed by the seed and the "
                                              "windows' keys.")] = 32,
    steps: Annotated[int, typer.Option(help="Integration steps of ig, layer-ig and attention.")] = 8,
    baseline: Annotated[str, typer.Option(help="ig, layer-ig: zero or mean (the training split's mean window).")] = "zero",
    pathways: Annotated[str, typer.Option(help="Pathways that attribution-patching and mask switch off, in each layer "
                                               "and in all layers.")] = "uni,cross,relay,readout",
    threshold: Annotated[float, typer.Option(help="Flag a method whose Spearman similarity to the trained model's "
                                                  "output is still above this once every weight is randomised.")] = 0.5,
    bootstrap: BootstrapOption = 200,
    seed: SeedOption = 0,
    model: ModelOption = None,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: Annotated[int, typer.Option(help="Windows per batch (no number depends on it).")] = 16,
    out: Annotated[Path | None, typer.Option(help="Write sanity.csv, .json and .md here.")] = None,
) -> None:
    """Cascading weight randomisation from the head down to the embeddings, and a random target class:
    at each step the Spearman rank similarity of every method's output to the trained model's, with a
    95% cluster-bootstrap CI over segments. A method still similar once the whole model is random is
    flagged: it explains the input, not the model."""
    from rich.markup import escape

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.attribution.sanity import SANITY_METHODS, SanityConfig
    from isoprobe.attribution.sanity import sanity as run

    with user_errors(sanity):
        config = SanityConfig(methods=methods or (), windows=windows, steps=steps, baseline=baseline, pathways=pathways,
                              threshold=threshold, batch_size=batch_size, bootstrap=bootstrap, seed=seed)
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device)
        result = run_analysis("randomising the model", run, analysis, config, device)
    table = result.table
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — sanity checks on the {split} split "
                  f"({table.windows.iloc[0]} of {len(analysis.windows)} windows, {table.segments.iloc[0]} segments)")
    console.print(terminal_table(table))
    for row in table[table.step == "not applicable"].itertuples():
        console.print(f"{escape(row.method)}: not applicable — {escape(row.note)}", style="dim")
    flagged = result.flagged
    if flagged:
        console.print(f"[bold red]flagged[/] (Spearman > {threshold:g} after randomising every weight): "
                      f"{escape(', '.join(flagged))}")
    console.print("Spearman ρ of each method's output against the trained model's, cumulatively randomised from the "
                  "head down (each column adds one stage); random target: the trained model explaining another class. "
                  "Cells: " + "; ".join(f"{name} — {SANITY_METHODS[name].describes}" for name in config.methods
                                        if SANITY_METHODS[name].describes), style="dim")
    write_result(sanity, result, out, analysis, seed, **source(checkpoint, model), split=split)


def terminal_table(table):
    """One line per method, one column per cascade step and the random target: Spearman ρ, flagged
    methods in red."""
    from rich.markup import escape
    from rich.table import Table

    checked = table[table.step != "not applicable"]
    steps = list(dict.fromkeys(checked.step))
    shown = Table(box=None, pad_edge=False, collapse_padding=True)
    shown.add_column("method", justify="left", no_wrap=True)
    for step in steps:
        shown.add_column(step, justify="right", no_wrap=True)
    for method, rows in checked.groupby("method", sort=False):
        value = dict(zip(rows.step, rows.spearman))
        flagged = any(f is True for f in rows.flagged)
        name = f"[bold red]{escape(method)} ⚑[/]" if flagged else escape(method)
        shown.add_row(name, *("" if step not in value else "n/a" if value[step] != value[step] else f"{value[step]:+.2f}"
                              for step in steps))
    return shown
