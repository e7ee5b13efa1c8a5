"""The steps behind `isoprobe train`, as library calls."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from isoprobe.data.cache import default_cache_dir
from isoprobe.data.datasets import dataset_spec
from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.data.synth.generate import LAYOUTS, SynthConfig, ensure_synthetic
from isoprobe.data.tokens import TokenConfig
from isoprobe.errors import ConfigError
from isoprobe.models import build_model
from isoprobe.models.sizing import model_config_for
from isoprobe.training.dropout import check_pathways
from isoprobe.training.trainer import TrainConfig, TrainResult, train

log = logging.getLogger(__name__)

# Synthetic data used when no --data is given: one subject, sized so CPU training takes a minute or two.
DEFAULT_SYNTH = dict(subjects=1, gestures=9, seconds_per_repetition=2.0, rest_seconds=1.0)


def synthetic_root(dataset: str, preset: str, seed: int = 0, synergy_fraction: float | None = None) -> Path:
    """The folder of the default synthetic data set for `dataset` (generated on first use, then reused)."""
    if dataset not in LAYOUTS:
        raise ConfigError("dataset", dataset, f"choose one of {', '.join(LAYOUTS)}")
    config = SynthConfig(layout=dataset, preset=preset, synergy_fraction=synergy_fraction, seed=seed, **DEFAULT_SYNTH)
    return ensure_synthetic(config, default_cache_dir())


def default_modalities(dataset: str) -> str:
    return ",".join(dataset_spec(dataset).modalities)


def fit(data_config: DataConfig, arch: str, train_config: TrainConfig, out: Path, token: TokenConfig | None = None,
        model_options: dict | None = None, resume: bool = False, progress: bool = True,
        pathway_dropout: Sequence[tuple[str, float]] = (), command: Sequence[str] | None = None) -> TrainResult:
    """Prepare the data, build the architecture for it and train; writes checkpoint.pt and
    provenance.json (with `command`, the argv that ran this) in `out`.

    pathway_dropout: (pathway, rate) pairs; rates in (0, 1) drop the pathway's edges at random in
    training, rate 1 removes the pathway from the model, rate 0 does nothing."""
    data = prepare(data_config)
    check_pathways(pathway_dropout, tuple(g.name for g in data.groups))
    removed = tuple(p for p, rate in pathway_dropout if rate == 1.0)
    model_options = {**(model_options or {}), **({"removed_pathways": removed} if removed else {})}
    train_config = replace(train_config, pathway_dropout=train_config.pathway_dropout
                           + tuple((p, rate) for p, rate in pathway_dropout if 0.0 < rate < 1.0))
    # Seed before building: the seed decides the initial weights too, not only shuffling and dropout.
    torch.manual_seed(train_config.seed)
    model = build_model(model_config_for(data, arch, token, **model_options))
    log.info("%s: %d parameters; %d/%d/%d train/validation/test windows", arch, sum(p.numel() for p in model.parameters()),
             len(data.splits["train"]), len(data.splits["validation"]), len(data.splits["test"]))
    return train(model, data, train_config, out, resume=resume, progress=progress, command=command)
