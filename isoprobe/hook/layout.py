"""Which token positions of a foreign model belong to which modality, and which the prediction reads.

isoprobe's pathways (`isoprobe.models.pathways`: uni, cross, relay, readout, directed pairs) are edges
between token groups: group 0 is CLS (or any readout token), groups 1…M the modalities in the order of
`modality_names`. A `TokenLayout` gives those groups for a model isoprobe did not build, so every named
pathway means on it what it means on isoprobe's own transformers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from isoprobe.errors import ConfigError

CLS = 0


@dataclass(frozen=True)
class TokenLayout:
    """groups: the group of each position (0 = CLS or readout token, m = the m-th modality, 1-based);
    modality_names: the modalities' names, in group order; read: the positions the prediction reads
    (default: the CLS positions, or every position when there is none, as mean pooling reads them)."""

    groups: tuple[int, ...]
    modality_names: tuple[str, ...]
    read: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        groups, names = tuple(int(g) for g in self.groups), tuple(str(n) for n in self.modality_names)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "modality_names", names)
        if not groups:
            raise ConfigError("layout", groups, "name the group of at least one token position")
        if len(set(names)) != len(names) or not names or "cls" in names:
            raise ConfigError("modality_names", names, "one or more distinct names (not 'cls')")
        unknown = sorted({g for g in groups if not 0 <= g <= len(names)})
        if unknown:
            raise ConfigError("layout", unknown, f"groups are 0 (CLS) or 1–{len(names)}, one per modality name")
        read = self.read
        if read is None:
            read = tuple(i for i, g in enumerate(groups) if g == CLS) or tuple(range(len(groups)))
        read = tuple(sorted({int(p) for p in read}))
        if not read or not all(0 <= p < len(groups) for p in read):
            raise ConfigError("read", read, f"positions 0–{len(groups) - 1} the prediction reads")
        object.__setattr__(self, "read", read)

    @classmethod
    def cls_first(cls, counts: dict[str, int]) -> "TokenLayout":
        """CLS, then each modality's tokens in turn: `cls_first({"emg": 12, "acc": 3})`."""
        return cls((CLS, *_blocks(counts)), tuple(counts))

    @classmethod
    def cls_last(cls, counts: dict[str, int]) -> "TokenLayout":
        """Each modality's tokens in turn, then CLS (read there)."""
        return cls((*_blocks(counts), CLS), tuple(counts))

    @classmethod
    def blocks(cls, counts: dict[str, int]) -> "TokenLayout":
        """Each modality's tokens in turn, no CLS: the prediction reads every position (mean pooling)."""
        return cls(tuple(_blocks(counts)), tuple(counts))

    @classmethod
    def interleaved(cls, names: Sequence[str], steps: int, cls_token: bool = True) -> "TokenLayout":
        """Per time step one token of each modality (emg, acc, emg, acc, …), after a CLS token if any."""
        body = tuple(m + 1 for _ in range(steps) for m in range(len(names)))
        return cls(((CLS,) if cls_token else ()) + body, tuple(names))

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def token_modalities(self) -> torch.Tensor:
        """[pos] long: each position's group, as isoprobe's models expose it."""
        return torch.tensor(self.groups, dtype=torch.long)

    @property
    def prediction_positions(self) -> torch.Tensor:
        """[pos] bool: the positions the prediction reads."""
        read = torch.zeros(len(self.groups), dtype=torch.bool)
        read[list(self.read)] = True
        return read

    def check_length(self, length: int, where: str) -> None:
        """A sequence of `length` tokens at `where` must have one group per position."""
        if length != len(self.groups):
            raise ConfigError("layout", f"{len(self.groups)} positions",
                              f"{where} runs on sequences of {length} tokens: give one group per position")


def _blocks(counts: dict[str, int]) -> list[int]:
    if not counts or any(int(n) < 1 for n in counts.values()):
        raise ConfigError("layout", dict(counts), "one or more modalities, each with at least one token")
    return [m + 1 for m, n in enumerate(counts.values()) for _ in range(int(n))]
