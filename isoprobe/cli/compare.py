"""`isoprobe compare CHECKPOINT`: the cross-modal share by every method, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import BatchOption, BootstrapOption, DataOption, DeviceOption, SplitOption, console, made_by, user_errors


def compare(
    checkpoint: Annotated[Path, typer.Argument(help="An isoprobe checkpoint.pt (mmt or hierarchical).")],
    layers: Annotated[str, typer.Option(help="Shared layers, 1-based: 1-5, 2,4 or all.")] = "all",
    baseline: Annotated[str, typer.Option(help="Interaction index: what replaces an absent modality (zero, mean or donor).")] = "zero",
    steps: Annotated[int, typer.Option(help="Attention attribution: points of the path integral.")] = 20,
    draws: Annotated[int, typer.Option(help="Resample ablation: donor draws.")] = 1,
    bootstrap: BootstrapOption = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the donors and the bootstrap.")] = 0,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: BatchOption = 256,
    out: Annotated[Optional[Path], typer.Option(help="Write compare.csv, compare-layers.csv, compare-agreement.csv (and .json, .md) here.")] = None,
) -> None:
    """How much of the decision runs through direct cross-modal attention, by IsoNet masking, mean and
    resample ablation, attribution patching, attention attribution, pathway Shapley values and the
    modality interaction index; per layer with the methods' rank agreement. The README says how to
    read disagreements."""
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from isoprobe.analysis import load_analysis
    from isoprobe.attribution.compare import CompareConfig, compare as run
    from isoprobe.engine.grid import InterventionEngine
    from isoprobe.engine.pathways import parse_layers

    with user_errors(compare):
        config = CompareConfig(layers=layers, baseline=baseline, steps=steps, draws=draws, batch_size=batch_size,
                               bootstrap=bootstrap, seed=seed)
        analysis = load_analysis(checkpoint, data, split, device, needs_attention=True)
        parse_layers(layers, InterventionEngine(analysis.model).n_layers)  # before the data are read
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("comparing methods", total=None)
            result = run(analysis.model, analysis.windows, config, reference=analysis.reference, device=device,
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"[bold]{escape(str(checkpoint))}[/] — the cross-modal share on the {split} split "
                  f"({len(analysis.windows)} windows); 95% cluster-bootstrap CIs over segments")
    summary = Table(box=None, pad_edge=False, collapse_padding=True)
    for column in ("method", "layers", "estimate", "95% CI"):
        summary.add_column(column, justify="right" if column in ("estimate", "95% CI") else "left", no_wrap=True)
    for row in result.table.itertuples():
        summary.add_row(row.method, row.layers, f"{row.estimate:+.1%}", f"[{row.ci_low:+.1%}, {row.ci_high:+.1%}]")
    console.print(summary)
    for row in result.table.itertuples():
        console.print(f"  {row.method}: {row.definition}", style="dim", highlight=False)
    shifted = result.table[result.table.shift_mmd2.notna()]
    if len(shifted):
        moved = Table("ablation", "drop", "cosine", "MMD²", "p", "null 95%", box=None, pad_edge=False, collapse_padding=True,
                      title="how far each moved the representation the head reads (same layers)", title_justify="left")
        for row in shifted.itertuples():
            moved.add_row(_short(row.method), f"{row.estimate:+.1%}", f"{row.shift_cosine:.3f}", f"{row.shift_mmd2:+.4f}",
                          f"{row.shift_p:.2g}", f"{row.shift_null95:+.4f}")
        console.print(moved)
    if len(result.per_layer):
        grid = result.per_layer.pivot(index="layer", columns="method", values="estimate")
        grid = grid[[m for m in dict.fromkeys(result.per_layer.method)]]
        shown = Table("layer", *[_short(m) for m in grid.columns], box=None, pad_edge=False, collapse_padding=True,
                      title="per layer (each layer alone)", title_justify="left")
        for layer, values in grid.iterrows():
            shown.add_row(layer, *[f"{v:+.1%}" for v in values])
        console.print(shown)
        methods = list(grid.columns)
        rho = {(r.method, r.against): r.spearman for r in result.agreement.itertuples()}
        matrix = Table("ρ", *[_short(m) for m in methods[1:]], box=None, pad_edge=False, collapse_padding=True,
                       title="rank agreement across layers (Spearman ρ)", title_justify="left")
        for i, first in enumerate(methods[:-1]):
            cells = ["" if j <= i else _rho(rho.get((first, second), float("nan")))
                     for j, second in enumerate(methods[1:], start=1)]
            matrix.add_row(_short(first), *cells)
        console.print(matrix)
        console.print("—: a method constant across these layers (no ranking)", style="dim")
    if out is not None:
        with user_errors(compare):
            from isoprobe.reports.tables import write_table

            meta = {"checkpoint": str(checkpoint), "split": split, **config.to_dict(),
                    "provenance": made_by(analysis, seeds={"seed": seed})}
            write_table(out, "compare", result.table, meta=meta)
            write_table(out, "compare-layers", result.per_layer, meta=meta)
            write_table(out, "compare-agreement", result.agreement, meta=meta)
        console.print(f"written to {out}/compare.csv, compare-layers.csv, compare-agreement.csv (and .json, .md)")


SHORT = {"mask (IsoNet)": "mask", "mean ablation": "mean", "resample ablation": "resample", "mask, logit margin": "margin",
         "attribution patching": "patching", "attention attribution": "attention"}


def _rho(value: float) -> str:
    return "—" if value != value else f"{value:+.2f}"  # NaN: a method constant across the layers


def _short(method: str) -> str:
    return SHORT.get(method, method)
