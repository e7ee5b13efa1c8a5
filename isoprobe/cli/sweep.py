"""`isoprobe sweep-dropout`: attention dropout rate against clean and masked accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import BootstrapOption, console, made_by, user_errors


def sweep_dropout(
    out: Annotated[Path, typer.Option(help="Folder: one run per pathway and rate (<pathway>/p<rate>/), and dropout.csv, .json, .md.")],
    data: Annotated[Optional[Path], typer.Option(help="Data folder; without it, synthetic data (see --preset).")] = None,
    dataset: Annotated[str, typer.Option(help="ninapro-db2 or hdsemg65.")] = "ninapro-db2",
    subject: Annotated[int, typer.Option(help="Subject number.")] = 1,
    preset: Annotated[str, typer.Option(help="Synthetic data only: redundant, emg-only, acc-only, synergy, mixed.")] = "redundant",
    modalities: Annotated[Optional[str], typer.Option(help="Modality configuration (default: both modalities).")] = None,
    arch: Annotated[str, typer.Option(help="mmt or hierarchical.")] = "hierarchical",
    pathway: Annotated[str, typer.Option(help="Pathway(s) to drop, comma-separated for one sweep each: cross, cls, emg->acc, …")] = "cross",
    rates: Annotated[str, typer.Option(help="Dropout rates, comma-separated, in [0, 1] (1: the pathway removed).")] = "0,0.1,0.3,0.5",
    epochs: Annotated[int, typer.Option(help="Training epochs per run.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed of training and of the bootstrap.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (training); cpu or cuda for the evaluation.")] = "cpu",
    bootstrap: BootstrapOption = 1000,
) -> None:
    """Train one model per dropout rate of each pathway and tabulate clean accuracy and accuracy with
    that pathway masked in every shared layer, against the rate (95% cluster-bootstrap CIs over segments)."""
    from rich.progress import Progress
    from rich.table import Table

    from isoprobe.data.pipeline import DataConfig
    from isoprobe.models.pathways import split_rows
    from isoprobe.training.run import default_modalities, synthetic_root
    from isoprobe.study.sweep import SweepConfig, dropout_sweep, parse_rates, sweep_rows
    from isoprobe.training.trainer import TrainConfig

    with user_errors(sweep_dropout):
        pathways = split_rows(pathway)
        configs = [SweepConfig(pathway=p, rates=parse_rates(rates), arch=arch, bootstrap=bootstrap, seed=seed) for p in pathways]
        train_config = TrainConfig(epochs=epochs, seed=seed, device=device)
        root = data if data is not None else synthetic_root(dataset, preset, seed=0)
        data_config = DataConfig(root=str(root), dataset=dataset, subject=subject, modalities=modalities or default_modalities(dataset))
        results = []
        with Progress(console=console, transient=True) as bar:
            for config in configs:
                task = bar.add_task(f"{config.pathway}: training and evaluating", total=len(config.rates))
                results.append(dropout_sweep(data_config, config, train_config, out / config.pathway.replace(">", ""),
                                             device="cpu" if device == "auto" else device,
                                             progress=lambda done, total, task=task: bar.update(task, completed=done)))
    table = sweep_rows(results)
    shown = Table(box=None, pad_edge=False, collapse_padding=True, title="clean and masked test accuracy against the "
                  "dropout rate (95% cluster-bootstrap CIs over segments)", title_justify="left")
    for column in ("pathway", "rate", "clean", "95% CI", "masked", "95% CI ", "drop", "95% CI  "):
        shown.add_column(column, justify="left" if column == "pathway" else "right", no_wrap=True)
    for row in table.itertuples():
        shown.add_row(row.pathway, f"{row.rate:g}", f"{row.clean_accuracy:.3f}", f"[{row.clean_ci_low:.3f}, {row.clean_ci_high:.3f}]",
                      f"{row.masked_accuracy:.3f}", f"[{row.masked_ci_low:.3f}, {row.masked_ci_high:.3f}]",
                      f"{row.drop:+.3f}", f"[{row.drop_ci_low:+.3f}, {row.drop_ci_high:+.3f}]")
    console.print(shown)
    with user_errors(sweep_dropout):
        from isoprobe.results import write_table

        write_table(out, "dropout", table, meta={"pathways": pathways, "rates": rates, "epochs": epochs, "arch": arch,
                                                 "data": str(root), "seed": seed,
                                                 "provenance": made_by(data=data_config, device=device, seeds={"seed": seed})})
    console.print(f"written to {out}/dropout.csv, .json, .md")
