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
    def fit(cls, windows: dict[str, np.ndarray], chunk: int = 1024) -> "ZScore":
        """Statistics over every window and time step of each group; windows: group -> [batch, time, channel].

        Accumulates in float64 chunk by chunk (Chan et al.'s pairwise update of mean and sum of
        squared deviations), so memory stays bounded and precision does not depend on the size.
        """
        mean, std = {}, {}
        for name, values in windows.items():
            count, centre, spread = 0, np.zeros(values.shape[-1]), np.zeros(values.shape[-1])
            for first in range(0, len(values), chunk):
                block = np.asarray(values[first : first + chunk]).reshape(-1, values.shape[-1])
                block_mean = block.mean(axis=0, dtype=np.float64)
                deviation = np.subtract(block, block_mean.astype(block.dtype))  # deviations are small: float32 holds them
                deviation *= deviation
                block_spread = deviation.sum(axis=0, dtype=np.float64)
                total = count + len(block)
                delta = block_mean - centre
                centre = centre + delta * len(block) / total
                spread = spread + block_spread + delta**2 * count * len(block) / total
                count = total
            mean[name] = centre
            std[name] = np.maximum(np.sqrt(spread / max(count, 1)), _MIN_STD)
        return cls(mean, std)

    def apply(self, windows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Normalised float32 copies: group -> [batch, time, channel]."""
        out = {}
        for name, values in windows.items():
            normalised = np.subtract(values, self.mean[name].astype(np.float32), dtype=np.float32)
            normalised /= self.std[name].astype(np.float32)
            out[name] = normalised
        return out

    def to_dict(self) -> dict:
        return {"mean": {k: v.tolist() for k, v in self.mean.items()}, "std": {k: v.tolist() for k, v in self.std.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "ZScore":
        return cls({k: np.asarray(v, dtype=np.float64) for k, v in data["mean"].items()},
                   {k: np.asarray(v, dtype=np.float64) for k, v in data["std"].items()})
