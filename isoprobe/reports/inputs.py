"""A study folder as the report reads it: `DIR/study.json` (optional) and the tables `DIR/tables/*.csv`
that `isoprobe study` writes, each checked for the columns the report uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from isoprobe.errors import DataFormatError, IsoprobeError
from isoprobe.reports.aggregate import ID_COLUMNS
from isoprobe.results import STUDY_TABLES

# table -> the columns the report reads from it (besides the identification columns): the study's declaration
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {name: table.columns for name, table in STUDY_TABLES.items()}
# Read where present, absent in older tables: ablation's `caveat` (few segments), compare's and compare_layers'
# `null_by_construction` (aggregate.with_null reads a missing one as False).
# Columns that hold labels, even where every value looks like a number.
TEXT_COLUMNS = ("dataset", "data", "arch", "modalities", "configuration", "run", "layers", "layer", "pathway", "heads",
                "intervention", "site", "block", "method", "estimand", "true", "predicted", "check", "quantity", "planted",
                "tested", "caveat")
# other file names accepted (compare's own name for compare_layers.csv)
ALIASES = {name: table.aliases for name, table in STUDY_TABLES.items() if table.aliases}


@dataclass
class Study:
    """The tables found (name -> DataFrame), why each missing one is missing, and study.json."""

    root: Path
    tables: dict[str, pd.DataFrame]
    absent: dict[str, str]
    meta: dict = field(default_factory=dict)


def load_study(root: Path) -> Study:
    root = Path(root)
    if not root.is_dir():
        raise IsoprobeError(f"{root}: not a folder; expected a study folder holding tables/*.csv")
    folder = root / "tables"
    if not folder.is_dir():
        raise IsoprobeError(f"{root}: no tables/ folder; a study folder holds tables/*.csv as `isoprobe study` writes them")
    tables, absent = {}, {}
    for name, columns in TABLE_COLUMNS.items():
        path = next((folder / f"{stem}.csv" for stem in (name, *ALIASES.get(name, ())) if (folder / f"{stem}.csv").is_file()), None)
        if path is None:
            absent[name] = f"tables/{name}.csv not found"
            continue
        table = _read(path, columns)
        if table.empty:
            absent[name] = f"tables/{path.name} has no rows"
            continue
        tables[name] = table
    if not tables:
        raise IsoprobeError(f"{folder}: none of the study tables ({', '.join(f'{n}.csv' for n in TABLE_COLUMNS)}) is there")
    return Study(root, tables, absent, _read_meta(root / "study.json"))


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, nrows=0).columns
        table = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS if c in header}, keep_default_na=False,
                            na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"not a readable CSV table ({exc})") from None
    missing = [c for c in (*ID_COLUMNS, *columns) if c not in table.columns]
    if missing:
        raise DataFormatError(path, f"missing column(s) {', '.join(missing)}; the report needs "
                                    f"{', '.join((*ID_COLUMNS, *columns))}")
    return table


def _read_meta(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataFormatError(path, f"expected a JSON object with recipe, provenance and title, got {type(meta).__name__}")
    return meta
