"""Statistics of an ablation grid (`isoprobe.engine.stats`) against independent references written
here: the stratified bootstrap's weights against the textbook variance of a stratified mean, the
coverage of the intervals by simulation (with the former interval as the negative control), the
sign-flip test against brute-force enumeration of sign patterns with itertools and against
binomial tails from math.comb, Holm's correction against the textbook step-down procedure, the
chance-corrected drop and the draw statistics against hand numbers and naive loops, the invariance
of a row to the order of windows and to order-preserving renaming of segments, and the logit margin
and KL divergence against float64 numpy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from scipy.stats import t as scipy_t

from isoprobe.engine.stats import (Segments, bootstrap_interval, grid_statistics, holm, kl_divergence, logit_margin,
                                   sign_flip_p)
from isoprobe.errors import ConfigError

KEYS = {"draws", "windows", "segments", "base_accuracy", "accuracy", "accuracy_draw_sd", "drop", "drop_ci_low",
        "drop_ci_high", "relative_drop", "chance", "chance_corrected_drop", "chance_corrected_ci_low",
        "chance_corrected_ci_high", "p_value", "logit_margin_base", "logit_margin", "logit_margin_change",
        "logit_margin_change_ci_low", "logit_margin_change_ci_high", "kl", "chance_corrected_undefined", "caveat"}


def logits_for(predicted: np.ndarray, n_classes: int, rng: np.random.Generator) -> torch.Tensor:
    """Float32 logits [window, class] whose argmax is `predicted`, with random (non-tied) runners-up so
    that margins and KL are generic numbers."""
    x = rng.normal(size=(len(predicted), n_classes))
    rows = np.arange(len(predicted))
    x[rows, predicted] = x.max(axis=1) + 0.5 + rng.random(len(predicted))
    return torch.tensor(x, dtype=torch.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def margin(logits: np.ndarray, target: int) -> float:
    """True-class logit minus the largest other one, for one window, by a loop over classes."""
    return logits[target] - max(v for j, v in enumerate(logits) if j != target)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


# ---------------------------------------------------------------------------------------------------
# stratified cluster bootstrap


def test_weights_keep_every_class_and_give_the_textbook_variance():
    """Rao–Wu weights: every resample keeps each class's segment count (so the class mix and chance stay
    as evaluated), and the bootstrap variance of a stratified mean is the unbiased textbook variance
    Σ_h W_h² s_h² / n_h (Cochran 1977, eq. 5.6), computed here by loops, even for two segments per class
    (where a naive n-of-n draw gives half of it)."""
    sizes = {0: 2, 1: 2, 2: 3, 3: 5, 4: 1, 5: 1, 6: 2}  # class -> segments; classes 4 and 5 have one each
    classes = np.concatenate([[h] * n for h, n in sizes.items()])
    segments = np.arange(len(classes))
    design = Segments.of(np.repeat(segments, 4), np.repeat(classes, 4))  # 4 windows per segment
    B = 40000
    weights = design.weights(B, seed=3)
    assert weights.shape == (B, len(classes))
    pooled = np.where(np.isin(classes, [4, 5]), 4, classes)  # the two one-segment classes form one stratum
    for h in np.unique(pooled):
        np.testing.assert_allclose(weights[:, pooled == h].sum(axis=1), (pooled == h).sum(), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(weights, design.weights(B, seed=3))
    assert not np.array_equal(weights, design.weights(B, seed=4))

    y = np.random.default_rng(0).normal(size=len(classes)) * 3  # one value per segment
    boot = weights @ y / weights.sum(axis=1)  # the resampled mean over segments
    n = len(classes)
    textbook = 0.0
    for h in np.unique(pooled):
        values = [y[i] for i in range(n) if pooled[i] == h]
        mean = sum(values) / len(values)
        s2 = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        textbook += (len(values) / n) ** 2 * s2 / len(values)
    assert boot.var() == pytest.approx(textbook, rel=0.03)
    assert design.degrees_of_freedom == n - len(np.unique(pooled))
    # naive n-of-n within each class: (n_h − 1)/n_h of the variance, half of it at n_h = 2
    rng = np.random.default_rng(1)
    naive = np.zeros((B, n))
    for h in np.unique(pooled):
        members = np.flatnonzero(pooled == h)
        naive[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=B)
    assert (naive @ y / n).var() < 0.8 * textbook


def test_a_lone_one_segment_class_is_held_fixed():
    design = Segments.of([0, 0, 1, 1, 2, 3], [7, 7, 8, 8, 8, 8])  # class 7 has segment 0 alone
    weights = design.weights(500, seed=0)
    np.testing.assert_array_equal(weights[:, 0], 1.0)
    assert set(np.unique(weights[:, 1:])) == {0.0, 1.5, 3.0}  # two draws of three segments, times 3/2
    assert design.degrees_of_freedom == 2


def test_a_segment_with_two_classes_is_an_error():
    with pytest.raises(ConfigError, match="segment 5"):
        Segments.of([4, 4, 5, 5], [0, 0, 1, 2])
    with pytest.raises(TypeError, match="Segments.of"):
        grid_statistics(torch.zeros(2, 2), [torch.zeros(1, 2, 2)], torch.tensor([0, 1]), np.array([0, 1]), 10, 0, 0)


def simulated_evaluation(p, k, repetitions, windows, rho, rng):
    """Segments of K classes × repetitions × windows: each segment's accuracy and knock-out share drawn
    from Betas around its class's p_h and k_h with intra-segment correlation rho; logits one-hot."""
    K = len(p)
    c = 1 / rho - 1
    cls = np.repeat(np.arange(K), repetitions)
    p_s, k_s = rng.beta(p[cls] * c, (1 - p[cls]) * c), rng.beta(k[cls] * c, (1 - k[cls]) * c)
    seg = np.repeat(np.arange(len(cls)), windows)
    target = cls[seg]
    base_right = rng.random(len(seg)) < p_s[seg]
    int_right = base_right & (rng.random(len(seg)) >= k_s[seg])
    one_hot = lambda right: torch.tensor(np.eye(K, dtype=np.float32)[np.where(right, target, (target + 1) % K)])
    return one_hot(base_right), one_hot(int_right), torch.tensor(target), seg


