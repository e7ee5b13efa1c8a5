"""`isoprobe report DIR`: a study's tables as one offline report folder, DIR/report/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from isoprobe.cli.common import console, user_errors


def report(
    folder: Annotated[Path, typer.Argument(help="A study folder: tables/*.csv and, optionally, study.json "
                                                "(as `isoprobe study` writes them).")],
    subject_bootstrap: Annotated[int, typer.Option(help="Resamples of the bootstrap over subjects (or over the seeds "
                                                        "of one subject) for the CIs across runs.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of that bootstrap.")] = 0,
    runs_shown: Annotated[int, typer.Option(help="Training curves and confusion matrices: how many runs to draw "
                                                 "(the first ones in the tables).")] = 4,
) -> None:
    """Write FOLDER/report/: index.html (interactive, works offline), figures as PNG and SVG, the numbers
    of every figure as CSV and Markdown, and report.json holding every number shown."""
    from rich.markup import escape

    from isoprobe.reports.html import ReportConfig, write_report

    with user_errors(report):
        target = write_report(folder, ReportConfig(subject_bootstrap=subject_bootstrap, seed=seed, runs_shown=runs_shown))
    import json

    document = json.loads((target / "report.json").read_text(encoding="utf-8"))
    console.print(f"[bold]{escape(str(target / 'index.html'))}[/]: {len(document['figures'])} figures from "
                  f"{document['runs']} runs")
    for note in document["left_out"]:
        console.print(f"  {escape(note['figure'])} left out: {escape(note['reason'])}", style="dim")
