"""`isoprobe data synth`, `isoprobe data inspect` and `isoprobe data realism`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from isoprobe.cli.common import console, user_errors

app = typer.Typer(help="Generate synthetic data sets and inspect real or synthetic ones.", no_args_is_help=True)

Layout = typer.Option(help="File layout to write: ninapro-db2 (MATLAB v5, sEMG + ACC) or hdsemg65 (MATLAB v7.3, HD-sEMG + force).")


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write into (created if needed).")],
    layout: Annotated[str, Layout] = "ninapro-db2",
    preset: Annotated[str, typer.Option(help="Planted structure: redundant, emg-only, acc-only (force-only), synergy, mixed.")] = "redundant",
    synergy_fraction: Annotated[Optional[float], typer.Option(help="With --preset mixed: fraction of classes that need both modalities.")] = None,
    subjects: Annotated[int, typer.Option(help="Number of subjects.")] = 2,
    gestures: Annotated[Optional[int], typer.Option(help="Gestures per subject (DB2: spread over exercises 1–3; default 9 for DB2, 8 for HD-sEMG).")] = None,
    repetitions: Annotated[Optional[int], typer.Option(help="Repetitions per gesture (default: 6 for DB2, 5 for HD-sEMG).")] = None,
    seconds_per_repetition: Annotated[float, typer.Option(help="Duration of each gesture repetition in seconds.")] = 2.0,
    rest_seconds: Annotated[float, typer.Option(help="Rest between repetitions in seconds.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same arrays.")] = 0,
) -> None:
    """Write synthetic subjects in the real file layout, with planted modality structure and a ground-truth sidecar."""
    from rich.progress import Progress

    from isoprobe.data.synth import SIDECAR, SynthConfig, generate

    with user_errors(synth):
        config = SynthConfig(layout, preset, synergy_fraction, subjects, gestures, repetitions,
                             seconds_per_repetition, rest_seconds, seed)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"synthesising {layout} subjects", total=subjects)
            result = generate(config, out, on_subject=lambda _: progress.advance(task))
    n_files = sum(len(files) for files in result.files.values())
    synergy = result.ground_truth["synergy_classes"]
    console.print(f"wrote {n_files} files for {subjects} subject(s) to [bold]{escape(str(out))}[/] "
                  f"(preset {preset}, {config.n_gestures} gestures, synergy classes: {synergy or 'none'})")
    console.print(f"ground truth: {escape(str(out / SIDECAR))}")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A data folder (DB2: flat or DB2_s<n>/ folders; HD-sEMG: s<n>.mat files) or one file.")],
    dataset: Annotated[Optional[str], typer.Option(help="ninapro-db2 or hdsemg65; detected from file names if omitted.")] = None,
    subject: Annotated[Optional[list[int]], typer.Option(help="Only these subjects (repeatable).")] = None,
    windows: Annotated[bool, typer.Option(help="Also window each subject and count windows per split.")] = False,
    modalities: Annotated[Optional[str], typer.Option(help="Modality configuration for --windows (default: both modalities).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the summary as JSON to this file.")] = None,
) -> None:
    """Subjects, exercises, classes with counts, repetitions, channels, sampling rate, duration, planted structure."""
    from isoprobe.cli.render import render_summary, render_windows
    from isoprobe.data.summary import summarise

    with user_errors(inspect):
        if windows and modalities:  # fail on a typo before the slow part
            from isoprobe.data.datasets import dataset_spec, detect_dataset
            from isoprobe.data.modalities import check_sources

            detected = dataset or detect_dataset(path)
            if detected:
                check_sources(modalities, dataset_spec(detected).modalities)
        summary = summarise(path, dataset, subject)
        render_summary(summary)
        window_report = None
        if windows:
            from isoprobe.data.datasets import dataset_spec
            from isoprobe.data.pipeline import DataConfig, prepare

            spec = dataset_spec(summary.dataset)
            window_report = {}
            for subject_summary in summary.subjects:
                root = path.parent if path.is_file() else path
                config = DataConfig(root=str(root), dataset=summary.dataset, subject=subject_summary.subject,
                                    exercises=tuple(subject_summary.exercises) or (1, 2, 3),
                                    modalities=modalities or ",".join(spec.modalities))
                prepared = prepare(config)
                window_report[subject_summary.subject] = render_windows(prepared)
        if json_out is not None:
            from isoprobe.atomic import write_text_atomic

            payload = summary.to_dict() | ({"windows": window_report} if window_report else {})
            write_text_atomic(json_out, json.dumps(payload, indent=2))
            console.print(f"summary written to {escape(str(json_out))}")


@app.command()
def realism(
    path: Annotated[Path, typer.Argument(help="A data folder (DB2 or HD-sEMG layout, real or synthetic) or one file.")],
    subject: Annotated[int, typer.Option(help="Subject to measure.")] = 1,
    dataset: Annotated[Optional[str], typer.Option(help="ninapro-db2 or hdsemg65; detected from file names if omitted.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write every statistic and target range as JSON to this file.")] = None,
) -> None:
    """How much the sEMG behaves like real surface EMG: statistics beside documented target ranges."""
    from rich.table import Table

    from isoprobe.data.realism import measure_folder

    with user_errors(realism):
        report = measure_folder(path, subject, dataset)
        table = Table(title=f"sEMG realism: {escape(str(path))}, subject {subject} ({report.dataset}, "
                            f"{report.contractions} contractions, {report.steady_seconds:.1f} s steady)")
        for column in ("statistic", "value", "target", "in range"):
            table.add_column(column)
        for _, label, value, target, ok in report.rows():
            shown = "n/a" if value is None else f"{value:.3g}"
            verdict = "–" if ok is None else "[green]yes[/]" if ok else "[red]no[/]"
            table.add_row(escape(label), shown, escape(target), verdict)
        console.print(table)
        console.print("targets: real = monopolar HD-sEMG, vastus lateralis, 8 mm 13×5 grid, ~26% MVC; "
                      "ranges = issue 12 acceptance for synthetic data (sources: isoprobe/data/realism.py)")
        if report.layout == "ring":
            console.print("a ring of bipolar sensors: the ranges describe monopolar HD grids and are shown for "
                          "reference only (no verdict)")
        if out is not None:
            from isoprobe.atomic import write_text_atomic

            write_text_atomic(out, json.dumps(report.to_dict(), indent=2))
            console.print(f"statistics written to {escape(str(out))}")