def naive_interval(base_right, int_right, target, seg, B, seed, K):
    """The former interval: n-of-n segments drawn across classes, chance recomputed in each resample,
    percentiles (the negative control of the coverage test)."""
    S = seg.max() + 1
    counts = np.random.default_rng(seed).multinomial(S, np.full(S, 1 / S), size=B)
    sums = lambda v: np.bincount(seg, weights=v, minlength=S)
    size = counts @ sums(np.ones(len(seg)))
    base_b = counts @ sums(base_right) / size
    drop_b = base_b - counts @ sums(int_right) / size
    chance_b = np.max([counts @ sums(target == h) for h in range(K)], axis=0) / size
    corrected_b = drop_b / (base_b - chance_b)
    return np.quantile(drop_b, [0.025, 0.975]), np.quantile(corrected_b, [0.025, 0.975])


def test_coverage_of_the_drop_and_the_chance_corrected_drop_by_simulation():
    """DESIGN §4: 17 classes × 2 test repetitions × 20 windows, correlated within segments, 1,000 replicate
    evaluations with a known truth (drop = mean_h p_h k_h; chance = 1/17; chance-corrected =
    drop / (base − chance)): the 95% CIs cover it within 3 binomial standard errors of 0.95. The former
    interval (unstratified, chance recomputed per resample) fails the same check."""
    K, R, W, replicates = 17, 2, 20, 1000
    rng = np.random.default_rng([7, 0])
    p, k = rng.uniform(0.35, 0.95, K), rng.uniform(0.05, 0.6, K)
    drop = float(np.mean(p * k))
    corrected = drop / (float(np.mean(p)) - 1 / K)
    rng = np.random.default_rng(11)
    hits = np.zeros((2, 2))  # [new, former] × [drop, corrected]
    for r in range(replicates):
        base, intervened, target, seg = simulated_evaluation(p, k, R, W, 0.3, rng)
        (row,) = grid_statistics(base, [intervened[None]], target, Segments.of(seg, target.numpy()), 1000, 0, seed=r)
        hits[0] += (row["drop_ci_low"] <= drop <= row["drop_ci_high"],
                    row["chance_corrected_ci_low"] <= corrected <= row["chance_corrected_ci_high"])
        right = lambda x: (x.argmax(1) == target).double().numpy()
        old_drop, old_corrected = naive_interval(right(base), right(intervened), target.numpy(), seg, 1000, r, K)
        hits[1] += (old_drop[0] <= drop <= old_drop[1], old_corrected[0] <= corrected <= old_corrected[1])
    coverage = hits / replicates
    tolerance = 3 * math.sqrt(0.95 * 0.05 / replicates)
    assert np.abs(coverage[0] - 0.95).max() <= tolerance, coverage[0]
    assert np.abs(coverage[1] - 0.95).max() > tolerance, coverage[1]  # the former interval: 0.920 for the corrected drop


