"""`isoprobe emap CHECKPOINT`: the model against its best additive function of the modalities (EMAP,
Hessel & Lee 2020): the accuracy the projection loses is what needs cross-modal interaction."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isoprobe.cli.common import (BootstrapOption, OptionalCheckpointArgument, ModelOption, DataOption, DeviceOption, SeedOption,
                                 SplitOption, console, run_analysis, user_errors, write_result, source)


def emap(
    checkpoint: OptionalCheckpointArgument = None,
    partners: Annotated[str, typer.Option(help="Partner windows per window and modality (sampled EMAP), or exact: "
                                               "every pair of windows.")] = "32",
    exact_below: Annotated[int, typer.Option(help="Evaluate every pair when the split has at most this many "
                                                  "windows.")] = 256,
    bootstrap: BootstrapOption = 1000,
    seed: SeedOption = 0,
    model: ModelOption = None,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: Annotated[int, typer.Option(help="Model evaluations (mixed windows) per forward (no number depends "
                                                 "on it).")] = 512,
    out: Annotated[Optional[Path], typer.Option(help="Write emap.csv, .json and .md here.")] = None,
) -> None:
    """Project the model onto its best additive function of the modalities from model evaluations on
    the split (EMAP): model accuracy, EMAP accuracy and their gap, overall and per class, each with a
    95% cluster-bootstrap CI over segments. A gap near 0 says the decision needs no cross-modal
    interaction by any route."""
    from rich.markup import escape

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.attribution.emap import EmapConfig, check_modalities
    from isoprobe.attribution.emap import emap as run

    with user_errors(emap):
        config = EmapConfig(partners=partners, exact_below=exact_below, batch_size=batch_size, bootstrap=bootstrap,
                            seed=seed)
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device)
        check_modalities(analysis.model)  # before the data are read
        result = run_analysis("projecting onto additive functions", run, analysis, config, device)
    table = result.table
    overall = table[table["class"] == "all"]
    how = "every pair of windows" if overall.exact.iloc[0] else f"{config.partners} partners per window and modality"
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — EMAP on the {split} split ({overall.windows.iloc[0]} windows "
                  f"in {overall.segments.iloc[0]} segments; {how}; modalities {', '.join(analysis.model.modality_names)})")
    console.print(summary_table(overall))
    console.print(class_table(table[table["class"] != "all"], analysis.class_names))
    caveat = overall.caveat.iloc[0]
    console.print("EMAP: the model projected onto additive functions of its modalities (Hessel & Lee 2020); gap: model "
                  "− EMAP accuracy, what needs cross-modal interaction; CIs: 95% cluster bootstrap over segments"
                  + (f"; {caveat}" if caveat else ""), style="dim")
    write_result(emap, result, out, analysis, seed, **source(checkpoint, model), split=split)


SHOWN = {"model accuracy": "model accuracy", "emap accuracy": "EMAP accuracy", "gap": "gap (model − EMAP)"}


def _interval(row, fmt: str) -> str:
    return "" if row.ci_low != row.ci_low else f"[{fmt.format(row.ci_low)}, {fmt.format(row.ci_high)}]"


def summary_table(overall):
    """Model accuracy, EMAP accuracy and the gap, each with its CI."""
    from rich.table import Table

    shown = Table(box=None, pad_edge=False)
    for column in ("", "estimate", "95% CI"):
        shown.add_column(column, justify="left" if not column else "right", no_wrap=True)
    for row in overall.itertuples():
        fmt = "{:+.3f}" if row.quantity == "gap" else "{:.3f}"
        shown.add_row(SHOWN[row.quantity], fmt.format(row.estimate), _interval(row, fmt))
    return shown


def class_table(per_class, class_names):
    """One line per class: windows, segments, model and EMAP accuracy, the gap with its CI."""
    from rich.table import Table

    shown = Table(title="per class", title_justify="left", box=None, pad_edge=False)
    for column in ("class", "windows", "segments", "model", "EMAP", "gap", "95% CI"):
        shown.add_column(column, justify="left" if column == "class" else "right", no_wrap=True)
    for cls, rows in per_class.groupby("class", sort=False):
        row = {r.quantity: r for r in rows.itertuples()}
        gap = row["gap"]
        shown.add_row(class_names[int(cls)] if int(cls) < len(class_names) else str(cls), str(gap.windows),
                      str(gap.segments), f"{row['model accuracy'].estimate:.3f}", f"{row['emap accuracy'].estimate:.3f}",
                      f"{gap.estimate:+.3f}", _interval(gap, "{:+.3f}"))
    return shown
