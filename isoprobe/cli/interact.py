"""`isoprobe interact CHECKPOINT`: the modality interaction index and Shapley values of modalities
and of attention pathways."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import (OptionalCheckpointArgument, ModelOption, BatchOption, BootstrapOption, DataOption, DeviceOption, SeedOption,
                                 SplitOption, console, run_analysis, user_errors, write_result, source)


def interact(
    checkpoint: OptionalCheckpointArgument = None,
    games: Annotated[str, typer.Option(help="modality (players: the modalities), pathway (players: per-modality uni, "
                                            "cross, relay, readout, masked in all layers) or both, comma-separated.")] = "modality,pathway",
    baseline: Annotated[str, typer.Option(help="What replaces an absent modality: zero, mean (the training split's mean "
                                               "window) or donor (the same modality of a window of another class).")] = "zero",
    target: Annotated[str, typer.Option(help="Score the true class or the predicted one: true or predicted.")] = "true",
    bootstrap: BootstrapOption = 1000,
    seed: SeedOption = 0,
    model: ModelOption = None,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: BatchOption = 256,
    out: Annotated[Optional[Path], typer.Option(help="Write interaction.csv, .json and .md here.")] = None,
) -> None:
    """Exact cooperative games over all coalitions: v(all), v(none), each player's Shapley value and
    its share of v(all) − v(none), and pairwise Shapley interaction indices (for two modalities the
    interaction index f(both) − f(emg only) − f(acc only) + f(neither)), on accuracy and on the
    target-class logit, each with a 95% cluster-bootstrap CI over segments."""
    from rich.markup import escape

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.attribution.interaction import InteractConfig
    from isoprobe.attribution.interaction import interact as run

    with user_errors(interact):
        config = InteractConfig(baseline=baseline, target=target, games=games, batch_size=batch_size, bootstrap=bootstrap,
                                seed=seed)
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device, needs_attention="pathway" in config.games)
        result = run_analysis("playing the games", run, analysis, config, device)
    table = result.table
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — cooperative games on the {split} split "
                  f"({len(analysis.windows)} windows in {table.segments.max()} segments; absent modalities: {baseline})")
    for shown in terminal_tables(table):
        console.print(shown)
    console.print("v: value of the coalition (accuracy, or the mean target-class logit) with all or none of the players; "
                  "φ: Shapley value; I: pairwise Shapley interaction index (for two modalities f(both) − f(one) − "
                  "f(other) + f(neither)); share: of v(all) − v(none); CIs: 95% cluster bootstrap over segments", style="dim")
    write_result(interact, result, out, analysis, seed, **source(checkpoint, model), split=split)


SYMBOLS = {"value": "v", "shapley": "φ", "interaction": "I"}


def terminal_tables(table):
    """Per game and metric, one line per value (v), Shapley value (φ) and pairwise interaction (I),
    with its share of v(all) − v(none) beside it; at 80 columns."""
    from rich.table import Table

    shares = {(r.method, r.metric, r.quantity.replace(" share", ""), r.part): r
              for r in table.itertuples() if r.quantity.endswith(" share")}

    def cells(row, fmt):
        ci = "" if row.ci_low != row.ci_low else f"[{fmt.format(row.ci_low)}, {fmt.format(row.ci_high)}]"
        return [fmt.format(row.estimate), ci]

    for (method, metric), rows in table.groupby(["method", "metric"], sort=False):
        shown = Table(title=f"{method}, {metric}", title_justify="left", box=None, pad_edge=False, collapse_padding=True)
        for column in ("", "part", "estimate", "95% CI", "share", "95% CI "):
            shown.add_column(column, justify="left" if column in ("", "part") else "right", no_wrap=True)
        for row in rows.itertuples():
            if row.quantity.endswith(" share"):
                continue
            share = shares.get((row.method, row.metric, row.quantity, row.part))
            shown.add_row(SYMBOLS.get(row.quantity, row.quantity), row.part, *cells(row, "{:+.3f}"),
                          *(cells(share, "{:+.1%}") if share is not None else ["", ""]))
        yield shown
