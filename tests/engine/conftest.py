"""Fixtures for the engine tests: the tiny DB2 data set prepared once, small hierarchical and
multimodal transformers with non-trivial weights, and short trained checkpoints for the CLI.

Everything here is package-scoped so that the one-thread setting below is in force when it is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isoprobe.data.pipeline import DataConfig, PreparedData, prepare
from isoprobe.models import build_model
from isoprobe.models.sizing import model_config_for
from isoprobe.training.trainer import TrainConfig, train

SMALL = dict(d_model=16, n_heads=2, d_mlp=32, dropout=0.0)


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on busy shared cores the threads'
    synchronisation makes small ops many times slower; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise(model: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """Non-trivial weights everywhere (biases, norms, CLS and position embeddings included), so that
    attention patterns are far from uniform and every masked edge matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.eval()


def small(data: PreparedData, arch: str, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model_config_for(data, arch, **(SMALL | options)))


@pytest.fixture(scope="package")
def db2(db2_redundant: Path) -> PreparedData:
    return prepare(DataConfig(root=str(db2_redundant)), cache_dir=None)


@pytest.fixture(scope="package")
def db2_emg(db2_redundant: Path) -> PreparedData:
    return prepare(DataConfig(root=str(db2_redundant), modalities="emg"), cache_dir=None)


@pytest.fixture(scope="package")
def hier(db2) -> torch.nn.Module:
    """Hierarchical transformer: 1 encoder layer per modality, 3 shared layers, 2 heads, d_model 16."""
    return randomise(small(db2, "hierarchical", n_layers=3, n_encoder_layers=1), seed=1)


@pytest.fixture(scope="package")
def mmt(db2) -> torch.nn.Module:
    return randomise(small(db2, "mmt", n_layers=2, fusion_hidden=16), seed=2)


def windows(data: PreparedData, n: int, split: str = "train", offset: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """n windows spread over a split (several classes): one [batch, time, channel] tensor per group, labels [batch]."""
    split_windows = data.splits[split]
    index = (torch.linspace(0, len(split_windows) - 1, n).round().long() + offset) % len(split_windows)
    xs = [torch.from_numpy(split_windows.x[g.name][index.numpy()].copy()) for g in data.groups]
    return xs, torch.from_numpy(split_windows.y[index.numpy()])


@pytest.fixture(scope="package")
def trained(db2, tmp_path_factory) -> Path:
    """A hierarchical checkpoint (2 shared layers) trained for a few epochs: out/checkpoint.pt."""
    out = tmp_path_factory.mktemp("engine_hierarchical")
    model = small(db2, "hierarchical", n_layers=2, n_encoder_layers=1)
    train(model, db2, TrainConfig(epochs=4, batch_size=64, device="cpu", seed=0), out, progress=False)
    return out / "checkpoint.pt"


@pytest.fixture(scope="package")
def trained_mlp(db2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("engine_mlp")
    model = small(db2, "mlp", hidden=(32,))
    train(model, db2, TrainConfig(epochs=1, batch_size=64, device="cpu", seed=0), out, progress=False)
    return out / "checkpoint.pt"
