"""The tables of analyses/VALIDATION.md from a finished validation study (analyses/validation.toml).

    python analyses/validation_summary.py runs/validation > tables.md

Prints, as Markdown: test accuracy of every run (95% stratified cluster-bootstrap CI over segments),
every planted check with the number it tests, the region it must lie in and the verdict, and the
IsoNet rows (cross masked in all layers) beside the other estimates of compare, per data set."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def interval(row, value="found", low="ci_low", high="ci_high", digits=3) -> str:
    if pd.isna(row[value]):
        return "—"
    text = f"{row[value]:.{digits}f}"
    if pd.notna(row[low]) and pd.notna(row[high]):
        text += f" [{row[low]:.{digits}f}, {row[high]:.{digits}f}]"
    return text


def region(row) -> str:
    low, high = row["low"], row["high"]
    tested = {"ci": "CI", "ci_low": "CI low", "ci_high": "CI high", "estimate": "estimate"}[row["tested"]]
    if pd.notna(low) and pd.notna(high):
        return f"{tested} in [{low:.3g}, {high:.3g}]"
    return f"{tested} > {low:.3g}" if pd.notna(low) else f"{tested} < {high:.3g}"


def accuracy_table(runs: pd.DataFrame) -> str:
    rows = ["| data | model | modalities | test accuracy [95% CI] | balanced accuracy | segments |",
            "| --- | --- | --- | --- | --- | --- |"]
    for row in runs.itertuples():
        rows.append(f"| {row.data} | {row.model} | {row.modalities} | "
                    f"{interval(row._asdict(), 'accuracy', 'accuracy_ci_low', 'accuracy_ci_high')} | "
                    f"{row.balanced_accuracy:.3f} | {row.segments} |")
    return "\n".join(rows)


def planted_table(planted: pd.DataFrame) -> str:
    rows = ["| data | model | modalities | check | found [95% CI] | rule | passed |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in planted.to_dict("records"):
        rows.append(f"| {row['data']} | {row['model']} | {row['modalities']} | {row['check']} | {interval(row)} | "
                    f"{region(row)} | {'yes' if str(row['passed']).lower() in ('true', '1') else '**no**'} |")
    return "\n".join(rows)


def compare_table(compare: pd.DataFrame) -> str:
    rows = ["| data | model | method | layers | estimate [95% CI] |", "| --- | --- | --- | --- | --- |"]
    for row in compare.to_dict("records"):
        rows.append(f"| {row['data']} | {row['model']} | {row['method']} | {row['layers']} | "
                    f"{interval(row, 'estimate')} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    args = parser.parse_args()
    tables = args.study / "tables"
    runs, planted = pd.read_csv(tables / "runs.csv"), pd.read_csv(tables / "planted.csv")
    passed = planted.passed.astype(str).str.lower().isin(["true", "1"])
    print(f"{int(passed.sum())} of {len(planted)} planted checks passed.\n")
    print("### Accuracy\n\n" + accuracy_table(runs) + "\n")
    print("### Planted checks\n\n" + planted_table(planted) + "\n")
    if (tables / "compare.csv").is_file():
        compare = pd.read_csv(tables / "compare.csv")
        print("### Every estimate (compare)\n\n" + compare_table(compare) + "\n")


if __name__ == "__main__":
    main()
