"""Per-channel z-scores fitted on training windows only; the statistics travel with the model (DESIGN §2.4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIN_STD = 1e-8  # a dead channel is centred, not blown up


@dataclass(frozen=True)
class ZScore:
    """mean, std: modality group -> [channel] float64."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def fit(cls, windows: dict[str, np.ndarray]) -> "ZScore":
        """Statistics over every window and time step of each group; windows: group -> [batch, time, channel]."""
        mean, std = {}, {}
        for name, values in windows.items():
            flat = values.reshape(-1, values.shape[-1])
            mean[name] = flat.mean(axis=0, dtype=np.float64)
            std[name] = np.maximum(flat.std(axis=0, dtype=np.float64), _MIN_STD)
        return cls(mean, std)

    def apply(self, windows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Normalised float32 copies: group -> [batch, time, channel]."""
        return {
            name: ((values - self.mean[name].astype(np.float32)) / self.std[name].astype(np.float32)).astype(np.float32)
            for name, values in windows.items()
        }

    def to_dict(self) -> dict:
        return {"mean": {k: v.tolist() for k, v in self.mean.items()}, "std": {k: v.tolist() for k, v in self.std.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "ZScore":
        return cls({k: np.asarray(v, dtype=np.float64) for k, v in data["mean"].items()},
                   {k: np.asarray(v, dtype=np.float64) for k, v in data["std"].items()})