def test_an_interval_needs_most_resamples_defined():
    """Where base ≤ chance in some resamples the chance-corrected drop is undefined there: the share is
    reported, and above 1 − level the CI is NaN (not a CI conditional on survival)."""
    resampled = np.array([[1.0, 1.0], [2.0, np.nan], [3.0, 2.0], [4.0, 3.0]] * 10)  # column 1: 25% NaN
    low, high = bootstrap_interval(resampled, np.array([2.5, 2.0]), degrees_of_freedom=10, level=0.95)
    assert np.isfinite(low[0]) and np.isnan(low[1]) and np.isnan(high[1])
    low, high = bootstrap_interval(resampled, np.array([2.5, 2.0]), degrees_of_freedom=10, level=0.7)
    assert np.isfinite(low[1])  # 25% ≤ 1 − 0.7
    # estimate ± t × sd, against scipy's t quantile computed here
    spread = np.std(resampled[:, 0], ddof=1)
    assert low[0] == pytest.approx(2.5 - scipy_t.ppf(0.85, 10) * spread, rel=1e-12)
    assert np.isnan(bootstrap_interval(resampled, np.array([2.5, 2.0]), 0)[0]).all()  # no degrees of freedom
    # clipped to the statistic's range where one is given (an accuracy near 1 with a wide interval)
    low, high = bootstrap_interval(resampled, np.array([2.5, 2.0]), 10, level=0.7, bounds=(2.0, 3.0))
    assert low[0] == 2.0 and high[0] == 3.0

    target = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # chance 0.25, two segments per class
    base_right = np.array([1, 0, 1, 0, 0, 0, 0, 1], dtype=bool)  # base 0.375, barely above chance
    one_hot = lambda right: torch.tensor(np.eye(4, dtype=np.float32)[np.where(right, target, (target + 1) % 4)])
    (row,) = grid_statistics(one_hot(base_right), [one_hot(np.zeros(8, dtype=bool))[None]], torch.tensor(target),
                             Segments.of(np.arange(8), target), bootstrap=400, permutations=0, seed=0)
    assert row["chance"] == 0.25
    assert row["chance_corrected_drop"] == pytest.approx(0.375 / 0.125)
    assert row["chance_corrected_undefined"] > 0.05
    assert math.isnan(row["chance_corrected_ci_low"]) and math.isfinite(row["drop_ci_low"])


# ---------------------------------------------------------------------------------------------------
# sign-flip test


def enumerated_p(totals: np.ndarray) -> float:
    """Share of all sign patterns (itertools) whose |Σ ±t| reaches |Σ t|; integer totals, so exact."""
    totals = np.asarray(totals, dtype=np.int64)
    patterns = np.array(list(itertools.product([-1, 1], repeat=len(totals))), dtype=np.int64)
    return float(np.mean(np.abs(patterns @ totals) >= abs(int(totals.sum()))))


@pytest.mark.parametrize("n_segments, seed", [(1, 0), (2, 1), (5, 2), (11, 3), (16, 4)])
def test_sign_flip_is_exact_up_to_16_segments(n_segments, seed):
    rng = np.random.default_rng(seed)
    integers = rng.integers(-3, 4, size=(n_segments, 4))
    integers[:, 1] = 0  # a row the intervention leaves unchanged
    integers[:, 2] = np.abs(integers[:, 2]) + 1  # every segment loses: the smallest p there is
    # totals averaged over three draws are thirds; p is scale-free, so the integers give the exact answer
    p = sign_flip_p(integers / 3, permutations=0, seed=0)  # no random patterns needed when exact
    expected = [enumerated_p(integers[:, r]) for r in range(integers.shape[1])]
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-15)
    assert p[1] == 1.0
    assert p[2] == pytest.approx(2 / 2**n_segments)  # only the observed pattern and its negation


