"""One loader for every analysis command: a checkpoint's model, ready to evaluate, with its data.

`eval`, `ablate` and every later analysis start here, so they all read the same split the same way:
the model in eval mode on the device, the split's windows (with labels, segments and window keys),
and the training split as the reference set for statistics fitted on training data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import torch

from isoprobe.data.cache import default_cache_dir
from isoprobe.data.pipeline import SPLITS, PreparedData, WindowSet, prepare
from isoprobe.data.synth.generate import SynthConfig, ensure_synthetic
from isoprobe.errors import ConfigError
from isoprobe.training.checkpoint import Checkpoint, load_checkpoint
from isoprobe.training.metrics import Evaluation, evaluate, predict_logits

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """A checkpoint's model and, read on first use, its data (so that options can be checked against
    the model before the data are prepared)."""

    path: Path
    checkpoint: Checkpoint
    model: torch.nn.Module  # in eval mode, on `device`
    split: str
    device: torch.device
    data_root: Path | None = None

    @cached_property
    def data(self) -> PreparedData:
        data = checkpoint_data(self.checkpoint, self.data_root)
        if data.class_labels != self.checkpoint.class_labels:
            log.warning("classes in the data %s differ from the checkpoint's %s", data.class_labels, self.checkpoint.class_labels)
        return data

    @property
    def windows(self) -> WindowSet:
        """The evaluated split: windows x, class indices y, segment ids, window keys (start)."""
        return self.data.splits[self.split]

    @property
    def reference(self) -> WindowSet:
        """The training split (for the `mean` intervention and other fitted baselines)."""
        return self.data.splits["train"]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.checkpoint.class_names


def load_analysis(path: Path, data_root: Path | None = None, split: str = "test", device: str = "cpu",
                  needs_attention: bool = False) -> Analysis:
    """Read a checkpoint for analysis; its data are prepared when first used. needs_attention: refuse
    a multimodal MLP (no attention to intervene on)."""
    check_split(split)
    check_device(device)
    checkpoint = load_checkpoint(path)
    if needs_attention and not checkpoint.model_config.has_attention:
        raise ConfigError("checkpoint", str(path), "is a multimodal MLP, which has no attention to intervene on; "
                          "this needs an mmt or hierarchical checkpoint")
    model = checkpoint.build_model().to(device).eval()
    return Analysis(Path(path), checkpoint, model, split, torch.device(device), data_root)


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


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError("split", split, f"choose one of {', '.join(SPLITS)}")


def check_device(device: str) -> None:
    """Refuse a device torch cannot use here before any work, with a message instead of torch's traceback."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ConfigError("device", device, "choose cpu or cuda (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", device, "no CUDA device is available here; use --device cpu")


def evaluate_checkpoint(path: Path, data_root: Path | None = None, split: str = "test", device: str = "cpu",
                        batch_size: int = 1024) -> tuple[Analysis, Evaluation]:
    """Accuracy, balanced accuracy, per-class accuracy and confusion of a checkpoint on one split, with
    the analysis it read (checkpoint, data, device)."""
    analysis = load_analysis(path, data_root, split, device)
    logits = predict_logits(analysis.model, analysis.windows, analysis.model.modality_names, batch_size, device)
    return analysis, evaluate(logits.argmax(-1).numpy(), analysis.windows.y, len(analysis.class_names))
