"""The tables of analyses/VALIDATION.md from a finished validation study (analyses/validation.toml).

    python analyses/validation_summary.py runs/validation > tables.md

Prints, as Markdown: test accuracy of every run (95% stratified cluster-bootstrap CI over segments),
every planted check with the number it tests, the region it must lie in and the verdict, and the
IsoNet rows (cross masked in all layers) beside the other estimates of compare, per data set."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def markdown(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
                      *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)])


def accuracy_table(runs: pd.DataFrame) -> str:
    return markdown(["data", "model", "modalities", "test accuracy [95% CI]", "balanced accuracy", "segments"],
                    [[r["data"], r["model"], r["modalities"], interval(r, "accuracy", "accuracy_ci_low", "accuracy_ci_high"),
                      f"{r['balanced_accuracy']:.3f}", r["segments"]] for r in runs.to_dict("records")])


def planted_table(planted: pd.DataFrame) -> str:
    verdict = lambda passed: "yes" if str(passed).lower() in ("true", "1") else "**no**"
    return markdown(["data", "model", "modalities", "check", "found [95% CI]", "rule", "passed"],
                    [[r["data"], r["model"], r["modalities"], r["check"], interval(r), region(r), verdict(r["passed"])]
                     for r in planted.to_dict("records")])


def compare_table(compare: pd.DataFrame) -> str:
    return markdown(["data", "model", "block", "method", "layers", "estimate [95% CI]"],
                    [[r["data"], r["model"], r["block"], r["method"], r["layers"], interval(r, "estimate")]
                     for r in compare.to_dict("records")])


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
        print("### Every estimate (compare.csv: all layers; per layer in compare_layers.csv)\n\n"
              + compare_table(compare) + "\n")


if __name__ == "__main__":
    main()
