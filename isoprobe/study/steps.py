"""What each step of a study job does, and the configuration that keys it. Outputs are the files the
single commands write (`isoprobe train`, `eval`, `ablate`, `compare`, `shift`), in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from isoprobe.atomic import write_text_atomic
from isoprobe.study.analyses import ANALYSES, NEEDS_TRUTH
from isoprobe.study.analyses import analysis as analysis_of
from isoprobe.study.recipe import Recipe

# Part of every analysis step's key (not training's): bump it when what an analysis computes changes for
# the same configuration, so a rerun of a finished study redoes its analyses and keeps its trained models.
# 2: stratified bootstrap, unbiased paired MMD², estimands in compare, planted rules with regions;
# 3: CIs clipped to the quantity's range; 4: ablation's prob_change and window columns, compare's EMAP gap,
# data-synergy and sanity columns.
ANALYSIS_VERSION = 4


def data_config(job, data_root: str):
    if job.model.foreign:  # the data set's standard windows of the job's modalities
        from isoprobe.data.pipeline import DataConfig

        return DataConfig(root=str(data_root), dataset=job.dataset, subject=job.subject, modalities=job.modalities)
    return job.model_spec().data_config(data_root, job.subject)


def foreign_code(job) -> dict:
    """What keys a foreign model's steps: the function's name and its module file's content, so an edited
    model file reruns the steps. The file is found as the import will find it (the recipe's folder, the
    current one, the Python path), without importing it."""
    import hashlib
    import sys

    from isoprobe.analysis import code_folders

    module = job.model.function.split(":", 1)[0]
    relative = Path(*module.split("."))
    candidates = (Path(folder) / name for folder in (*code_folders(job.model.code_path), *sys.path) if folder
                  for name in (relative.with_suffix(".py"), relative / "__init__.py"))
    found = next((path for path in candidates if path.is_file()), None)
    return {"model": job.model.function,
            "module_sha256": None if found is None else hashlib.sha256(found.read_bytes()).hexdigest()}


def step_config(step: str, recipe: Recipe, job) -> dict | None:
    """The configuration keying `step` of `job` (None: the step does not apply to this job). The data
    folder's location and the device are left out: moving a study or its data keeps finished steps."""
    if step == "train":
        if job.model.foreign:
            return None
        data = data_config(job, "").to_dict()
        data.pop("root")
        return {"model": job.model_spec().to_dict(), "data": data, "seed": job.seed,
                "pathway_dropout": job.model.pathway_dropout}
    if step == "eval":
        config = {"split": "test", "bootstrap": recipe.bootstrap, "analysis_version": ANALYSIS_VERSION}
        return {**config, **foreign_code(job)} if job.model.foreign else config
    table = getattr(recipe, step)
    if table is None or not job.analysable:
        return None
    return {**table, "bootstrap": recipe.bootstrap, "analysis_version": ANALYSIS_VERSION}


def run_step(step: str, config: dict, run: Path, data_root: str, recipe: Recipe, job) -> dict:
    config = {key: value for key, value in config.items() if key != "analysis_version"}  # keys the step, no option
    if step in ANALYSES:
        return _analysis_step(step, config, run, data_root, recipe, job)
    return {"train": _train, "eval": _eval}[step](config, run, data_root, recipe, job)


def _train(config: dict, run: Path, data_root: str, recipe: Recipe, job) -> dict:
    from isoprobe.training.dropout import parse_pathway_dropout
    from isoprobe.training.run import fit

    spec = job.model_spec()
    train_config = spec.train_config(seed=job.seed, device=recipe.device)
    result = fit(data_config(job, data_root), spec.arch, train_config, run, spec.token, spec.model_options(), resume=True,
                 progress=False, pathway_dropout=parse_pathway_dropout(job.model.pathway_dropout),
                 command=["isoprobe", "study", recipe.path])
    return {"best_epoch": result.best_epoch, "test_accuracy": result.test.get("accuracy")}


def _analysis(run: Path, data_root: str, recipe: Recipe, job, attention: bool = True):
    import torch

    from isoprobe.analysis import ForeignAnalysis, load_analysis, model_function

    device = "cuda" if recipe.device == "cuda" or (recipe.device == "auto" and torch.cuda.is_available()) else "cpu"
    if job.model.foreign:
        build = model_function(job.model.function, job.model.code_path)
        return ForeignAnalysis(job.model.function, build, "test", torch.device(device), Path(data_root),
                               data_config=data_config(job, data_root)), device
    return load_analysis(run / "checkpoint.pt", Path(data_root), "test", device, needs_attention=attention), device


def _meta(run: Path, analysis, device: str, recipe: Recipe, job, **options) -> dict:
    """A table's metadata: its options and what made it (isoprobe.provenance)."""
    from isoprobe.provenance import provenance

    checkpoint = None if job.model.foreign else run / "checkpoint.pt"
    return {**options, "provenance": provenance(checkpoint=checkpoint, data=analysis.data, device=device,
                                                recipe=recipe.path, seeds=[job.seed], command=["isoprobe", "study", recipe.path])}


def _eval(config: dict, run: Path, data_root: str, recipe: Recipe, job) -> dict:
    from isoprobe.engine.stats import Segments, cluster_means
    from isoprobe.reports.tables import write_evaluation
    from isoprobe.training.metrics import evaluate, predict_logits

    analysis, device = _analysis(run, data_root, recipe, job, attention=False)
    windows = analysis.windows
    predicted = predict_logits(analysis.model, windows, analysis.model.modality_names, 1024, device).argmax(-1).numpy()
    evaluation = evaluate(predicted, windows.y, len(analysis.class_names))
    write_evaluation(run / "eval", evaluation, analysis.class_names, title=f"{job.model.name} {job.modalities} — test",
                     meta=_meta(run, analysis, device, recipe, job, split="test"))
    labels = np.asarray(analysis.class_labels)
    predictions = pd.DataFrame({"start": windows.start, "repetition": windows.repetition, "label": windows.label,
                                "predicted": labels[predicted]})
    write_text_atomic(run / "eval" / "predictions.csv", predictions.to_csv(index=False))
    correct = (predicted == windows.y).astype(np.float64)
    accuracy, low, high = cluster_means(correct, Segments.of_windows(windows), config["bootstrap"], seed=0,
                                       bounds=(0.0, 1.0))
    summary = {"accuracy": float(accuracy), "accuracy_ci_low": float(low), "accuracy_ci_high": float(high),
               "balanced_accuracy": float(evaluation.balanced_accuracy), "windows": int(len(correct)),
               "segments": int(len(np.unique(windows.segment))),
               "parameters": int(sum(p.numel() for p in analysis.model.parameters()))}
    write_text_atomic(run / "eval" / "accuracy.json", json.dumps(summary, indent=2))
    return summary


def _analysis_step(step: str, config: dict, run: Path, data_root: str, recipe: Recipe, job) -> dict:
    options, analyse = analysis_of(step)
    analysis, device = _analysis(run, data_root, recipe, job)
    extra = {}
    if step in NEEDS_TRUTH:
        from isoprobe.data.synth.generate import read_ground_truth

        extra["truth"] = read_ground_truth(Path(data_root))
    result = analyse(analysis.model, analysis.windows, options(**config), reference=analysis.reference, device=device,
                     **extra)
    result.write(run / step, _meta(run, analysis, device, recipe, job))
    return {"rows": len(result.table)}
