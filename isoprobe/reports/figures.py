"""Static figures (matplotlib/seaborn). Functions take computed results; they never compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isoprobe.atomic import atomic_path


def confusion_png(confusion: np.ndarray, class_names: tuple[str, ...], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix as a heatmap (counts annotated when the matrix is small). The
    figure has its own Agg canvas: no backend is switched and pyplot's state is left alone."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    support = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, support, out=np.zeros(confusion.shape, dtype=float), where=support > 0)
    size = max(4.0, 0.35 * len(class_names) + 2)
    figure = Figure(figsize=(size + 1, size))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    sns.heatmap(share, vmin=0, vmax=1, cmap="viridis", square=True, ax=axes, xticklabels=class_names,
                yticklabels=class_names, annot=confusion if len(class_names) <= 20 else False, fmt="d",
                cbar_kws={"label": "share of true class"})
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120)
