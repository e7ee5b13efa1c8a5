"""`isoprobe shift CHECKPOINT --layers 1-5 --pathway cross --intervention mask,mean,resample`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import (OptionalCheckpointArgument, ModelOption, BatchOption, BootstrapOption, DataOption, DeviceOption,
                                 DonorOption, HeadsOption, LayersOption, SeedOption, SplitOption, console, run_analysis, source,
                                 user_errors, write_result)


def shift(
    checkpoint: OptionalCheckpointArgument = None,
    layers: LayersOption = "all",
    pathway: Annotated[str, typer.Option(help="The pathway, as ablate takes it (cross, cls, cross+relay, emg->acc, …); "
                                              "a comma makes one condition each.")] = "cross",
    heads: HeadsOption = "all",
    intervention: Annotated[str, typer.Option(help="mask, mean or resample; comma-separated to set them side by side.")] = "mask,mean,resample",
    mode: Annotated[str, typer.Option(help="joint (all listed layers together), single or cumulative, as ablate.")] = "joint",
    donor: DonorOption = "any",
    permutations: Annotated[int, typer.Option(help="Random swap patterns of the MMD permutation test.")] = 1000,
    max_windows: Annotated[int, typer.Option(help="At most this many windows enter the MMD (a seeded subsample; the "
                                                  "kernel matrix grows with its square).")] = 1000,
    bootstrap: BootstrapOption = 1000,
    seed: SeedOption = 0,
    model: ModelOption = None,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: BatchOption = 256,
    out: Annotated[Optional[Path], typer.Option(help="Write shift.csv, .json and .md here.")] = None,
) -> None:
    """How far an intervention moves representations off the clean ones, at each layer from the first
    intervened one and at the representation the head reads: cosine similarity (with a segment CI)
    and the paired unbiased MMD² with a permutation p-value, beside the 95th percentile of its permutation null."""
    from rich.markup import escape
    from rich.table import Table

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.diagnostics.shift import ShiftConfig, plan_shift
    from isoprobe.diagnostics.shift import shift as run

    with user_errors(shift):
        config = ShiftConfig(layers=layers, pathway=pathway, heads=heads, interventions=intervention, mode=mode, donor=donor,
                             permutations=permutations, max_windows=max_windows, bootstrap=bootstrap, seed=seed,
                             batch_size=batch_size)
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device, needs_attention=True)
        plan = plan_shift(analysis.model, config)  # before the data are read
        result = run_analysis("intervening and measuring", run, analysis, config, device, plan=plan)
    table = result.table
    several = table.pathway.nunique() > 1
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — representation shift"
                  + ("" if several else f" under {escape(table.pathway.iloc[0])}") + f" on the {split} split "
                  f"({len(analysis.windows)} windows; MMD on {table.mmd_windows.iloc[0]})")
    shown = Table(box=None, pad_edge=False, collapse_padding=True)
    columns = ("int.", "layers", *(("pathway",) if several else ()), "site", "acc.", "cosine", "95% CI", "MMD²", "p", "null 95%")
    for column in columns:
        shown.add_column(column, justify="left" if column in ("int.", "layers", "pathway", "site") else "right", no_wrap=True)
    for row in table.itertuples():
        shown.add_row(row.intervention, row.layers, *((row.pathway,) if several else ()), row.site, f"{row.accuracy:.3f}",
                      f"{row.cosine:.3f}",
                      f"[{row.cosine_ci_low:.3f}, {row.cosine_ci_high:.3f}]", f"{row.mmd2:+.4f}", f"{row.p_value:.2g}",
                      f"{row.mmd2_null95:+.4f}")
    console.print(shown)
    console.print("cosine: intervened against clean, per window (95% cluster-bootstrap CI over segments); MMD²: paired "
                  "unbiased (each window's own clean–intervened term left out), RBF kernel at the median-heuristic "
                  "bandwidth, p from swapping clean and intervened by segment; null 95%: the 95th percentile of those "
                  "swaps' MMD², its size when nothing moved. Its expectation is 0 when nothing moved, so a small negative "
                  "value is noise: read it against null 95% and p", style="dim")
    write_result(shift, result, out, analysis, seed, **source(checkpoint, model), split=split)
