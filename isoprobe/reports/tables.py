"""Tables written to disk (CSV, JSON), atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from isoprobe.atomic import write_text_atomic


def write_evaluation(out: Path, evaluation, class_names: tuple[str, ...], title: str = "", meta: dict | None = None) -> None:
    """metrics.json (with `meta`, e.g. the provenance), per_class.csv, confusion.csv and confusion.png in `out`."""
    from isoprobe.reports.figures import confusion_png

    out = Path(out)
    metrics = {**evaluation.to_dict(class_names), **({"meta": meta} if meta else {})}
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
    per_class = pd.DataFrame({"class": class_names, "accuracy": evaluation.per_class_accuracy,
                              "n": evaluation.confusion.sum(axis=1)})
    write_text_atomic(out / "per_class.csv", per_class.to_csv(index=False))
    confusion = pd.DataFrame(evaluation.confusion, index=pd.Index(class_names, name="true"), columns=class_names)
    write_text_atomic(out / "confusion.csv", confusion.to_csv())
    confusion_png(evaluation.confusion, class_names, out / "confusion.png", title)
