"""Model inputs in batches: one [batch, time, channel] tensor per modality group, in the model's order."""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import torch


def window_batches(windows: Mapping[str, np.ndarray], names: tuple[str, ...], batch_size: int,
                   device: torch.device | str = "cpu", index: np.ndarray | None = None) -> Iterator[list[torch.Tensor]]:
    """Consecutive batches of model inputs: one [batch, time, channel] tensor per group in `names`, on
    `device`. With `index` [window], the windows at those positions in that order (donors, say)."""
    n = len(next(iter(windows.values()))) if index is None else len(index)
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size) if index is None else index[start : start + batch_size]
        yield [torch.as_tensor(np.asarray(windows[name][rows]), device=device) for name in names]
