"""A toy attribution method for the registry test: every window's share is one half for each modality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from isoprobe.attribution.common import COLUMNS
from isoprobe.options import Options
from isoprobe.results import TableResult


@dataclass(frozen=True)
class ToyConfig(Options):
    target: str = "true"
    bootstrap: int = 1000
    seed: int = 0
    steps: int = 3


@dataclass(frozen=True)
class ToyResult(TableResult):
    kind: ClassVar[str] = "attribution"


def attribute(model, windows, config: ToyConfig, reference=None, device="cpu", progress=None) -> ToyResult:
    rows = [{"method": "toy", "site": "inputs", "part": part, "quantity": "share", "estimate": 0.5, "ci_low": 0.5,
             "ci_high": 0.5, "windows": len(windows), "segments": len(set(windows.segment))} for part in ("emg", "acc")]
    return ToyResult(config, pd.DataFrame(rows, columns=list(COLUMNS)))
