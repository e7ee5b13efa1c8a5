"""What every analysis returns: a table of numbers with the configuration that produced them.

The CLI prints and writes these; reports (later) read them. `to_dict` hands out plain values
(JSON-ready, NaN as null), never the object's own state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd


@dataclass(frozen=True)
class TableResult:
    config: Any  # a configuration dataclass with to_dict()
    table: pd.DataFrame
    kind: ClassVar[str] = "table"

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict:
        rows = json.loads(self.table.to_json(orient="records", double_precision=15))  # NaN -> null
        return {"kind": self.kind, "config": self.config.to_dict(), "rows": rows}
