"""What every analysis returns: a table of numbers with the configuration that produced them, and how
it writes itself (`write`: CSV, JSON with the configuration and provenance, Markdown; atomically).

The CLI prints them and the study collects what they write; the report reads that. `to_dict` hands out
plain values (JSON-ready, NaN as null), never the object's own state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from isoprobe.atomic import write_text_atomic


def write_table(out: Path, stem: str, table: pd.DataFrame, meta: dict | None = None) -> Path:
    """`stem`.csv, `stem`.json (rows plus `meta`) and `stem`.md in `out`; returns the CSV's path."""
    out = Path(out)
    write_text_atomic(out / f"{stem}.csv", table.to_csv(index=False))
    records = json.loads(table.to_json(orient="records", double_precision=15))
    write_text_atomic(out / f"{stem}.json", json.dumps({"meta": meta or {}, "rows": records}, indent=2, default=str))
    write_text_atomic(out / f"{stem}.md", table.to_markdown(index=False, floatfmt=".4g") + "\n")
    return out / f"{stem}.csv"


@dataclass(frozen=True)
class TableResult:
    config: Any  # a configuration dataclass with to_dict()
    table: pd.DataFrame
    kind: ClassVar[str] = "table"
    stem: ClassVar[str | None] = None  # the file name the table is written under (default: kind)

    def tables(self) -> dict[str, pd.DataFrame]:
        """What `write` writes: file stem -> table."""
        return {self.stem or self.kind: self.table}

    def write(self, out: Path, meta: dict | None = None) -> list[Path]:
        """Every table as CSV, JSON and Markdown in `out`; the JSON's meta holds the configuration, then
        `meta` (the provenance: isoprobe.provenance). Returns the CSVs' paths."""
        meta = {**self.config.to_dict(), **(meta or {})}
        return [write_table(out, stem, table, meta) for stem, table in self.tables().items()]

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict:
        rows = json.loads(self.table.to_json(orient="records", double_precision=15))  # NaN -> null
        return {"kind": self.kind, "config": self.config.to_dict(), "rows": rows}


# --- the tables of a study ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyTable:
    """One table of a study, OUT/tables/<name>.csv: where each run's rows come from (`source`, relative to
    the run folder, as the step's result writes it; None where the study builds the rows itself) and the
    columns the report reads from it besides the identification columns. `aliases`: other file names
    the report accepts (a single command's own file name)."""

    name: str
    source: str | None
    columns: tuple[str, ...]
    aliases: tuple[str, ...] = ()


# The one declaration the study collects and the report reads.
STUDY_TABLES: dict[str, StudyTable] = {t.name: t for t in (
    StudyTable("runs", None, ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "balanced_accuracy", "segments")),
    StudyTable("ablation", "ablate/ablation.csv", (
        "layers", "pathway", "heads", "intervention", "segments", "drop", "drop_ci_low", "drop_ci_high", "relative_drop",
        "chance_corrected_drop", "chance_corrected_ci_low", "chance_corrected_ci_high", "null_by_construction")),
    StudyTable("compare", "compare/compare.csv", ("block", "method", "layers", "estimate", "ci_low", "ci_high", "estimand")),
    StudyTable("compare_layers", "compare/compare-layers.csv", ("layer", "block", "method", "estimate", "ci_low", "ci_high"),
               aliases=("compare-layers",)),
    StudyTable("shift", "shift/shift.csv", ("layers", "pathway", "heads", "intervention", "site", "base_accuracy",
                                            "accuracy", "mmd2", "mmd2_null95")),
    StudyTable("knockout", "knockout/ablation.csv", (
        "layers", "window_centre", "pathway", "heads", "intervention", "windows", "segments", "prob_change",
        "prob_change_ci_low", "prob_change_ci_high", "null_by_construction")),
    StudyTable("sanity", "compare/sanity.csv", ("method", "step", "step_index", "spearman", "ci_low", "ci_high",
                                                "flagged")),
    StudyTable("emap", "emap/emap.csv", ("quantity", "class", "label", "estimate", "ci_low", "ci_high", "exact")),
    StudyTable("pid", "pid/pid.csv", ("target", "k", "part", "bits", "fraction", "ci_low", "ci_high", "floor_mean",
                                      "floor95", "expected_bits")),
    StudyTable("curves", None, ("epoch", "lambda", "loss", "train_accuracy", "val_accuracy", "val_loss")),
    StudyTable("confusion", None, ("true", "predicted", "count")),
    StudyTable("planted", None, ("check", "quantity", "method", "planted", "found", "ci_low", "ci_high", "tested", "low",
                                 "high", "passed")),
)}
