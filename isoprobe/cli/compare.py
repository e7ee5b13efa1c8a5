"""`isoprobe compare CHECKPOINT`: the cross-modal share by every method, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import (OptionalCheckpointArgument, ModelOption, BatchOption, BootstrapOption, DataOption, DeviceOption,
                                 LayersOption, SeedOption, SplitOption, console, run_analysis, source, user_errors,
                                 write_result)


def compare(
    checkpoint: OptionalCheckpointArgument = None,
    layers: LayersOption = "all",
    baseline: Annotated[str, typer.Option(help="Interaction index: what replaces an absent modality (zero, mean or donor).")] = "zero",
    steps: Annotated[int, typer.Option(help="Attention attribution: points of the path integral.")] = 20,
    draws: Annotated[int, typer.Option(help="Resample ablation: donor draws.")] = 1,
    sanity: Annotated[bool, typer.Option(help="Also randomise the model layer by layer (Adebayo et al.) and flag the "
                                              "methods whose output survives it (isoprobe sanity).")] = False,
    bootstrap: BootstrapOption = 1000,
    seed: SeedOption = 0,
    model: ModelOption = None,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: BatchOption = 256,
    out: Annotated[Optional[Path], typer.Option(help="Write compare.csv and compare-layers.csv (with --sanity also "
                                                     "sanity.csv; and .json, .md) here.")] = None,
) -> None:
    """How much of the decision runs through direct cross-modal attention, by IsoNet masking, mean and
    resample ablation, attribution patching, attention attribution, pathway Shapley values and the
    modality interaction index, each with what it estimates; per layer. The README says which rows are
    comparable and how to read disagreements."""
    from rich.markup import escape
    from rich.table import Table

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.attribution.compare import BLOCKS, CompareConfig
    from isoprobe.attribution.compare import compare as run
    from isoprobe.engine.grid import attention_layers
    from isoprobe.layersets import parse_layers

    with user_errors(compare):
        config = CompareConfig(layers=layers, baseline=baseline, steps=steps, draws=draws, sanity=sanity,
                               batch_size=batch_size, bootstrap=bootstrap, seed=seed)
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device, needs_attention=True)
        parsed = parse_layers(layers, attention_layers(analysis.model))  # before the data are read
        result = run_analysis("comparing methods", run, analysis, config, device, layers=parsed)
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — how much of the decision runs through cross-modal "
                  f"attention, on the {split} split ({len(analysis.windows)} windows); 95% stratified cluster-bootstrap "
                  "CIs over segments. Rows are shares of one thing only within a block.")
    table = result.table
    for block in BLOCKS:
        rows = table[table.block == block]
        if rows.empty:
            continue
        shown = Table(box=None, pad_edge=False, collapse_padding=True, title=block, title_justify="left",
                      title_style="bold")
        for column in ("method", "layers", "estimate", "95% CI"):
            shown.add_column(column, justify="right" if column in ("estimate", "95% CI") else "left", no_wrap=True)
        for row in rows.itertuples():
            shown.add_row(row.method, row.layers, _number(row.estimate, row.method),
                          f"[{_number(row.ci_low, row.method)}, {_number(row.ci_high, row.method)}]")
        console.print(shown)
        for row in rows.drop_duplicates("method").itertuples():
            console.print(f"  {row.method}: {row.estimand}", style="dim", highlight=False)
    caveats = table.caveat.dropna()
    caveats = caveats[caveats != ""]
    if len(caveats):
        console.print(f"few segments — {caveats.iloc[0]}", style="yellow")
    shifted = table[table.shift_mmd2.notna()]
    if len(shifted):
        moved = Table("ablation", "drop", "cosine", "MMD²", "p", "null 95%", box=None, pad_edge=False, collapse_padding=True,
                      title="how far each moved the representation the head reads (same layers)", title_justify="left")
        for row in shifted.itertuples():
            moved.add_row(_short(row.method), f"{row.estimate:+.1%}", f"{row.shift_cosine:.3f}", f"{row.shift_mmd2:+.4f}",
                          f"{row.shift_p:.2g}", f"{row.shift_null95:+.4f}")
        console.print(moved)
    checked = table[table.sanity_spearman.notna()].drop_duplicates("method")
    if len(checked):
        lines = [f"{'[red]FLAGGED[/] ' if row.sanity_flagged else ''}{escape(row.method)}: ρ = {row.sanity_spearman:+.2f}"
                 for row in checked.itertuples()]
        console.print("sanity (rank similarity to the trained model's output after randomising every weight; flagged "
                      "above 0.5: it explains the input, not the model): " + "; ".join(lines), highlight=False)
    if len(result.per_layer):
        grid = result.per_layer.pivot(index="layer", columns="method", values="estimate")
        grid = grid[[m for m in dict.fromkeys(result.per_layer.method)]]
        null = result.per_layer.set_index(["layer", "method"]).null_by_construction
        shown = Table("layer", *[_short(m) for m in grid.columns], box=None, pad_edge=False, collapse_padding=True,
                      title="per layer (each layer alone)", title_justify="left")
        for layer, values in grid.iterrows():
            shown.add_row(layer, *["∅" if null.get((layer, m), False) else _number(v, m) for m, v in values.items()])
        console.print(shown)
        console.print("∅: null by construction (cross in that layer cannot change the prediction); attention: a "
                      "related quantity, not a share of accuracy or margin", style="dim")
    write_result(compare, result, out, analysis, seed, **source(checkpoint, model), split=split)


def _number(value: float, method: str) -> str:
    """Shares as percentages; the interaction index in accuracy points."""
    if value != value:
        return "—"
    return f"{value:+.3f}" if method.startswith("interaction") else f"{value:+.1%}"


def _short(method: str) -> str:
    from isoprobe.attribution.compare import METHODS

    return METHODS[method].short if method in METHODS else method
