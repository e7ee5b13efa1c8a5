"""One loader for every analysis command: a checkpoint's model, ready to evaluate, with its data.

`eval`, `ablate` and every later analysis start here, so they all read the same split the same way:
the model in eval mode on the device, the split's windows (with labels, segments and window keys),
and the training split as the reference set for statistics fitted on training data."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch

from isoprobe.data.cache import default_cache_dir
from isoprobe.data.pipeline import SPLITS, DataConfig, PreparedData, WindowSet, prepare
from isoprobe.data.synth.generate import SynthConfig, ensure_synthetic
from isoprobe.errors import ConfigError, IsoprobeError
from isoprobe.training.checkpoint import Checkpoint, load_checkpoint
from isoprobe.training.metrics import Evaluation, evaluate, predict_logits

log = logging.getLogger(__name__)


class _Splits:
    """The windows an analysis reads from its prepared `data`: the evaluated `split` and the reference."""

    @property
    def windows(self) -> WindowSet:
        """The evaluated split: windows x, class indices y, segment ids, window keys (start)."""
        return self.data.splits[self.split]

    @property
    def reference(self) -> WindowSet:
        """The training split (for the `mean` intervention and other fitted baselines)."""
        return self.data.splits["train"]


@dataclass
class Analysis(_Splits):
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
    def class_names(self) -> tuple[str, ...]:
        return self.checkpoint.class_names

    @property
    def class_labels(self) -> tuple[int, ...]:
        """The data-set label of each class index, as the model was trained."""
        return self.checkpoint.class_labels


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


# --- a model isoprobe did not build: `--model package.module:function` ------------------------------------

def code_folders(folder: str | None = None) -> list[str]:
    """Where a --model module is looked for before the Python path, first first: `folder` (a study
    recipe's), then the current folder."""
    return [path for path in (folder, os.getcwd()) if path]


def model_function(spec: str, folder: str | None = None) -> Callable:
    """The function `--model package.module:function` names, imported (which runs the module's code: the
    CLI imports what the user named; a study recipe needs --trust-code for it). The current folder is
    searched first, as `python -m` would, so `--model my_models:build` finds ./my_models.py; `folder`
    (a study recipe's) before it."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError("model", spec, "write package.module:function (a function returning isoprobe.hook(...)'s model)")
    for searched in reversed(code_folders(folder)):
        if searched not in sys.path:
            sys.path.insert(0, searched)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigError("model", spec, f"no module {exc.name} is importable from here or the Python path") from None
        raise ConfigError("model", spec, f"importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the user's module raised at import: say so, in one line
        raise ConfigError("model", spec, f"importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    function = module
    for part in attribute.split("."):
        function = getattr(function, part, None)
    if not callable(function):
        raise ConfigError("model", spec, f"{module_name} has no function {attribute}")
    return function


@dataclass
class ForeignAnalysis(_Splits):
    """A model isoprobe did not build and its data, read like `Analysis`: the data folder's windows,
    z-scored with the training split's statistics, and the model `build` returns — called with the
    prepared data (PreparedData: class names, channels, window length) if it takes a parameter. It must
    return the model `isoprobe.hook` returned, whose `inputs` turns isoprobe's windows into its arguments."""

    spec: str
    build: Callable
    split: str
    device: torch.device
    data_root: Path
    data_config: DataConfig | None = None  # default: the folder's data set (detected), first subject, standard windows
    path: None = None  # no checkpoint file: the provenance records none

    @cached_property
    def data(self) -> PreparedData:
        from isoprobe.data.datasets import locate

        if self.data_config is not None:
            return prepare(self.data_config)
        dataset, _, folder, subjects = locate(self.data_root)  # the layout, from the file names
        return prepare(DataConfig(root=str(folder), dataset=dataset, subject=min(subjects, default=1)))

    @cached_property
    def model(self) -> torch.nn.Module:
        from isoprobe.hook import HookedForeignModel

        takes_data = any(p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                         for p in inspect.signature(self.build).parameters.values())
        try:
            model = self.build(self.data) if takes_data else self.build()
        except IsoprobeError:
            raise
        except Exception as exc:
            raise ConfigError("model", self.spec, f"raised {type(exc).__name__}: {exc}") from None
        if not isinstance(model, HookedForeignModel):
            raise ConfigError("model", self.spec, f"returned {type(model).__name__}; return isoprobe.hook(model, layout)")
        missing = [name for name in model.modality_names if name not in self.windows.x]
        if missing:
            raise ConfigError("model", self.spec, f"reads modalities {', '.join(missing)}, which the data in "
                              f"{self.data_root} do not have ({', '.join(self.windows.x)})")
        return model.to(self.device).eval()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.data.class_names

    @property
    def class_labels(self) -> tuple[int, ...]:
        return self.data.class_labels


def load_model_or_checkpoint(checkpoint: Path | None, model: str | None, data_root: Path | None = None,
                             split: str = "test", device: str = "cpu",
                             needs_attention: bool = False) -> "Analysis | ForeignAnalysis":
    """`load_analysis` of a checkpoint, or a ForeignAnalysis of `--model package.module:function` (which
    needs the data folder). The function is imported here, before any data are read."""
    if checkpoint is not None and model is not None:
        raise ConfigError("model", model, "give a checkpoint or --model, not both")
    if model is None:
        if checkpoint is None:
            raise ConfigError("checkpoint", None, "give an isoprobe checkpoint.pt, or --model package.module:function")
        return load_analysis(checkpoint, data_root, split, device, needs_attention)
    check_split(split)
    check_device(device)
    build = model_function(model)
    if data_root is None:
        raise ConfigError("data", None, "--model needs the data folder (--data): there is no checkpoint to record it")
    return ForeignAnalysis(model, build, split, torch.device(device), Path(data_root))
