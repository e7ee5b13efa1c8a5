"""`isoprobe data pid FOLDER` and `isoprobe pid CHECKPOINT`: the partial information decomposition
(redundancy, uniqueness per modality, synergy, in bits) of the labels, and of a model's predictions,
over the two modalities (`isoprobe.diagnostics.pid`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from isoprobe.cli.common import (OptionalCheckpointArgument, ModelOption, BatchOption, DataOption, DeviceOption, SeedOption, SplitOption,
                                 console, user_errors, write_result, source)

KsOption = Annotated[str, typer.Option(help="Codes per modality (k-means clusters), one decomposition each, e.g. 4,8,16,32.")]
ComponentsOption = Annotated[int, typer.Option(help="Principal components of each modality's standardised features.")]
PermutationsOption = Annotated[int, typer.Option(help="Target permutations for the plug-in floor (0: no floor).")]
PIDBootstrapOption = Annotated[int, typer.Option(help="Segment-bootstrap resamples for the CIs (0: no CIs; each "
                                                      "resample is one more solve per K).")]
OutOption = Annotated[Optional[Path], typer.Option(help="Write pid.csv, .json and .md here.")]


def data_pid_command(
    folder: Annotated[Path, typer.Argument(help="A data folder (DB2 or HD-sEMG layout, real or synthetic).", exists=True)],
    subject: Annotated[int, typer.Option(help="Subject to decompose.")] = 1,
    dataset: Annotated[Optional[str], typer.Option(help="ninapro-db2 or hdsemg65; detected from file names if omitted.")] = None,
    modalities: Annotated[Optional[str], typer.Option(help="Two modality groups, e.g. emg,acc or emg[0:6],emg[6:12] "
                                                           "(default: the data set's two modalities).")] = None,
    split: Annotated[str, typer.Option(help="Split to decompose: train, validation or test (codes are fitted on train).")] = "test",
    ks: KsOption = "4,8,16,32",
    components: ComponentsOption = 8,
    permutations: PermutationsOption = 20,
    bootstrap: PIDBootstrapOption = 100,
    seed: SeedOption = 0,
    out: OutOption = None,
) -> None:
    """How many bits about the gesture the two modalities carry redundantly, each uniquely, and only
    together: the BROJA decomposition of I(code1, code2; label), plug-in over k-means codes of each
    modality's features, with the permutation floor of the plug-in bias and segment-bootstrap CIs."""
    from rich.markup import escape

    from isoprobe.analysis import check_split
    from isoprobe.data.datasets import dataset_spec, detect_dataset
    from isoprobe.data.pipeline import DataConfig, prepare
    from isoprobe.data.synth.generate import read_ground_truth
    from isoprobe.diagnostics.pid import PIDConfig, data_pid
    from isoprobe.errors import ConfigError

    with user_errors(data_pid_command):
        config = PIDConfig(ks=ks, components=components, permutations=permutations, bootstrap=bootstrap, seed=seed)
        check_split(split)
        detected = dataset or detect_dataset(folder)
        if detected is None:
            raise ConfigError("dataset", None, f"no DB2 or HD-sEMG files found in {folder}; name the layout with --dataset")
        spec = dataset_spec(detected)
        prepared = prepare(DataConfig(root=str(folder), dataset=detected, subject=subject,
                                      modalities=modalities or ",".join(spec.modalities)))
        windows = prepared.splits[split]
        result = _with_progress("decomposing", lambda progress: data_pid(
            windows, prepared.splits["train"], config, read_ground_truth(folder), progress=progress))
    console.print(f"[bold]{escape(str(folder))}[/], subject {subject} — PID of the labels on the {split} split "
                  f"({len(windows)} windows in {result.table.segments.iloc[0]} segments; codes fitted on the train split)")
    print_pid(result.table)
    write_result(data_pid_command, result, out, None, seed, data=str(folder), subject=subject, split=split)


def pid(
    checkpoint: OptionalCheckpointArgument = None,
    target: Annotated[str, typer.Option(help="What to decompose: predictions (the model's argmax) or labels (the data's, "
                                             "on the same codes).")] = "predictions",
    ks: KsOption = "4,8,16,32",
    components: ComponentsOption = 8,
    permutations: PermutationsOption = 20,
    bootstrap: PIDBootstrapOption = 100,
    seed: SeedOption = 0,
    model: ModelOption = None,
    data: DataOption = None,
    split: SplitOption = "test",
    device: DeviceOption = "cpu",
    batch_size: BatchOption = 256,
    out: OutOption = None,
) -> None:
    """How many bits about its prediction the model's two modalities carry redundantly, each uniquely,
    and only together: the BROJA decomposition of I(code1, code2; prediction), plug-in over k-means
    codes fitted on the training split, beside the planted values on synthetic data."""
    from rich.markup import escape

    from isoprobe.analysis import load_model_or_checkpoint
    from isoprobe.data.synth.generate import read_ground_truth
    from isoprobe.diagnostics.pid import PIDConfig, model_pid

    with user_errors(pid):
        config = PIDConfig(ks=ks, components=components, permutations=permutations, bootstrap=bootstrap, seed=seed,
                           target=target, batch_size=batch_size)
        analysis = load_model_or_checkpoint(checkpoint, model, data, split, device)
        truth = read_ground_truth(Path(analysis.data.config.root))
        result = _with_progress("decomposing", lambda progress: model_pid(
            analysis.model, analysis.windows, analysis.reference, config, device, truth=truth, progress=progress))
    console.print(f"[bold]{escape(str(checkpoint or model))}[/] — PID of the {target} on the {split} split "
                  f"({len(analysis.windows)} windows in {result.table.segments.iloc[0]} segments; codes fitted on the "
                  "train split)")
    print_pid(result.table)
    write_result(pid, result, out, analysis, seed, **source(checkpoint, model), split=split)


def _with_progress(label: str, run: Callable):
    """run(progress) under a transient progress bar (it draws nothing when output is not a terminal)."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))


def print_pid(table) -> None:
    """Per K, one line per part: bits, CI, share of I(X1,X2;Y), the permutation floor, the planted bits."""
    from rich.table import Table

    def number(value, fmt="{:.3f}"):
        return "–" if math.isnan(value) else fmt.format(value)

    for k, rows in table.groupby("k", sort=True):
        shown = Table(title=f"K = {k} codes per modality", title_justify="left", box=None, pad_edge=False)
        for column in ("part", "bits", "95% CI", "share", "floor mean", "floor 95%", "planted"):
            shown.add_column(column, justify="left" if column == "part" else "right", no_wrap=True)
        for row in rows.itertuples():
            ci = "–" if math.isnan(row.ci_low) else f"[{row.ci_low:.3f}, {row.ci_high:.3f}]"
            shown.add_row(row.part, number(row.bits), ci, number(row.fraction, "{:.0%}"), number(row.floor_mean),
                          number(row.floor95), number(row.expected_bits))
        console.print(shown)
        notes = [set(filter(None, caveat.split("; "))) for caveat in rows.caveat]
        shared = set.intersection(*notes)  # notes of the whole K; the others belong to one part
        for note in sorted(shared):
            console.print(f"  note: {note}", style="yellow", highlight=False)
        for part, own in zip(rows.part, notes):
            for note in sorted(own - shared):
                console.print(f"  note, {part}: {note}", style="yellow", highlight=False)
    console.print("bits: plug-in BROJA parts over k-means codes (biased upward); share: of I(X1,X2;Y) at that K; "
                  "floor: the same with the target permuted across windows (mean, 95th percentile); CI: segment "
                  "bootstrap; planted: what the synthetic sidecar plants (– for real data)", style="dim")