def binomial_p(positive: int, nonzero: int) -> float:
    """Exact two-sided sign-flip p when `nonzero` totals are ±1 (`positive` of them +1): Σ ±t is then
    2K − nonzero with K ~ Binomial(nonzero, 1/2), whatever the signs of the observed totals."""
    observed = abs(2 * positive - nonzero)
    return sum(math.comb(nonzero, k) for k in range(nonzero + 1) if abs(2 * k - nonzero) >= observed) / 2**nonzero


def test_sign_flip_monte_carlo_against_binomial_tails():
    B = 20000  # not a multiple of the 4096-pattern chunks
    nonzero, zeros = 30, 10  # zero totals carry no information but still count as segments (S = 40)
    rows = [20, 15, 30, 22]  # positives among the ±1 totals; 15 of 30 means Σ = 0; 30 means all lost
    rng = np.random.default_rng(9)
    totals = np.zeros((nonzero + zeros, len(rows)))
    for r, positive in enumerate(rows):
        signs = np.array([1.0] * positive + [-1.0] * (nonzero - positive))
        totals[rng.permutation(nonzero + zeros)[:nonzero], r] = rng.permutation(signs)
    p = sign_flip_p(totals, permutations=B, seed=4)
    for r, positive in enumerate(rows):
        exact = binomial_p(positive, nonzero)
        # (hits + 1)/(B + 1) with hits ~ Binomial(B, exact): within 4 binomial standard errors (plus the +1)
        assert abs(p[r] - exact) < 4 * math.sqrt(exact * (1 - exact) / B) + 2 / B, (positive, p[r], exact)
    assert p[1] == 1.0  # Σ = 0: every pattern reaches it, so hits = B
    assert p[2] == 1 / (B + 1)  # exact p is 2/2^30: no random pattern reaches it, and p never goes below 1/(B+1)
    assert (p >= 1 / (B + 1)).all()
    np.testing.assert_array_equal(p, sign_flip_p(totals, permutations=B, seed=4))
    assert not np.array_equal(p, sign_flip_p(totals, permutations=B, seed=5))


def test_sign_flip_monte_carlo_against_enumeration_at_17_segments():
    rng = np.random.default_rng(12)
    integers = rng.integers(-2, 3, size=(17, 2))
    B = 20000
    p = sign_flip_p(integers / 2, permutations=B, seed=1)
    for r in range(2):
        exact = enumerated_p(integers[:, r])
        assert abs(p[r] - exact) < 4 * math.sqrt(exact * (1 - exact) / B) + 2 / B


def test_sign_flip_edges():
    rng = np.random.default_rng(2)
    assert not np.isnan(sign_flip_p(rng.normal(size=(16, 2)), permutations=0, seed=0)).any()  # exact: no draws
    assert np.isnan(sign_flip_p(rng.normal(size=(17, 2)), permutations=0, seed=0)).all()  # needs draws
    np.testing.assert_array_equal(sign_flip_p(np.zeros((5, 3)), 0, 0), np.ones(3))
    np.testing.assert_array_equal(sign_flip_p(np.zeros((40, 3)), 100, 0), np.ones(3))
    assert np.isnan(sign_flip_p(np.zeros((0, 2)), 100, 0)).all()


# ---------------------------------------------------------------------------------------------------
# Holm


def textbook_holm(p: list[float]) -> list[float]:
    """Holm (1979) step-down: sort the m valid p-values, multiply the i-th smallest by m − i + 1, take the
    running maximum, cap at 1, and put them back in place."""
    valid = [i for i, x in enumerate(p) if not math.isnan(x)]
    m = len(valid)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(sorted(valid, key=lambda i: p[i]), start=1):
        running = max(running, (m - rank + 1) * p[i])
        out[i] = min(1.0, running)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_holm_against_the_textbook_procedure(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25))
    p = np.round(rng.random(n) ** 3, 2)  # rounding makes ties; the cube makes small p-values common
    p[rng.random(n) < 0.2] = np.nan
    got = holm(p)
    np.testing.assert_allclose(got, textbook_holm(p.tolist()), rtol=0, atol=1e-15, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(p))
    valid = ~np.isnan(p)
    assert (got[valid] >= p[valid]).all() and (got[valid] <= 1).all()


