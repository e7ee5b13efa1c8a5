"""`isoprobe ablate CHECKPOINT --layers 1-5 --pathway cross`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import console, user_errors


def ablate(
    checkpoint: Annotated[Path, typer.Argument(help="An isoprobe checkpoint.pt (mmt or hierarchical).")],
    layers: Annotated[str, typer.Option(help="Shared layers, 1-based as the paper counts: 1-5, 2,4 or all.")] = "all",
    pathway: Annotated[str, typer.Option(help="uni, cross, cls, all, a directed pair like emg->acc; comma-separated for several rows.")] = "cross",
    heads: Annotated[str, typer.Option(help="all, or head numbers (0-based) like 0,2.")] = "all",
    intervention: Annotated[str, typer.Option(help="mask (logits to −inf), mean (pathway contribution → its reference mean) or resample (→ another window's).")] = "mask",
    mode: Annotated[str, typer.Option(help="single (each layer alone, then all together), cumulative or joint.")] = "single",
    mask_self: Annotated[bool, typer.Option(help="Also mask self edges (a token attending to itself).")] = False,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CI of the accuracy drop.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed for the bootstrap and resampling.")] = 0,
    data: Annotated[Optional[Path], typer.Option(help="Data folder (default: the one recorded in the checkpoint).")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate (default: the checkpoint's test repetitions).")] = "test",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Windows per batch.")] = 512,
    out: Annotated[Optional[Path], typer.Option(help="Write ablation.csv, ablation.json and ablation.md here.")] = None,
) -> None:
    """IsoNet pathway interventions: one row per condition with accuracy drop, bootstrap CI, paired
    test, logit margin and KL. Columns are defined in the README."""
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from isoprobe.engine.ablate import AblationConfig, conditions_for, run_ablation
    from isoprobe.engine.grid import InterventionEngine
    from isoprobe.engine.interventions import check_intervention
    from isoprobe.errors import ConfigError
    from isoprobe.training.checkpoint import load_checkpoint
    from isoprobe.training.run import check_device, check_split, checkpoint_data

    with user_errors():
        check_intervention(intervention)
        check_split(split)
        check_device(device)
        loaded = load_checkpoint(checkpoint)
        if loaded.model_config.arch == "mlp":
            raise ConfigError("checkpoint", str(checkpoint), "is a multimodal MLP, which has no attention to intervene on; "
                              "ablate needs an mmt or hierarchical checkpoint")
        model = loaded.build_model()
        config = AblationConfig(layers, pathway, heads, intervention, mode, bootstrap, seed, batch_size, mask_self)
        conditions_for(InterventionEngine(model, mask_self=mask_self), config)  # fail fast, before the data are read
        prepared = checkpoint_data(loaded, data)
        windows = prepared.splits[split]
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("intervening", total=None)
            table = run_ablation(model, windows.x, windows.y, config, reference=prepared.splits["train"].x, device=device,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
    # One line per condition at 80 columns: the base accuracy, the same for every row, goes in the
    # title, and the heads column only appears when heads were chosen.
    base = table.base_accuracy.iloc[0] if len(table) else float("nan")
    show_heads = (table.heads != "all").any()
    # The title on its own line: as the table's title it would wrap at the table's width.
    console.print(f"[bold]{escape(str(checkpoint))}[/] — {intervention} on the {split} split "
                  f"(n = {len(windows)}, base accuracy {base:.3f})")
    shown = Table(box=None, pad_edge=False, collapse_padding=True)
    shown.add_column("layers", no_wrap=True)
    shown.add_column("pathway")  # the one column that may wrap (long comma-combinations)
    if show_heads:
        shown.add_column("heads", no_wrap=True)
    for column in ("acc.", "drop", "95% CI", "rel.", "p", "Δ margin", "KL"):
        shown.add_column(column, justify="right", no_wrap=True)
    for row in table.itertuples():
        shown.add_row(row.layers, row.pathway, *((row.heads,) if show_heads else ()), f"{row.accuracy:.3f}",
                      f"{row.drop:+.3f}", f"[{row.drop_ci_low:+.3f}, {row.drop_ci_high:+.3f}]", f"{row.relative_drop:+.1%}",
                      f"{row.p_value:.2g}", f"{row.logit_margin_change:+.2f}", f"{row.kl:.3f}")
    console.print(shown)
    if out is not None:
        with user_errors():
            from isoprobe.reports.tables import write_table

            write_table(out, "ablation", table, meta={"checkpoint": str(checkpoint), "split": split, **config.__dict__})
        console.print(f"written to {out}/ablation.csv, .json, .md")
