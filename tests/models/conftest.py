"""Fixtures for model tests: prepared data sets, each modality configuration prepared once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isoprobe.data.pipeline import DataConfig, PreparedData, prepare


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and when other processes share the CPUs the
    threads' synchronisation makes small ops tens of times slower; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def prepared(db2_redundant: Path, hd_redundant: Path):
    """prepared(modalities, dataset="ninapro-db2") -> PreparedData, each configuration prepared once."""
    roots = {"ninapro-db2": db2_redundant, "hdsemg65": hd_redundant}
    memo: dict[tuple[str, str], PreparedData] = {}

    def get(modalities: str, dataset: str = "ninapro-db2") -> PreparedData:
        key = (dataset, modalities)
        if key not in memo:
            memo[key] = prepare(DataConfig(root=str(roots[dataset]), dataset=dataset, modalities=modalities), cache_dir=None)
        return memo[key]

    return get

