"""`isoprobe study`: the data, then every job (locally in worker processes or on a Ray cluster), then the
tables and the report. Every number depends on the recipe alone: not on the executor, the number of
workers or the order in which jobs finish."""

from __future__ import annotations

import json
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Literal

from isoprobe.atomic import write_text_atomic
from isoprobe.errors import ConfigError
from isoprobe.study.jobs import Job, finished_job, jobs_for, run_job, step_key
from isoprobe.study.recipe import DataSource, Recipe

Executor = Literal["local", "ray"]


@dataclass
class StudyResult:
    out: Path
    jobs: int
    steps: dict[str, int] = field(default_factory=dict)  # "done" / "skipped" counts
    report: Path | None = None


def prepare_data(source: DataSource, out: Path) -> tuple[str, str]:
    """The data folder a source's jobs read and its key: synthetic data are written into
    OUT/data/<name> once, keyed by their configuration; a real data folder is keyed by its files'
    names, sizes and content hashes (not their location: a moved data set keeps the finished steps)."""
    if source.synthetic is None:
        from isoprobe.data.cache import file_fingerprint

        root = Path(source.root)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".mat", ".h5", ".hdf5", ".json"))
        identity = [{"name": str(p.relative_to(root)), "size": f["size"], "sha256_ends": f["sha256_ends"]}
                    for p in files for f in [file_fingerprint(p)]]
        return str(root), step_key("data", {"dataset": source.dataset, "files": identity}, "")
    from isoprobe.data.synth.generate import SynthConfig, generate, synthetic_key

    root, marker = out / "data" / source.name, out / "steps" / f"data-{source.name}.json"
    key = step_key("data", synthetic_key(source.synthetic), "")
    if not (root / "isoprobe-synth.json").is_file() or not marker.is_file() or json.loads(marker.read_text()).get("key") != key:
        generate(SynthConfig(**source.synthetic), root)
        write_text_atomic(marker, json.dumps({"key": key, "config": source.synthetic}, indent=2))
    return str(root.resolve()), key


def run_study(recipe: Recipe, out: Path, executor: Executor = "local", jobs: int = 1, address: str | None = None,
              progress: Callable[[int, int, str], None] | None = None, report: bool = True) -> StudyResult:
    """Run every step not yet done; then collect the tables (OUT/tables) and write the report."""
    if executor not in ("local", "ray"):
        raise ConfigError("executor", executor, "choose local or ray")
    if jobs < 0:
        raise ConfigError("jobs", jobs, "must be an integer ≥ 0 (0: one per CPU core)")
    jobs = jobs or os.cpu_count() or 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {source.name: prepare_data(source, out) for source in recipe.data}  # name → (root, key)
    all_jobs = jobs_for(recipe)
    result = StudyResult(out, len(all_jobs))
    counts: dict[str, int] = {}
    completed = [0]

    def finished(done: dict[str, str], job: Job) -> None:
        for status in done.values():
            counts[status] = counts.get(status, 0) + 1
        completed[0] += 1
        if progress is not None:
            progress(completed[0], len(all_jobs), job.folder)

    if progress is not None:
        progress(0, len(all_jobs), "")
    # Jobs with every step done are counted here, without starting a worker for them.
    todo = []
    for job in all_jobs:
        skipped = finished_job(out, recipe, job, data[job.source.name][1])
        if skipped is None:
            todo.append(job)
        else:
            finished(skipped, job)
    if todo:
        run = _ray_jobs if executor == "ray" else _local_jobs
        run(out, recipe, todo, data, jobs, address, finished)
    result.steps = counts
    from isoprobe.study.collect import collect_tables

    tables = collect_tables(recipe, out, all_jobs, {name: root for name, (root, _) in data.items()})
    if report:
        result.report = _report(out, recipe, tables)
    return result


def _report(out: Path, recipe: Recipe, tables: dict) -> Path:
    """Write OUT/report unless it was written from these very tables (a rerun with nothing new)."""
    from isoprobe.reports.html import ReportConfig, write_report

    content = {name: table.to_csv(index=False) for name, table in sorted(tables.items())}
    key = step_key("report", {"recipe": recipe.to_dict(), "tables": content}, "")
    marker = out / "steps" / "report.json"
    folder = out / "report"
    if (folder / "index.html").is_file() and marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return folder
    folder = write_report(out, ReportConfig(**(recipe.report or {})))
    write_text_atomic(marker, json.dumps({"key": key}, indent=2))
    return folder


def _job_in_worker(out: str, recipe: Recipe, job: Job, data: dict[str, tuple[str, str]]) -> dict:
    """One job with the recipe's thread count (a float sum's rounding depends on how many threads
    share it), whatever process runs it; the caller's setting is restored."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return run_job(Path(out), recipe, job, *data[job.source.name])
    finally:
        torch.set_num_threads(threads)


def _local_jobs(out: Path, recipe: Recipe, todo: list[Job], data: dict, workers: int, address, finished) -> None:
    if workers == 1 or len(todo) == 1:
        for job in todo:
            finished(_job_in_worker(str(out), recipe, job, data), job)
        return
    # spawn: a fresh interpreter per worker, no torch state copied from this process
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn"),
                             initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(_job_in_worker, str(out), recipe, job, data): job for job in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                finished(future.result(), pending.pop(future))


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the study process ends, however it ends (`kill`, SIGKILL,
    a closed terminal), instead of training on as an orphan. Linux delivers SIGTERM at the parent's
    death (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread watches the parent's pid."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="isoprobe-parent-watch").start()


def _ray_jobs(out: Path, recipe: Recipe, todo: list[Job], data: dict, workers: int, address, finished) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor", "ray", "Ray is not installed: pip install 'isoprobe[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    try:
        gpus = 1 if recipe.device == "cuda" else 0
        remote = ray.remote(num_cpus=recipe.threads, num_gpus=gpus)(_job_in_worker)
        pending = {remote.remote(str(out), recipe, job, data): job for job in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            finished(ray.get(ready[0]), pending.pop(ready[0]))
    finally:
        if started_here:
            ray.shutdown()
