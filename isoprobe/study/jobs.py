"""A study's independent jobs — one trained model each (subject × architecture × modality
configuration × seed) with its evaluation and analyses — and the resumable steps inside a job.

Each step writes its outputs into the run folder and then `steps/<step>.json` holding its key, a
hash of its configuration and of the keys of the steps it depends on (the data's key first). A step
whose file holds the same key is not redone; a changed configuration changes the key and the step
(and every step after it) runs again. Training resumes from `last.pt` when it was interrupted, so a
killed study loses at most the epoch in progress, and resumed training is exact (same numbers).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from isoprobe.atomic import write_text_atomic
from isoprobe.study.analyses import ANALYSES
from isoprobe.study.recipe import DataSource, ModelRuns, Recipe, configuration_kind

STEPS = ("train", "eval", *ANALYSES)


@dataclass(frozen=True)
class Job:
    """One model to train and analyse."""

    source: DataSource
    subject: int
    model: ModelRuns
    modalities: str
    seed: int

    @property
    def dataset(self) -> str:
        return self.source.dataset

    @property
    def folder(self) -> str:
        """The run folder, relative to the study folder."""
        slug = self.modalities.replace(",", "+").replace("[", "").replace("]", "").replace(":", "-")
        return f"runs/{self.source.name}/s{self.subject}/{self.model.name}/{slug}/seed{self.seed}"

    def identity(self) -> dict:
        """The columns naming this run in every study table."""
        return {"dataset": self.dataset, "data": self.source.label, "subject": self.subject, "arch": self.model.arch,
                "model": self.model.name, "modalities": self.modalities,
                "configuration": configuration_kind(self.modalities, self.dataset), "seed": self.seed, "run": self.folder}

    def model_spec(self):
        return self.model.model_spec(self.dataset, self.modalities)

    @property
    def analysable(self) -> bool:
        """Attention to intervene on, and more than one modality group for it to cross."""
        return self.model.has_attention and configuration_kind(self.modalities, self.dataset) != "unimodal"


def jobs_for(recipe: Recipe) -> list[Job]:
    """Every run; a foreign model is trained already, so it runs once (under the first seed), not per seed."""
    return [Job(source, subject, model, modalities, seed)
            for source in recipe.data for subject in source.subjects for model in recipe.models if source.name in model.data
            for modalities in model.modalities_for(source.dataset)
            for seed in (recipe.seeds[:1] if model.foreign else recipe.seeds)]


def step_key(step: str, config: dict, upstream: str) -> str:
    """sha256 of the step's name, configuration and the key of what it depends on."""
    text = json.dumps({"step": step, "config": config, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def step_done(run: Path, step: str, key: str) -> bool:
    marker = run / "steps" / f"{step}.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("key") == key
    except (json.JSONDecodeError, OSError):
        return False


def mark_done(run: Path, step: str, key: str, config: dict, summary: dict | None = None) -> None:
    write_text_atomic(run / "steps" / f"{step}.json",
                      json.dumps({"step": step, "key": key, "config": config, "summary": summary or {}}, indent=2, default=str))


def job_steps(recipe: Recipe, job: Job, data_key: str) -> list[tuple[str, dict, str]]:
    """(step, configuration, key) for each step that applies to `job`, in order."""
    from isoprobe.study import steps

    planned, upstream = [], data_key
    for step in STEPS:
        config = steps.step_config(step, recipe, job)
        if config is not None:
            upstream = step_key(step, config, upstream)
            planned.append((step, config, upstream))
    return planned


def finished_job(study: Path, recipe: Recipe, job: Job, data_key: str) -> dict[str, str] | None:
    """{step: "skipped"} when every step of `job` is done (nothing to start a worker for), else None."""
    run = Path(study) / job.folder
    planned = job_steps(recipe, job, data_key)
    return {step: "skipped" for step, _, _ in planned} if all(step_done(run, s, k) for s, _, k in planned) else None


def run_job(study: Path, recipe: Recipe, job: Job, data_root: str, data_key: str,
            progress: Callable[[str], None] | None = None) -> dict:
    """Every step of one job that is not done yet; returns {step: "done" | "skipped"}."""
    from isoprobe.study import steps

    run = Path(study) / job.folder
    run.mkdir(parents=True, exist_ok=True)
    done: dict[str, str] = {}
    for step, config, key in job_steps(recipe, job, data_key):
        if step_done(run, step, key):
            done[step] = "skipped"
            continue
        if step == "train":
            _restart_if_changed(run, key)
        if progress is not None:
            progress(f"{job.folder}: {step}")
        summary = steps.run_step(step, config, run, data_root, recipe, job)
        mark_done(run, step, key, config, summary)
        done[step] = "done"
    return done


def _restart_if_changed(run: Path, key: str) -> None:
    """Training of another configuration was left here: start afresh rather than resume it."""
    started = run / "steps" / "train.started"
    if started.is_file() and started.read_text().strip() != key:
        for child in run.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    started.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(started, key)