def test_holm_known_values():
    # m = 4: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.06, 0.04·1) = 0.06
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    # a NaN does not count in m: the same numbers with the NaN kept in place
    np.testing.assert_allclose(holm(np.array([0.01, np.nan, 0.04, 0.03, 0.005])),
                               [0.03, np.nan, 0.06, 0.06, 0.02], equal_nan=True)
    np.testing.assert_allclose(holm(np.array([0.4, 0.5])), [0.8, 0.8])
    np.testing.assert_allclose(holm(np.array([0.6, 0.9])), [1.0, 1.0])  # capped
    assert np.isnan(holm(np.array([np.nan, np.nan]))).all()
    assert holm(np.array([])).shape == (0,)


# ---------------------------------------------------------------------------------------------------
# rows of a grid


def test_chance_corrected_drop_against_hand_numbers():
    target = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])  # majority class 0 holds 6 of 10: chance 0.6
    rng = np.random.default_rng(1)
    base_pred = target.copy()
    base_pred[9] = 0  # 9 of 10 right
    majority = np.zeros(10, dtype=int)  # 6 of 10 right, the chance rate
    seven = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])  # right on windows 0-3 and 6-8: 7 of 10
    wrong = (target + 1) % 3
    rows = grid_statistics(logits_for(base_pred, 3, rng), [logits_for(x, 3, rng)[None] for x in (majority, seven, wrong)],
                           torch.tensor(target), Segments.of(np.arange(10), target), bootstrap=50, permutations=0, seed=0)
    expected = [  # (accuracy, drop, chance-corrected drop = (0.9 − acc)/(0.9 − 0.6))
        (0.6, 0.3, 1.0),
        (0.7, 0.2, 2 / 3),
        (0.0, 0.9, 3.0),
    ]
    for row, (accuracy, drop, corrected) in zip(rows, expected):
        assert row["chance"] == pytest.approx(0.6, abs=1e-15)
        assert row["base_accuracy"] == pytest.approx(0.9, abs=1e-15)
        assert row["accuracy"] == pytest.approx(accuracy, abs=1e-15)
        assert row["drop"] == pytest.approx(drop, abs=1e-15)
        assert row["relative_drop"] == pytest.approx(drop / 0.9, abs=1e-15)
        assert row["chance_corrected_drop"] == pytest.approx(corrected, abs=1e-12)
    assert rows[0]["accuracy"] == rows[0]["chance"]  # predicting the majority class is chance, exactly



def test_chance_corrected_drop_is_nan_when_the_base_is_not_above_chance():
    """(base − acc)/(base − chance) has nothing to lose when base ≤ chance: NaN, never ±inf (which
    would also be invalid JSON); about half the resamples have base ≤ chance, far more than 1 − level,
    so the interval is NaN too and the share of undefined resamples says why."""
    target = np.array([0, 0, 0, 1, 1, 2])  # chance 0.5
    rng = np.random.default_rng(2)
    base = logits_for(np.array([0, 0, 1, 2, 2, 2]), 3, rng)  # 3 of 6 right: base = chance
    rows = grid_statistics(base, [logits_for(np.array([1, 1, 1, 1, 2, 2]), 3, rng)[None]], torch.tensor(target),
                           Segments.of(np.arange(6), target), bootstrap=200, permutations=0, seed=0)
    row = rows[0]
    assert row["drop"] == pytest.approx(0.5 - 2 / 6)
    assert math.isnan(row["chance_corrected_drop"])
    assert math.isnan(row["chance_corrected_ci_low"]) and math.isnan(row["chance_corrected_ci_high"])
    assert 0.2 < row["chance_corrected_undefined"] < 0.8
    assert math.isfinite(row["drop_ci_low"]) and math.isfinite(row["drop_ci_high"])


