"""Static figures (matplotlib/seaborn). Functions take computed results; they never compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isoprobe.atomic import atomic_path


def confusion_png(confusion: np.ndarray, class_names: tuple[str, ...], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix as a heatmap (counts annotated when the matrix is small)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    support = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, support, out=np.zeros(confusion.shape, dtype=float), where=support > 0)
    size = max(4.0, 0.35 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(share, vmin=0, vmax=1, cmap="viridis", square=True, ax=axes, xticklabels=class_names,
                yticklabels=class_names, annot=confusion if len(class_names) <= 20 else False, fmt="d",
                cbar_kws={"label": "share of true class"})
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=120)
    finally:
        plt.close(figure)
