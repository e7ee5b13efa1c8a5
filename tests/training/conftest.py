"""Shared fixtures for the training tests: the tiny DB2 data set prepared once, and one short
hierarchical run (dropout on, so dropout RNG state matters) whose files the tests read but never change."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import torch

from isoprobe.data.pipeline import DataConfig, PreparedData, prepare
from isoprobe.models import build_model
from isoprobe.models.sizing import model_config_for
from isoprobe.training.trainer import TrainConfig, TrainResult, train

TINY = dict(d_model=16, n_layers=1, n_heads=2, d_mlp=32, dropout=0.2)


def tiny_model(data: PreparedData, arch: str = "hierarchical", seed: int = 0, **options):
    """A small model of `arch` for `data`, initialised from `seed`."""
    settings = {**TINY, **options}
    if arch == "mlp":
        settings.pop("n_layers")
        settings.setdefault("hidden", (32,))
    torch.manual_seed(seed)
    return build_model(model_config_for(data, arch, **settings))


def state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@dataclass
class Run:
    model: torch.nn.Module  # holds the best-validation weights after training, as train() leaves it
    data: PreparedData
    config: TrainConfig
    result: TrainResult
    out: Path


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is faster than two, and far faster when other processes
    share the cores (OpenMP threads then wait on each other). Every run in these tests uses one thread,
    so runs compared bit for bit reduce in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def db2_data(db2_redundant) -> PreparedData:
    return prepare(DataConfig(root=str(db2_redundant)), cache_dir=None)


# Four epochs, λ reaching 1 half-way: λ = 0, 0.5, 1, 1 (epochs 1–4).
RUN_CONFIG = TrainConfig(epochs=4, batch_size=64, head_switch_fraction=0.5, device="cpu", seed=0)


@pytest.fixture(scope="session")
def hierarchical_run(db2_data, tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("hierarchical_run")
    with one_torch_thread():  # session fixtures are set up before the module-scoped thread setting
        model = tiny_model(db2_data)
        result = train(model, db2_data, RUN_CONFIG, out, progress=False)
    return Run(model, db2_data, RUN_CONFIG, result, out)