def test_draws_give_mean_accuracy_and_sample_spread():
    rng = np.random.default_rng(4)
    n, n_classes, K = 30, 3, 4
    target = rng.integers(0, n_classes, size=n)
    base = logits_for(target, n_classes, rng)  # all right
    draws = torch.stack([logits_for(np.where(rng.random(n) < 0.3 + 0.15 * k, target, (target + 1) % 3), 3, rng)
                         for k in range(K)])
    single = logits_for(np.where(rng.random(n) < 0.5, target, (target + 2) % 3), 3, rng)[None]
    many, one = grid_statistics(base, [draws, single], torch.tensor(target), Segments.of(np.arange(n), target),
                                bootstrap=20, permutations=0, seed=0)
    per_draw = []
    for k in range(K):
        per_draw.append(sum(int(np.argmax(draws[k, w].numpy()) == target[w]) for w in range(n)) / n)
    mean = sum(per_draw) / K
    sd = math.sqrt(sum((a - mean) ** 2 for a in per_draw) / (K - 1))
    assert len(set(per_draw)) > 1  # the draws differ, so the spread is not trivially zero
    assert many["draws"] == K and one["draws"] == 1
    assert many["accuracy"] == pytest.approx(mean, abs=1e-15)
    assert many["accuracy_draw_sd"] == pytest.approx(sd, abs=1e-15)
    assert many["drop"] == pytest.approx(1 - mean, abs=1e-15)
    assert math.isnan(one["accuracy_draw_sd"])
    assert one["accuracy"] == pytest.approx((single[0].argmax(1).numpy() == target).mean(), abs=1e-15)


def random_grid(seed: int, n: int = 45, n_classes: int = 4, n_segments: int = 9, draws=(1, 3, 2)):
    """Windows of n_segments segments, each holding one class (as a repetition of a gesture does)."""
    rng = np.random.default_rng(seed)
    segment_class = rng.permutation(np.arange(n_segments) % n_classes)
    of_segment = rng.integers(0, n_segments, size=n)
    target = segment_class[of_segment]
    base = torch.tensor(rng.normal(size=(n, n_classes)) + 2.5 * np.eye(n_classes)[target], dtype=torch.float32)
    intervened = [base[None] + torch.tensor(rng.normal(size=(k, n, n_classes)) * 1.5, dtype=torch.float32)
                  for k in draws]
    segments = rng.choice(np.arange(50, 80), size=n_segments, replace=False)[of_segment]
    return base, intervened, torch.tensor(target), segments


def test_rows_against_numpy():
    """Point estimates of every row against float64 numpy, and the p-value against enumeration over the
    segment totals of the paired differences (summed by a loop)."""
    base, intervened, target, segments = random_grid(seed=5)
    rows = grid_statistics(base, intervened, target, Segments.of(segments, target.numpy()), bootstrap=200, permutations=0,
                           seed=2)
    b, t = base.double().numpy(), target.numpy()
    n = len(t)
    base_correct = b.argmax(1) == t

    def margin_of(x: np.ndarray) -> np.ndarray:  # [window, class] -> [window]
        return np.array([margin(x[w], t[w]) for w in range(n)])

    ids = sorted(set(segments.tolist()))
    for row, x in zip(rows, intervened):
        x = x.double().numpy()
        assert set(row) == KEYS
        assert (row["draws"], row["windows"], row["segments"]) == (len(x), n, len(ids))
        correct = (x.argmax(-1) == t).mean(axis=0)  # [window], averaged over draws
        assert row["base_accuracy"] == pytest.approx(base_correct.mean(), abs=1e-15)
        assert row["accuracy"] == pytest.approx(correct.mean(), abs=1e-15)
        assert row["drop"] == pytest.approx(base_correct.mean() - correct.mean(), abs=1e-15)
        assert row["relative_drop"] == pytest.approx(row["drop"] / base_correct.mean(), abs=1e-15)
        assert row["chance"] == pytest.approx(np.bincount(t).max() / n, abs=1e-15)
        assert row["logit_margin_base"] == pytest.approx(margin_of(b).mean(), abs=1e-12)
        assert row["logit_margin"] == pytest.approx(np.mean([margin_of(d).mean() for d in x]), abs=1e-12)
        assert row["logit_margin_change"] == pytest.approx(row["logit_margin"] - row["logit_margin_base"], abs=1e-12)
        p, q = softmax(b), softmax(x)
        assert row["kl"] == pytest.approx((p * np.log(p / q)).sum(axis=-1).mean(), rel=1e-10)
        # totals are multiples of 1/draws; times 6 they are integers and p is scale-free
        totals = [0.0] * len(ids)
        for w in range(n):
            totals[ids.index(segments[w])] += base_correct[w] - correct[w]
        assert row["p_value"] == pytest.approx(enumerated_p(np.round(np.array(totals) * 6)), abs=1e-15)
        for name in ("drop", "chance_corrected", "logit_margin_change"):
            assert row[f"{name}_ci_low"] <= row[f"{name}_ci_high"]


