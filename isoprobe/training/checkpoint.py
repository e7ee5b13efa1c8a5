"""Checkpoints holding only tensors and plain values (DESIGN §6).

Loaded with `torch.load(weights_only=True)`: a file holding pickled Python objects is refused,
never unpickled. Written to a temporary file and renamed.
"""

from __future__ import annotations

import datetime
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from isoprobe import __version__
from isoprobe.atomic import atomic_path
from isoprobe.data.normalise import ZScore
from isoprobe.data.pipeline import DataConfig
from isoprobe.errors import ConfigError, DataFormatError
from isoprobe.models import build_model
from isoprobe.models.config import ModelConfig

FORMAT = "isoprobe-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained model and its data pipeline."""

    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    data_config: DataConfig
    zscore: ZScore
    class_labels: tuple[int, ...]
    class_names: tuple[str, ...]
    train_config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    synth: dict | None = None  # the generator's config when the data were synthetic
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # training state for resuming (last.pt only)
    provenance: dict = field(default_factory=dict)  # what made it (isoprobe.provenance), plain values

    def to_payload(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "isoprobe_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model_config": self.model_config.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict.items()},
            "data_config": self.data_config.to_dict(),
            "zscore": self.zscore.to_dict(),
            "class_labels": list(self.class_labels),
            "class_names": list(self.class_names),
            "train_config": dict(self.train_config),
            "history": list(self.history),
            "synth": self.synth,
            "metrics": dict(self.metrics),
            "extra": self.extra,
            "provenance": dict(self.provenance),
        }

    def build_model(self) -> torch.nn.Module:
        """The model with these weights, in eval mode; weights that do not fit the config are refused."""
        model = build_model(self.model_config)
        missing, unexpected = [], []
        own = model.state_dict()
        for name in own:
            if name not in self.state_dict:
                missing.append(name)
        for name, value in self.state_dict.items():
            if name not in own:
                unexpected.append(name)
            elif own[name].shape != value.shape:
                unexpected.append(f"{name} (shape {tuple(value.shape)}, config expects {tuple(own[name].shape)})")
        if missing or unexpected:
            detail = "; ".join(filter(None, [
                f"missing {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}" if missing else "",
                f"not fitting {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}" if unexpected else "",
            ]))
            raise DataFormatError(self.extra.get("path", "checkpoint"), f"weights do not fit the model configuration: {detail}", "state_dict")
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    with atomic_path(path) as temporary:
        torch.save(checkpoint.to_payload(), temporary)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DataFormatError(path, "checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise DataFormatError(path, "is not a PyTorch checkpoint (not a zip archive): truncated, or a file of another kind")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message opens with advice to reload with weights_only=False (and ANSI codes): name only
        # the object the file asked for, which is what the user needs to judge the file.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        reason = f"it refers to {found.group(1)}" if found else "objects other than tensors and plain values"
        raise DataFormatError(
            path, f"holds pickled Python objects that isoprobe will not unpickle ({reason}); "
            "isoprobe checkpoints hold only tensors and plain values") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataFormatError(path, f"could not be read, truncated or corrupt ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise DataFormatError(path, f"is not an isoprobe checkpoint (format {found!r}, expected {FORMAT!r}); "
                              "was it written by another tool?", "format")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise DataFormatError(path, f"has format version {version!r}, newer than this isoprobe reads ({VERSION}); "
                              "upgrade isoprobe", "version")
    return payload


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and validate a checkpoint; clear errors for anything that is not one."""
    path = Path(path)
    payload = _read(path)
    try:
        checkpoint = Checkpoint(
            model_config=ModelConfig.from_dict(payload["model_config"]),
            state_dict=payload["state_dict"],
            data_config=DataConfig.from_dict(payload["data_config"]),
            zscore=ZScore.from_dict(payload["zscore"]),
            class_labels=tuple(payload["class_labels"]),
            class_names=tuple(payload["class_names"]),
            train_config=payload.get("train_config", {}),
            history=payload.get("history", []),
            synth=payload.get("synth"),
            metrics=payload.get("metrics", {}),
            extra=payload.get("extra") or {},
            provenance=payload.get("provenance") or {},
        )
    except KeyError as exc:
        raise DataFormatError(path, f"is missing the field {exc.args[0]!r}", exc.args[0]) from None
    except (ConfigError, TypeError) as exc:
        raise DataFormatError(path, f"holds a configuration this isoprobe cannot read: {exc}") from None
    checkpoint.extra = {**checkpoint.extra, "path": str(path)}
    return checkpoint
