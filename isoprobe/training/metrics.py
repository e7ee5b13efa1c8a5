"""Classification metrics for `isoprobe eval` and the training history."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from isoprobe.data.batches import window_batches
from isoprobe.data.pipeline import WindowSet
from isoprobe.models.modes import evaluating


@dataclass
class Evaluation:
    accuracy: float
    balanced_accuracy: float
    per_class_accuracy: np.ndarray  # [class]
    confusion: np.ndarray  # [true class, predicted class] counts
    n: int

    def to_dict(self, class_names: tuple[str, ...]) -> dict:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            # null, not NaN, for a class absent from the split: strict JSON has no NaN
            "per_class_accuracy": {name: (None if np.isnan(a) else float(a)) for name, a in zip(class_names, self.per_class_accuracy)},
            "confusion": self.confusion.tolist(),
            "class_names": list(class_names),
        }


def evaluate(predicted: np.ndarray, target: np.ndarray, n_classes: int) -> Evaluation:
    """Accuracy, balanced accuracy (mean recall over the classes present), per-class accuracy, confusion."""
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (target, predicted), 1)
    support = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), support, out=np.full(n_classes, np.nan), where=support > 0)
    return Evaluation(
        accuracy=float(np.mean(predicted == target)) if len(target) else float("nan"),
        balanced_accuracy=float(np.nanmean(per_class)) if (support > 0).any() else float("nan"),
        per_class_accuracy=per_class,
        confusion=confusion,
        n=int(len(target)),
    )


@torch.no_grad()
def predict_logits(model: torch.nn.Module, windows: WindowSet | dict, names: tuple[str, ...], batch_size: int = 1024,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits [batch, class] for every window, in batches, in eval mode, on CPU at the end."""
    x = windows.x if isinstance(windows, WindowSet) else windows
    with evaluating(model):
        return torch.cat([model(*batch).float().cpu() for batch in window_batches(x, names, batch_size, device)])
