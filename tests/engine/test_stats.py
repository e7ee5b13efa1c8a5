"""Per-condition statistics against independent references: the exact McNemar test against
scipy's binomial test on discordant counts counted by a loop, the paired bootstrap CI, and the logit
margin and KL divergence against float64 numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from isoprobe.engine.stats import bootstrap_drop, condition_row, kl_divergence, logit_margin, mcnemar_p


def paired(n: int, seed: int, p_base: float = 0.9, p_int: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n) < p_base, rng.random(n) < p_int


@pytest.mark.parametrize("n, seed", [(20, 0), (57, 1), (200, 2), (9, 3)])
def test_mcnemar_equals_binomial_test_on_discordant_pairs(n, seed):
    base, intervened = paired(n, seed)
    lost = gained = 0
    for b, i in zip(base.tolist(), intervened.tolist()):
        lost += b and not i
        gained += i and not b
    expected = binomtest(lost, lost + gained, 0.5, alternative="two-sided").pvalue
    assert mcnemar_p(base, intervened) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_known_values():
    # 6 lost, 0 gained: two-sided p = 2 · 0.5**6
    base = np.array([True] * 6 + [True, False])
    intervened = np.array([False] * 6 + [True, False])
    assert mcnemar_p(base, intervened) == pytest.approx(2 * 0.5**6)
    # no discordant pair: nothing to test
    assert mcnemar_p(base, base.copy()) == 1.0
    # symmetric discordance: p = 1
    assert mcnemar_p(np.array([True, False]), np.array([False, True])) == pytest.approx(1.0)


def test_bootstrap_ci_contains_the_drop_and_is_deterministic():
    base, intervened = paired(150, 4)
    drop = base.mean() - intervened.mean()
    low, high = bootstrap_drop(base, intervened, 500, seed=3)
    assert low <= drop <= high and low < high
    assert (low, high) == bootstrap_drop(base, intervened, 500, seed=3)
    assert (low, high) != bootstrap_drop(base, intervened, 500, seed=4)
    # a wider level gives a wider interval
    wide = bootstrap_drop(base, intervened, 500, seed=3, level=0.99)
    assert wide[0] <= low and wide[1] >= high


def test_bootstrap_agrees_with_the_normal_approximation():
    """With many windows and resamples the percentile interval approaches drop ± 1.96·sd/√n of the
    paired differences (the sampling distribution of a mean)."""
    base, intervened = paired(600, 5)
    difference = base.astype(float) - intervened.astype(float)
    half = 1.959964 * difference.std() / math.sqrt(len(difference))
    low, high = bootstrap_drop(base, intervened, 4000, seed=2)
    assert low == pytest.approx(difference.mean() - half, abs=0.01)
    assert high == pytest.approx(difference.mean() + half, abs=0.01)


def test_bootstrap_of_identical_predictions_is_zero_and_empty_is_nan():
    base, _ = paired(40, 6)
    assert bootstrap_drop(base, base.copy(), 100, 0) == (0.0, 0.0)
    assert all(math.isnan(x) for x in bootstrap_drop(base[:0], base[:0], 100, 0))
    assert all(math.isnan(x) for x in bootstrap_drop(base, base, 0, 0))


def test_logit_margin_against_numpy():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(30, 5)) * 3
    target = rng.integers(0, 5, size=30)
    expected = np.array([row[t] - max(v for j, v in enumerate(row) if j != t) for row, t in zip(logits, target)])
    got = logit_margin(torch.tensor(logits, dtype=torch.float64), torch.tensor(target))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    # float32 logits: within float32 rounding of the float64 answer
    got32 = logit_margin(torch.tensor(logits, dtype=torch.float32), torch.tensor(target))
    np.testing.assert_allclose(got32.numpy(), expected, rtol=0, atol=1e-5)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_kl_against_numpy():
    rng = np.random.default_rng(8)
    base = rng.normal(size=(25, 4)) * 2
    intervened = base + rng.normal(size=(25, 4))
    p, q = _softmax(base), _softmax(intervened)
    expected = (p * np.log(p / q)).sum(axis=1)
    got = kl_divergence(torch.tensor(base, dtype=torch.float32), torch.tensor(intervened, dtype=torch.float32))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert (got >= 0).all()
    assert kl_divergence(torch.tensor(base), torch.tensor(base + 5.0)).abs().max() < 1e-12  # shift-invariant


def test_condition_row_combines_the_statistics():
    rng = np.random.default_rng(10)
    target = torch.tensor(rng.integers(0, 3, size=60))
    base = torch.tensor(rng.normal(size=(60, 3)), dtype=torch.float32)
    base[torch.arange(60), target] += 2.0  # mostly right
    intervened = base + torch.tensor(rng.normal(size=(60, 3)) * 2, dtype=torch.float32)
    row = condition_row(base, intervened, target, bootstrap=200, seed=1)
    base_correct = (base.argmax(1) == target).numpy()
    int_correct = (intervened.argmax(1) == target).numpy()
    assert row["n"] == 60
    assert row["base_accuracy"] == pytest.approx(base_correct.mean())
    assert row["accuracy"] == pytest.approx(int_correct.mean())
    assert row["drop"] == pytest.approx(base_correct.mean() - int_correct.mean())
    assert row["relative_drop"] == pytest.approx(row["drop"] / row["base_accuracy"])
    assert row["drop_ci_low"] <= row["drop"] <= row["drop_ci_high"]
    assert row["p_value"] == pytest.approx(mcnemar_p(base_correct, int_correct))
    margin_base = logit_margin(base.double(), target).mean().item()
    margin = logit_margin(intervened.double(), target).mean().item()
    assert row["logit_margin_base"] == pytest.approx(margin_base, abs=1e-5)
    assert row["logit_margin"] == pytest.approx(margin, abs=1e-5)
    assert row["logit_margin_change"] == pytest.approx(margin - margin_base, abs=1e-5)
    assert row["kl"] == pytest.approx(kl_divergence(base, intervened).mean().item())
    assert row["kl"] > 0.1
