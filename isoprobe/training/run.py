"""The steps behind `isoprobe train` and `isoprobe eval`, as library calls."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from isoprobe.data.cache import default_cache_dir
from isoprobe.data.datasets import dataset_spec
from isoprobe.data.pipeline import SPLITS, DataConfig, PreparedData, prepare
from isoprobe.data.synth.generate import LAYOUTS, SynthConfig, ensure_synthetic
from isoprobe.data.tokens import TokenConfig
from isoprobe.errors import ConfigError
from isoprobe.models import build_model
from isoprobe.models.spec import model_config_for
from isoprobe.training.checkpoint import Checkpoint, load_checkpoint
from isoprobe.training.metrics import Evaluation, evaluate, predict_logits
from isoprobe.training.trainer import TrainConfig, TrainResult, train

log = logging.getLogger(__name__)

# Synthetic data used when no --data is given: one subject, sized so CPU training takes a minute or two.
DEFAULT_SYNTH = dict(subjects=1, gestures=9, seconds_per_repetition=2.0, rest_seconds=1.0)


def synthetic_root(dataset: str, preset: str, seed: int = 0, synergy_fraction: float | None = None) -> Path:
    """The folder of the default synthetic data set for `dataset` (generated on first use, then reused)."""
    if dataset not in LAYOUTS:
        raise ConfigError("--dataset", dataset, f"choose one of {', '.join(LAYOUTS)}")
    config = SynthConfig(layout=dataset, preset=preset, synergy_fraction=synergy_fraction, seed=seed, **DEFAULT_SYNTH)
    return ensure_synthetic(config, default_cache_dir())


def default_modalities(dataset: str) -> str:
    return ",".join(dataset_spec(dataset).modalities)


def fit(data_config: DataConfig, arch: str, train_config: TrainConfig, out: Path, token: TokenConfig | None = None,
        model_options: dict | None = None, resume: bool = False, progress: bool = True) -> TrainResult:
    """Prepare the data, build the architecture for it and train; writes checkpoint.pt in `out`."""
    data = prepare(data_config)
    # Seed before building: the seed decides the initial weights too, not only shuffling and dropout.
    torch.manual_seed(train_config.seed)
    model = build_model(model_config_for(data, arch, token, **(model_options or {})))
    log.info("%s: %d parameters; %d/%d/%d train/validation/test windows", arch, sum(p.numel() for p in model.parameters()),
             len(data.splits["train"]), len(data.splits["validation"]), len(data.splits["test"]))
    return train(model, data, train_config, out, resume=resume, progress=progress)


def checkpoint_data(checkpoint: Checkpoint, data_root: Path | None = None) -> PreparedData:
    """The checkpoint's data pipeline, normalised with its training statistics. Without `data_root`
    the recorded folder is used; if it is gone and the data were synthetic, they are regenerated."""
    config = checkpoint.data_config
    if data_root is not None:
        config = replace(config, root=str(data_root))
    elif not Path(config.root).exists() and checkpoint.synth:
        regenerated = ensure_synthetic(SynthConfig(**checkpoint.synth), default_cache_dir())
        log.info("data folder %s is gone; regenerated the synthetic data in %s", config.root, regenerated)
        config = replace(config, root=str(regenerated))
    return prepare(config, zscore=checkpoint.zscore)


def evaluate_checkpoint(path: Path, data_root: Path | None = None, split: str = "test", device: str = "cpu",
                        batch_size: int = 1024) -> tuple[Checkpoint, Evaluation]:
    """Accuracy, balanced accuracy, per-class accuracy and confusion of a checkpoint on one split."""
    check_split(split)
    check_device(device)
    checkpoint = load_checkpoint(path)
    model = checkpoint.build_model().to(device)
    data = checkpoint_data(checkpoint, data_root)
    if data.class_labels != checkpoint.class_labels:
        log.warning("classes in the data %s differ from the checkpoint's %s", data.class_labels, checkpoint.class_labels)
    names = tuple(g.name for g in model.config.groups)
    logits = predict_logits(model, data.splits[split], names, batch_size=batch_size, device=device)
    return checkpoint, evaluate(logits.argmax(-1).numpy(), data.splits[split].y, len(checkpoint.class_labels))


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError("--split", split, f"choose one of {', '.join(SPLITS)}")


def check_device(device: str) -> None:
    """Refuse a device torch cannot use here before any work, with a message instead of torch's traceback."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ConfigError("--device", device, "choose cpu or cuda (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", device, "no CUDA device is available here; use --device cpu")
