"""The study's tables: every run's outputs gathered into OUT/tables/*.csv, each row carrying the
columns that name its run (dataset, data, subject, arch, model, modalities, configuration, seed,
run), and OUT/study.json (the recipe, the jobs, provenance). `isoprobe report` reads these."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from isoprobe.atomic import write_text_atomic
from isoprobe.results import STUDY_TABLES
from isoprobe.study.jobs import Job
from isoprobe.study.recipe import Recipe

# table name → (file in the run folder, how to read it)
# the tables each run's analysis steps wrote: name -> its file in the run folder
RUN_TABLES = {table.name: table.source for table in STUDY_TABLES.values() if table.source is not None}


def collect_tables(recipe: Recipe, out: Path, jobs: list[Job], data_roots: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """Write OUT/tables/{runs,curves,confusion,ablation,compare,compare_layers,shift,planted}.csv
    (those with rows) and OUT/study.json; returns the tables. planted: on synthetic data (a ground
    truth beside the data; data_roots: source name → folder), isoprobe.study.planted's checks of every run."""
    from isoprobe.data.synth.generate import read_ground_truth
    from isoprobe.study.planted import COLUMNS, planted_rows

    out = Path(out)
    truths = {name: read_ground_truth(Path(root)) for name, root in (data_roots or {}).items()}
    parts: dict[str, list[pd.DataFrame]] = {}
    for job in jobs:
        run = out / job.folder
        identity = job.identity()
        frames = _run_frames(run)
        truth = truths.get(job.source.name)
        if truth is not None:
            frames["planted"] = pd.DataFrame(planted_rows(truth, run, identity, recipe.bootstrap), columns=list(COLUMNS))
        for name, frame in frames.items():
            if len(frame):
                parts.setdefault(name, []).append(_with_identity(frame, identity))
    tables = {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items() if frames}
    for name, table in tables.items():
        write_text_atomic(out / "tables" / f"{name}.csv", table.to_csv(index=False))
    from isoprobe.provenance import provenance

    study = {"title": recipe.title, "description": recipe.description, "recipe": recipe.to_dict(),
             "jobs": [job.identity() for job in jobs], "tables": sorted(tables),
             "provenance": provenance(device=recipe.device, recipe=recipe.path, seeds=list(recipe.seeds))}
    write_text_atomic(out / "study.json", json.dumps(study, indent=2, default=str))
    return tables


def _with_identity(frame: pd.DataFrame, identity: dict) -> pd.DataFrame:
    named = pd.DataFrame({key: [value] * len(frame) for key, value in identity.items()})
    return pd.concat([named, frame.drop(columns=[c for c in identity if c in frame.columns]).reset_index(drop=True)], axis=1)


def _run_frames(run: Path) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    accuracy = run / "eval" / "accuracy.json"
    if accuracy.is_file():
        row = json.loads(accuracy.read_text())
        train = run / "steps" / "train.json"
        if train.is_file():
            row["best_epoch"] = json.loads(train.read_text()).get("summary", {}).get("best_epoch")
        frames["runs"] = pd.DataFrame([row])
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        columns = ["epoch", "lambda", "loss", "train_accuracy", "val_accuracy", "val_loss", "lr"]
        frames["curves"] = pd.DataFrame(rows).reindex(columns=columns)
    confusion = run / "eval" / "confusion.csv"
    if confusion.is_file():
        matrix = pd.read_csv(confusion, index_col=0)
        long = matrix.stack().rename("count").reset_index()
        long.columns = ["true", "predicted", "count"]
        frames["confusion"] = long
    for name, relative in RUN_TABLES.items():
        if (run / relative).is_file():
            frames[name] = pd.read_csv(run / relative)
    return frames