def test_rows_do_not_depend_on_window_order_or_segment_names():
    base, intervened, target, segments = random_grid(seed=6)
    args = dict(bootstrap=300, permutations=50, seed=4)
    design = lambda ids, t=target: Segments.of(ids, t.numpy())
    rows = grid_statistics(base, intervened, target, design(segments), **args)
    perm = np.random.default_rng(0).permutation(len(target))
    shuffled = grid_statistics(base[perm], [x[:, perm] for x in intervened], target[perm],
                               design(segments[perm], target[perm]), **args)
    for row, other in zip(rows, shuffled):
        assert row["caveat"] == other["caveat"]
        for key in KEYS - {"caveat"}:
            # sums of float margins and of fractional (multi-draw) correctness are re-associated by a
            # shuffle, so agreement is to rounding; the single-draw row's counts are integers and exact
            assert other[key] == pytest.approx(row[key], rel=1e-12, abs=1e-12, nan_ok=True), key
    exact = ("accuracy", "drop", "drop_ci_low", "drop_ci_high", "chance_corrected_drop", "chance_corrected_ci_low",
             "chance_corrected_ci_high", "p_value", "chance", "base_accuracy")
    assert all(same(rows[0][key], shuffled[0][key]) for key in exact)

    # renaming segments by an order-preserving map numbers them the same: identical rows
    for renamed in (segments * 3 + 1000, np.array([f"seg-{s:04d}" for s in segments])):
        again = grid_statistics(base, intervened, target, design(renamed), **args)
        assert all(same(row[key], other[key]) for row, other in zip(rows, again) for key in KEYS)
    # negative control: reversing the order renumbers the segments, so the resamples (not the point
    # estimates, nor the exact p-value, which is symmetric in the segments) change
    reversed_rows = grid_statistics(base, intervened, target, design(-segments), **args)
    for row, other in zip(rows, reversed_rows):
        assert (row["drop"], row["p_value"]) == (other["drop"], other["p_value"])
    assert any((row["drop_ci_low"], row["drop_ci_high"]) != (other["drop_ci_low"], other["drop_ci_high"])
               for row, other in zip(rows, reversed_rows))


# ---------------------------------------------------------------------------------------------------
# logit margin and KL


def test_logit_margin_against_numpy():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(30, 5)) * 3
    target = rng.integers(0, 5, size=30)
    expected = np.array([margin(row, t) for row, t in zip(logits, target)])
    got = logit_margin(torch.tensor(logits, dtype=torch.float64), torch.tensor(target))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    # float32 logits: within float32 rounding of the float64 answer
    got32 = logit_margin(torch.tensor(logits, dtype=torch.float32), torch.tensor(target))
    np.testing.assert_allclose(got32.numpy(), expected, rtol=0, atol=1e-5)
    assert ((got > 0).numpy() == (logits.argmax(1) == target)).all()  # positive exactly when right


def test_kl_against_numpy():
    rng = np.random.default_rng(8)
    base = rng.normal(size=(25, 4)) * 2
    intervened = base + rng.normal(size=(25, 4))
    p, q = softmax(base), softmax(intervened)
    expected = (p * np.log(p / q)).sum(axis=1)
    got = kl_divergence(torch.tensor(base, dtype=torch.float32), torch.tensor(intervened, dtype=torch.float32))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert (got >= 0).all()
    assert kl_divergence(torch.tensor(base), torch.tensor(base + 5.0)).abs().max() < 1e-12  # shift-invariant
