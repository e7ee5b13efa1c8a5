"""Per-condition statistics: accuracy drop with a paired bootstrap CI, an exact McNemar test,
true-class logit margin and KL(base ‖ intervened) (DESIGN §4)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import binomtest


def logit_margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the largest other logit, per window: [batch]."""
    true = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf")).max(dim=1).values
    return true - others


def kl_divergence(base: torch.Tensor, intervened: torch.Tensor) -> torch.Tensor:
    """KL(p_base ‖ p_intervened) per window, in nats: [batch]."""
    log_p, log_q = torch.log_softmax(base.double(), dim=1), torch.log_softmax(intervened.double(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def bootstrap_drop(base_correct: np.ndarray, intervened_correct: np.ndarray, n: int, seed: int,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of the accuracy drop, resampling windows with replacement (paired)."""
    if n <= 0 or len(base_correct) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    difference = base_correct.astype(np.float64) - intervened_correct.astype(np.float64)
    drops = np.empty(n)
    for start in range(0, n, 256):  # chunks keep the index matrix small
        index = rng.integers(0, len(difference), size=(min(256, n - start), len(difference)))
        drops[start : start + len(index)] = difference[index].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(drops, tail)), float(np.quantile(drops, 1 - tail))


def mcnemar_p(base_correct: np.ndarray, intervened_correct: np.ndarray) -> float:
    """Exact two-sided McNemar test on the windows whose correctness changed."""
    lost = int(np.sum(base_correct & ~intervened_correct))
    gained = int(np.sum(~base_correct & intervened_correct))
    if lost + gained == 0:
        return 1.0
    return float(binomtest(lost, lost + gained, 0.5).pvalue)


def condition_row(base: torch.Tensor, intervened: torch.Tensor, target: torch.Tensor, bootstrap: int, seed: int) -> dict:
    """The numbers of one condition; base/intervened logits [batch, class], target [batch]."""
    base_correct = (base.argmax(1) == target).numpy()
    intervened_correct = (intervened.argmax(1) == target).numpy()
    base_accuracy, accuracy = float(base_correct.mean()), float(intervened_correct.mean())
    low, high = bootstrap_drop(base_correct, intervened_correct, bootstrap, seed)
    margin_base, margin = logit_margin(base, target), logit_margin(intervened, target)
    return {
        "n": int(len(target)),
        "base_accuracy": base_accuracy,
        "accuracy": accuracy,
        "drop": base_accuracy - accuracy,
        "relative_drop": (base_accuracy - accuracy) / base_accuracy if base_accuracy > 0 else float("nan"),
        "drop_ci_low": low,
        "drop_ci_high": high,
        "p_value": mcnemar_p(base_correct, intervened_correct),
        "logit_margin_base": float(margin_base.mean()),
        "logit_margin": float(margin.mean()),
        "logit_margin_change": float((margin - margin_base).mean()),
        "kl": float(kl_divergence(base, intervened).mean()),
    }
