"""The distribution-shift core (`isoprobe.diagnostics.mmd`) against independent references written
here: the median heuristic, the kernel, the unpaired MMD²_u and the paired U-statistic by explicit
Python loops over pairs with math.exp; the paired statistic's mean under no shift (0, where the
unpaired formula on paired data is biased downward); the permutation p-values by a plain loop over
the same permutations (drawn through the public `permutation_assignments`) that re-indexes a
loop-built kernel matrix; the paired scheme's exact p-value by enumerating every swap pattern; the
test's size over 1,000 data sets, calibration under no shift and power under a mean shift; the 95th
percentile of the permutation null; the exact identities of a representation compared with itself;
invariance to the windows' order, the chunk size and the dtype; and the cosine per window against a
loop over tokens."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
import torch
from scipy.stats import binom

from isoprobe.diagnostics.mmd import (TIE_RTOL, MMDTest, cosine_per_window, median_bandwidth, mmd2_unbiased,
                                      mmd_test, permutation_assignments, permutation_statistics, rbf_kernel,
                                      subsample)
from isoprobe.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The matrices here are tiny: torch's intra-op threads only add waiting on busy cores (on a loaded
    2-core machine this module ran in 12 s with two threads, 1 s with one), so it runs on one thread,
    restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------
# the independent references: lists of floats, loops, math.exp


def loop_squared_distance(a, b) -> float:
    return sum((p - q) ** 2 for p, q in zip(a, b))


def loop_median_bandwidth(rows) -> float:
    """σ = sqrt(median over distinct pairs of squared distances / 2), statistics.median's convention."""
    d2 = [loop_squared_distance(rows[i], rows[j]) for i in range(len(rows)) for j in range(i + 1, len(rows))]
    return math.sqrt(statistics.median(d2) / 2)


def loop_kernel(a, b, bandwidth: float) -> float:
    return math.exp(-loop_squared_distance(a, b) / (2 * bandwidth**2))


def loop_kernel_matrix(rows, bandwidth: float) -> np.ndarray:
    return np.array([[loop_kernel(a, b, bandwidth) for b in rows] for a in rows])


def loop_mmd2(x, y, bandwidth: float) -> float:
    """Gretton et al. (2012) eq. 3, pair by pair."""
    n, m = len(x), len(y)
    xx = sum(loop_kernel(x[i], x[j], bandwidth) for i in range(n) for j in range(n) if i != j)
    yy = sum(loop_kernel(y[i], y[j], bandwidth) for i in range(m) for j in range(m) if i != j)
    xy = sum(loop_kernel(x[i], y[j], bandwidth) for i in range(n) for j in range(m))
    return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)


def loop_paired_mmd2(x, y, bandwidth: float) -> float:
    """The paired U-statistic, pair of pairs by pair of pairs: 1/(n(n−1)) Σ_{i≠j} h(z_i, z_j) with
    h = k(x_i, x_j) + k(y_i, y_j) − k(x_i, y_j) − k(x_j, y_i)."""
    n = len(x)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += (loop_kernel(x[i], x[j], bandwidth) + loop_kernel(y[i], y[j], bandwidth)
                          - loop_kernel(x[i], y[j], bandwidth) - loop_kernel(x[j], y[i], bandwidth))
    return total / (n * (n - 1))


def loop_biased_paired_mmd2(x, y, bandwidth: float) -> float:
    """What `shift` reported before: Gretton's MMD²_u (eq. 3) on paired data, whose cross sum keeps each
    pair's own k(x_i, y_i). The negative control of the no-shift mean."""
    n = len(x)
    within = sum(loop_kernel(a[i], a[j], bandwidth) for a in (x, y) for i in range(n) for j in range(n) if i != j)
    cross = sum(loop_kernel(x[i], y[j], bandwidth) for i in range(n) for j in range(n))
    return within / (n * (n - 1)) - 2 * cross / (n * n)


def indexed_paired_mmd2(kernel: np.ndarray, first: np.ndarray) -> tuple[float, float]:
    """The paired U-statistic after the swaps in `first` (pooled rows x then y; pair i is rows i and
    n + i, `first` True on the row that is in the first sample), by indexing the kernel matrix; and
    the sum of the three terms' magnitudes."""
    n = len(kernel) // 2
    pairs = np.arange(n)
    ix = np.where(first[:n], pairs, pairs + n)  # pair i's member in the first sample
    iy = np.where(first[:n], pairs + n, pairs)
    off = ~np.eye(n, dtype=bool)
    xx, yy, xy = (kernel[np.ix_(a, b)][off].sum() for a, b in ((ix, ix), (iy, iy), (ix, iy)))
    terms = (xx / (n * (n - 1)), yy / (n * (n - 1)), 2 * xy / (n * (n - 1)))
    return terms[0] + terms[1] - terms[2], sum(abs(t) for t in terms)


def indexed_mmd2(kernel: np.ndarray, first: np.ndarray) -> tuple[float, float]:
    """MMD²_u of the pooled rows where `first` is True against the rest, by indexing the kernel matrix;
    and the sum of the three terms' magnitudes (the scale of the tie tolerance)."""
    ix, iy = np.flatnonzero(first), np.flatnonzero(~first)
    n, m = len(ix), len(iy)
    xx = kernel[np.ix_(ix, ix)].sum() - np.trace(kernel[np.ix_(ix, ix)])
    yy = kernel[np.ix_(iy, iy)].sum() - np.trace(kernel[np.ix_(iy, iy)])
    xy = kernel[np.ix_(ix, iy)].sum()
    terms = (xx / (n * (n - 1)), yy / (m * (m - 1)), 2 * xy / (n * m))
    return terms[0] + terms[1] - terms[2], sum(abs(t) for t in terms)


def loop_p_value(kernel: np.ndarray, n: int, assignments: np.ndarray, paired: bool) -> tuple[float, list[float]]:
    """(hits + 1)/(B + 1), one permutation at a time; and the permuted statistics."""
    statistic = indexed_paired_mmd2 if paired else indexed_mmd2
    observed, scale = statistic(kernel, np.arange(len(kernel)) < n)
    permuted = [statistic(kernel, row)[0] for row in assignments]
    hits = sum(value >= observed - TIE_RTOL[torch.float64] * scale for value in permuted)
    return (hits + 1) / (len(assignments) + 1), permuted


def gaussian(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> torch.Tensor:
    return torch.tensor(rng.normal(size=(n, d)) + shift)


def paired_windows(rng: np.random.Generator, clusters: np.ndarray, d: int, shift: float = 0.0):
    """Clean and intervened windows that share a window effect and a segment effect, as overlapping
    windows of one repetition do: x = u_segment + c + e, y = u_segment + c + shift + e'."""
    segment = rng.normal(size=(clusters.max() + 1, d))[clusters]
    common = segment + 0.5 * rng.normal(size=(len(clusters), d))
    x = common + 0.5 * rng.normal(size=common.shape)
    y = common + 0.5 * rng.normal(size=common.shape) + shift
    return torch.tensor(x), torch.tensor(y)


CLUSTER_SIZES = [3, 1, 4, 2, 5, 3]  # six segments of unequal size: 18 pairs


def scattered_clusters(rng: np.random.Generator, sizes=CLUSTER_SIZES) -> np.ndarray:
    """Segment ids (scattered integers) of pairs in shuffled order, so segments interleave."""
    ids = rng.choice(np.arange(100, 1000), size=len(sizes), replace=False)
    return rng.permutation(np.repeat(ids, sizes))


# ---------------------------------------------------------------------------------------------------
# the statistic, the bandwidth, the kernel


@pytest.mark.parametrize("n, m", [(7, 11), (12, 5)])
def test_mmd2_and_bandwidth_equal_a_float64_loop(n, m):
    """Project acceptance point: MMD²_u equals an independent float64 loop to 1e-6 relative, for unequal
    n and m, and the median-heuristic bandwidth equals a loop over pairs (153 pairs for 18 points, an
    odd count; 136 for 17, even: both median conventions). Negative control: the biased V-statistic
    (i = j kept within samples) is far outside the tolerance."""
    rng = np.random.default_rng(n * 100 + m)
    x, y = gaussian(rng, n, 3), gaussian(rng, m, 3, shift=0.4)
    rows = x.tolist() + y.tolist()
    bandwidth = loop_median_bandwidth(rows)
    assert median_bandwidth(torch.cat([x, y])) == pytest.approx(bandwidth, rel=1e-12)
    expected = loop_mmd2(x.tolist(), y.tolist(), bandwidth)
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-6)
    assert mmd2_unbiased(x, y, bandwidth=0.7) == pytest.approx(loop_mmd2(x.tolist(), y.tolist(), 0.7), rel=1e-6)
    biased = expected + (1 - np.mean([loop_kernel(a, b, bandwidth) for a in x.tolist() for b in x.tolist()])) / n
    assert biased != pytest.approx(expected, rel=1e-3)  # what a wrong estimator would miss by


def test_median_bandwidth_subsamples_the_stated_points_by_key():
    """Beyond max_points the median is over `subsample(N, max_points, seed, keys)`; with keys the result
    does not depend on the order of the rows."""
    rng = np.random.default_rng(1)
    z, keys = gaussian(rng, 50, 4), rng.permutation(1000)[:50]
    chosen = subsample(50, 20, seed=3, keys=keys)
    expected = loop_median_bandwidth(z[chosen].tolist())
    assert median_bandwidth(z, max_points=20, seed=3, keys=keys) == pytest.approx(expected, rel=1e-12)
    shuffle = rng.permutation(50)
    assert median_bandwidth(z[shuffle], max_points=20, seed=3, keys=keys[shuffle]) == pytest.approx(expected, rel=1e-12)
    assert median_bandwidth(z, max_points=20, seed=4, keys=keys) != pytest.approx(expected, rel=1e-12)


def test_rbf_kernel_equals_the_loop_kernel():
    rng = np.random.default_rng(2)
    z = gaussian(rng, 9, 5)
    z[4] = z[1]  # a duplicate row: distance 0 through the expansion's rounding, clamped
    kernel = rbf_kernel(z, 1.7)
    np.testing.assert_allclose(kernel.numpy(), loop_kernel_matrix(z.tolist(), 1.7), rtol=1e-12, atol=1e-14)
    assert torch.all(kernel <= 1) and torch.all(torch.diagonal(kernel) == 1)
    assert kernel[1, 4] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n, d", [(9, 3), (14, 5)])
def test_paired_statistic_equals_a_float64_double_loop_over_distinct_pairs(n, d):
    """The paired U-statistic (`mmd2_unbiased(paired=True)`, and the observed value of the paired test,
    with or without clusters) equals the double loop over i ≠ j written here, to 1e-9 of the terms'
    scale. Negative control: the unpaired formula on the same data differs by far more."""
    rng = np.random.default_rng(20 + n)
    x, y = paired_windows(rng, np.arange(n) // 3, d, 0.3)
    bandwidth = loop_median_bandwidth(x.tolist() + y.tolist())
    expected = loop_paired_mmd2(x.tolist(), y.tolist(), bandwidth)
    null = permutation_statistics(x, y, 0, 0, paired=True)
    assert null.bandwidth == pytest.approx(bandwidth, rel=1e-12)
    tolerance = 1e-9 * null.scale
    assert mmd2_unbiased(x, y, paired=True) == pytest.approx(expected, rel=0, abs=tolerance)
    assert mmd2_unbiased(x, y, bandwidth=0.8, paired=True) == pytest.approx(
        loop_paired_mmd2(x.tolist(), y.tolist(), 0.8), rel=0, abs=tolerance)
    for clusters in (None, np.arange(n) // 3):
        assert mmd_test(x, y, 49, 0, paired=True, clusters=clusters).mmd2 == pytest.approx(expected, rel=0, abs=tolerance)
    unpaired = loop_mmd2(x.tolist(), y.tolist(), bandwidth)
    assert mmd2_unbiased(x, y) == pytest.approx(unpaired, rel=0, abs=tolerance)
    assert abs(unpaired - expected) > 1e4 * tolerance


def test_paired_statistic_has_mean_zero_under_no_shift():
    """Clean and intervened representations of a window that are exchangeable (x_i = u_i + e_i,
    y_i = u_i + e'_i, e and e' iid): over 120 seeds the paired statistic's mean lies within 3 standard
    errors of 0. Negative control: Gretton's MMD²_u on the same pairs (`loop_biased_paired_mmd2`, the
    estimator `shift` used before), whose cross term keeps each close pair k(x_i, y_i), lies many
    standard errors below 0 (about −(2/n)(E k(x_i, y_i) − E k(x_i, y_j)))."""
    n, d = 24, 3
    paired, biased = [], []
    for seed in range(120):
        rng = np.random.default_rng(1000 + seed)
        u = rng.normal(size=(n, d))
        x, y = torch.tensor(u + 0.5 * rng.normal(size=(n, d))), torch.tensor(u + 0.5 * rng.normal(size=(n, d)))
        result = mmd_test(x, y, 0, seed, paired=True)
        paired.append(result.mmd2)
        biased.append(loop_biased_paired_mmd2(x.tolist(), y.tolist(), result.bandwidth))
    for values in (paired, biased):
        assert statistics.stdev(values) > 0
    z = lambda values: statistics.fmean(values) / (statistics.stdev(values) / math.sqrt(len(values)))
    assert abs(z(paired)) < 3, (statistics.fmean(paired), z(paired))
    assert z(biased) < -10, (statistics.fmean(biased), z(biased))


# ---------------------------------------------------------------------------------------------------
# the permutation test


SCHEMES = {  # name -> (paired, clustered)
    "unpaired": (False, False),
    "paired": (True, False),
    "paired-clusters": (True, True),
}


def scheme_data(scheme: str, seed: int, shift: float):
    """48 windows per sample; segments: 16 of 3 windows (the paired cluster scheme needs enough segments:
    its p-value cannot fall below 2/2^16 there)."""
    rng = np.random.default_rng(seed)
    paired, clustered = SCHEMES[scheme]
    clusters = np.repeat(np.arange(16), 3)
    if paired:
        x, y = paired_windows(rng, clusters, 5, shift)
    else:
        x, y = gaussian(rng, 48, 5), gaussian(rng, 48, 5, shift)
    return x, y, dict(paired=paired, clusters=clusters if clustered else None)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_no_shift_gives_calibrated_p_values_and_a_shift_is_detected(scheme):
    """Project acceptance point: over 20 seeds of two samples from one distribution, fewer than 3 p-values
    fall below 0.05 (1 expected); a mean shift of 1 in every coordinate gives p ≤ 0.01."""
    null = []
    for seed in range(20):
        x, y, options = scheme_data(scheme, seed, 0.0)
        null.append(mmd_test(x, y, permutations=199, seed=seed, **options).p_value)
    assert sum(p < 0.05 for p in null) < 3, null
    assert max(null) > 0.5  # not degenerate: the p-values spread over (0, 1]
    x, y, options = scheme_data(scheme, 99, 1.0)
    assert mmd_test(x, y, permutations=199, seed=0, **options).p_value <= 0.01


def test_segment_level_exchangeability_needs_cluster_swaps():
    """Why clusters matter (DESIGN §4): clean and intervened windows that differ by a random offset per
    segment, symmetric in sign (x = c − δ_s/2 + e, y = c + δ_s/2 + e', c clustered by segment too), are
    exchangeable segment by segment but not pair by pair. Swapping whole segments stays calibrated;
    swapping single pairs (the negative control) rejects almost always."""
    clusters = np.repeat(np.arange(12), 4)
    by_cluster, by_pair = [], []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        common = rng.normal(size=(12, 5))[clusters] + 0.3 * rng.normal(size=(48, 5))
        offset = rng.normal(size=(12, 5))[clusters] / 2
        x = torch.tensor(common - offset + 0.3 * rng.normal(size=(48, 5)))
        y = torch.tensor(common + offset + 0.3 * rng.normal(size=(48, 5)))
        by_cluster.append(mmd_test(x, y, permutations=99, seed=seed, paired=True, clusters=clusters).p_value)
        by_pair.append(mmd_test(x, y, permutations=99, seed=seed, paired=True).p_value)
    assert sum(p < 0.05 for p in by_cluster) < 3, by_cluster
    assert sum(p < 0.05 for p in by_pair) >= 8, by_pair


SIZE_SEGMENTS = [2, 3, 4] * 4  # 12 segments, 36 pairs


def segment_offset_pairs(seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Clean and intervened windows of one distribution, exchangeable segment by segment only: a window
    effect c clustered by segment, and a random offset per segment, symmetric in sign, that x and y
    carry with opposite signs (x = c − δ_s + e, y = c + δ_s + e'). Swapping a whole segment's pairs
    turns δ_s into −δ_s, which leaves the distribution as it was; swapping single pairs does not."""
    rng = np.random.default_rng([0x512E, seed])
    clusters = np.repeat(np.arange(len(SIZE_SEGMENTS)), SIZE_SEGMENTS)
    n, d = len(clusters), 4
    common = rng.normal(size=(len(SIZE_SEGMENTS), d))[clusters] + 0.5 * rng.normal(size=(n, d))
    offset = 0.5 * rng.normal(size=(len(SIZE_SEGMENTS), d))[clusters]
    x = torch.tensor(common - offset + 0.5 * rng.normal(size=(n, d)))
    y = torch.tensor(common + offset + 0.5 * rng.normal(size=(n, d)))
    return x, y, clusters


def test_the_paired_cluster_test_has_its_nominal_size():
    """The size at α = 0.05 over N = 1,000 independent data sets of one distribution (with segments,
    `segment_offset_pairs`), 199 permutations each: at most 0.05·N + 3·sqrt(N·0.05·0.95) = 70.7
    rejections. A test of true size 0.05 passes with probability binom.cdf(70, 1000, 0.05) = 0.998; one
    of true size 0.10 with probability binom.cdf(70, 1000, 0.10) = 5.7e-4 (both checked below). Measured
    over 20,000 such data sets (another seed stream): size 0.0489. Negative control: swapping single
    pairs on the same data, which are not exchangeable pair by pair, rejects far more often than a
    size-0.10 test would, in 200 of the data sets."""
    n_sets, alpha = 1000, 0.05
    bound = math.floor(alpha * n_sets + 3 * math.sqrt(n_sets * alpha * (1 - alpha)))
    assert bound == 70
    assert binom.cdf(bound, n_sets, 0.10) < 1e-3 and binom.cdf(bound, n_sets, alpha) > 0.99
    rejections, by_pair = 0, 0
    for seed in range(n_sets):
        x, y, clusters = segment_offset_pairs(seed)
        rejections += mmd_test(x, y, 199, seed, paired=True, clusters=clusters).p_value <= alpha
        if seed < 200:
            by_pair += mmd_test(x, y, 199, seed, paired=True).p_value <= alpha
    assert rejections <= bound, rejections
    assert by_pair > 0.10 * 200 + 3 * math.sqrt(200 * 0.10 * 0.90), by_pair


@pytest.mark.parametrize("scheme", SCHEMES)
def test_p_value_equals_a_loop_over_the_same_permutations(scheme):
    """The vectorised quadratic forms against a plain loop that re-indexes a loop-built kernel matrix for
    each of the same permutations (`permutation_assignments`), at the same bandwidth: equal p-values, and
    every permuted statistic equal to 1e-9 of the terms' scale."""
    rng = np.random.default_rng(3)
    paired, clustered = SCHEMES[scheme]
    clusters = scattered_clusters(rng) if clustered else None
    n = 18 if paired else 15
    x, y = (paired_windows(rng, np.unique(clusters, return_inverse=True)[1] if clustered else np.arange(n), 3, 0.3)
            if paired else (gaussian(rng, n, 3), gaussian(rng, 12, 3, 0.3)))
    result = mmd_test(x, y, permutations=300, seed=5, paired=paired, clusters=clusters, chunk=64)
    kernel = loop_kernel_matrix(x.tolist() + y.tolist(), result.bandwidth)
    assignments = permutation_assignments(n, len(y), 300, seed=5, paired=paired, clusters=clusters)
    assert assignments.shape == (300, n + len(y))
    observed, scale = (indexed_paired_mmd2 if paired else indexed_mmd2)(kernel, np.arange(n + len(y)) < n)
    assert result.mmd2 == pytest.approx(observed, rel=0, abs=1e-9 * scale)
    p_value, permuted = loop_p_value(kernel, n, assignments, paired)
    assert result.p_value == p_value
    null = permutation_statistics(x, y, permutations=300, seed=5, paired=paired, clusters=clusters)
    assert (null.observed, null.bandwidth, null.units) == (result.mmd2, result.bandwidth, result.units)
    np.testing.assert_allclose(null.statistics.numpy(), permuted, rtol=0, atol=1e-9 * null.scale)
    assert 0.01 < result.p_value < 0.99  # a p-value with hits on both sides: the comparison has teeth
    assert (result.scheme, result.units) == (("paired", len(CLUSTER_SIZES) if clustered else n) if paired
                                              else ("unpaired", n + len(y)))


def test_assignments_unpaired_are_uniform_subsets():
    a = permutation_assignments(6, 4, 20000, seed=0)
    assert np.all(a.sum(axis=1) == 6)
    np.testing.assert_allclose(a.mean(axis=0), 0.6, atol=0.02)
    # all C(10, 6) = 210 subsets occur
    assert len({row.tobytes() for row in a}) == math.comb(10, 6)


def test_paired_cluster_swaps_keep_each_clusters_pairs_together():
    clusters = scattered_clusters(np.random.default_rng(4))
    n = len(clusters)
    a = permutation_assignments(n, n, 2000, seed=1, paired=True, clusters=clusters)
    stays, swaps = a[:, :n], a[:, n:]
    assert np.all(stays == ~swaps)  # x[i] and y[i] always land on opposite sides
    for cluster in np.unique(clusters):
        members = swaps[:, clusters == cluster]
        assert np.all(members == members[:, :1])  # one cluster, one decision
        assert 0.45 < members[:, 0].mean() < 0.55
    # clusters decide independently: every one of the 2^6 patterns occurs
    per_cluster = np.stack([swaps[:, np.flatnonzero(clusters == c)[0]] for c in np.unique(clusters)], axis=1)
    assert len({row.tobytes() for row in per_cluster}) == 2 ** len(CLUSTER_SIZES)


def test_paired_p_value_approaches_the_exact_enumeration():
    """4 segments of 3 pairs: all 16 swap patterns enumerated with the loop paired statistic; the random
    test with many permutations lands within Monte Carlo error of the exact share."""
    rng = np.random.default_rng(6)
    clusters = np.repeat([10, 20, 30, 40], 3)
    x, y = paired_windows(rng, np.repeat(np.arange(4), 3), 2, 0.35)
    result = mmd_test(x, y, permutations=20000, seed=0, paired=True, clusters=clusters)
    bandwidth = result.bandwidth
    observed = loop_paired_mmd2(x.tolist(), y.tolist(), bandwidth)
    hits = 0
    for pattern in itertools.product([False, True], repeat=4):
        swap = np.repeat(pattern, 3)
        xs = [(b if s else a) for a, b, s in zip(x.tolist(), y.tolist(), swap)]
        ys = [(a if s else b) for a, b, s in zip(x.tolist(), y.tolist(), swap)]
        hits += loop_paired_mmd2(xs, ys, bandwidth) >= observed - 1e-9
    exact = hits / 16
    assert 2 / 16 <= exact < 1  # the full swap always ties; this data set is in between
    assert result.p_value == pytest.approx(exact, abs=0.015)  # 4 Monte Carlo SDs at most


# ---------------------------------------------------------------------------------------------------
# a representation against itself


def test_a_representation_against_itself():
    """Project acceptance point: cosine 1, MMD² 0. The paired statistic of x against itself is 0.0
    exactly (not the rounding of its sums, which comes to about 1e-16 here), as is every permuted
    statistic and so null95, and p = 1: no swap can change anything. The unpaired MMD²_u, which
    treats the two as independent samples, is not 0 but exactly −2(1 − ā)/n (ā: the mean off-diagonal
    kernel value; its cross term keeps k(x_i, x_i) = 1)."""
    rng = np.random.default_rng(7)
    tokens = torch.tensor(rng.normal(size=(10, 6, 8)))
    tokens[3, 2] = 0  # a zero token, unchanged
    np.testing.assert_allclose(cosine_per_window(tokens, tokens).numpy(), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cosine_per_window(tokens[:, 0], tokens[:, 0]).numpy(), 1.0, rtol=0, atol=1e-12)

    x = gaussian(rng, 30, 4)
    kernel = loop_kernel_matrix(x.tolist(), 1.3)
    mean_off = (kernel.sum() - np.trace(kernel)) / (30 * 29)
    identity = -2 * (1 - mean_off) / 30
    assert mmd2_unbiased(x, x, bandwidth=1.3) == pytest.approx(identity, rel=1e-10)
    assert abs(identity) < 2 / 30
    assert mmd2_unbiased(x, x.clone(), bandwidth=1.3, paired=True) == 0.0
    for clusters in (None, np.repeat(np.arange(10), 3)):
        result = mmd_test(x, x.clone(), permutations=99, seed=0, bandwidth=1.3, paired=True, clusters=clusters)
        assert (result.mmd2, result.p_value, result.null95) == (0.0, 1.0, 0.0)
        null = permutation_statistics(x, x.clone(), 99, 0, bandwidth=1.3, paired=True, clusters=clusters)
        assert null.observed == 0.0 and bool((null.statistics == 0).all()) and len(null.statistics) == 99
    single = mmd_test(x, x.clone(), permutations=99, seed=0, paired=True, dtype=torch.float32)
    assert (single.mmd2, single.p_value) == (0.0, 1.0)
    # two windows moved the same way: no longer identical, and above 0 (one window alone would still give
    # 0 up to rounding: each bracket is ⟨φ(x_i) − φ(y_i), φ(x_j) − φ(y_j)⟩, 0 when either pair is equal)
    moved = x.clone()
    moved[[4, 9], 1] += 0.5
    assert mmd2_unbiased(x, moved, bandwidth=1.3, paired=True) > 1e-6


# ---------------------------------------------------------------------------------------------------
# what a result depends on


def test_results_depend_on_the_seed_alone():
    """Same seed, same result; the chunk size changes nothing; neither does the order of the pairs
    (permuted with their segments, or with their keys) nor of the rows of an unpaired test with keys.
    Negative control: without keys, reordering the pairs changes the p-value."""
    rng = np.random.default_rng(8)
    clusters = scattered_clusters(rng, sizes=[2] * 20)
    x, y = paired_windows(rng, np.unique(clusters, return_inverse=True)[1], 4, 0.15)
    keys = rng.permutation(10**6)[: len(x)]
    shuffle = rng.permutation(len(x))
    options = dict(permutations=400, seed=11, paired=True)

    clustered = mmd_test(x, y, clusters=clusters, **options)
    assert mmd_test(x, y, clusters=clusters, **options) == clustered
    assert mmd_test(x, y, clusters=clusters, chunk=7, **options) == clustered
    reordered = mmd_test(x[shuffle], y[shuffle], clusters=clusters[shuffle], **options)
    assert reordered.p_value == clustered.p_value
    assert reordered.mmd2 == pytest.approx(clustered.mmd2, rel=1e-12)
    assert mmd_test(x, y, clusters=clusters, **(options | {"seed": 12})).p_value != clustered.p_value

    keyed = mmd_test(x, y, keys=keys, **options)
    assert mmd_test(x[shuffle], y[shuffle], keys=keys[shuffle], **options).p_value == keyed.p_value
    assert mmd_test(x[shuffle], y[shuffle], **options).p_value != mmd_test(x, y, **options).p_value

    row_keys = rng.permutation(10**6)[: 2 * len(x)]
    unpaired = mmd_test(x, y, permutations=400, seed=11, keys=row_keys)
    sx, sy = rng.permutation(len(x)), rng.permutation(len(y))
    again = mmd_test(x[sx], y[sy], permutations=400, seed=11, keys=np.concatenate([row_keys[:len(x)][sx],
                                                                                    row_keys[len(x):][sy]]))
    assert again.p_value == unpaired.p_value


@pytest.mark.parametrize("paired", [False, True])
def test_float32_agrees_with_float64(paired):
    rng = np.random.default_rng(9)
    x, y = paired_windows(rng, np.arange(60), 8, 0.12) if paired else (gaussian(rng, 60, 8), gaussian(rng, 50, 8, 0.1))
    double = mmd_test(x, y, permutations=499, seed=0, paired=paired)
    single = mmd_test(x.float(), y.float(), permutations=499, seed=0, paired=paired, dtype=torch.float32)
    scale = permutation_statistics(x, y, 0, 0, paired=paired).scale  # the terms' magnitudes, ≈ 1.5
    assert single.bandwidth == pytest.approx(double.bandwidth, rel=1e-6)
    # float32 rounds each of the three terms to about 1e-7 of the scale; the statistic is their difference
    assert single.mmd2 == pytest.approx(double.mmd2, rel=0, abs=1e-5 * scale)
    assert single.null95 == pytest.approx(double.null95, rel=0, abs=1e-5 * scale)
    assert single.p_value == pytest.approx(double.p_value, abs=0.01)
    assert 0.01 < double.p_value < 0.99


# ---------------------------------------------------------------------------------------------------
# the null, the cosine, the subsample


@pytest.mark.parametrize("scheme", SCHEMES)
def test_null95_is_the_95th_percentile_of_the_permuted_statistics(scheme):
    """null95 is numpy's 95th percentile of the permuted statistics `permutation_statistics` gives for the
    same arguments (float64 and float32), NaN without permutations; under a mean shift the observed
    statistic lies far above it, with no shift below it here."""
    for shift, observed_above in ((0.0, False), (1.0, True)):
        x, y, options = scheme_data(scheme, 40, shift)
        for dtype in (torch.float64, torch.float32):
            result = mmd_test(x, y, 199, 3, dtype=dtype, **options)
            null = permutation_statistics(x, y, 199, 3, dtype=dtype, **options)
            assert result.null95 == float(np.quantile(null.statistics.numpy(), 0.95))
            assert (result.mmd2 > result.null95) == observed_above
    assert math.isnan(mmd_test(x, y, 0, 3, **options).null95)


def test_cosine_per_window_equals_a_loop_over_tokens():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 5, 3))
    b[1, 2] = -2 * a[1, 2]  # antiparallel: −1
    a[2, 0], b[2, 0] = 0, 0  # both zero: unchanged, 1
    a[3, 1] = 0  # zero against non-zero: 0

    def cosine(u, v) -> float:
        nu, nv = math.sqrt(sum(p * p for p in u)), math.sqrt(sum(q * q for q in v))
        if nu == 0 and nv == 0:
            return 1.0
        return 0.0 if nu == 0 or nv == 0 else sum(p * q for p, q in zip(u, v)) / (nu * nv)

    expected = [statistics.fmean(cosine(a[w, t], b[w, t]) for t in range(5)) for w in range(4)]
    np.testing.assert_allclose(cosine_per_window(torch.tensor(a), torch.tensor(b)).numpy(), expected, rtol=1e-12)
    flat = [cosine(a[w, 2], b[w, 2]) for w in range(4)]
    np.testing.assert_allclose(cosine_per_window(a[:, 2], b[:, 2]).numpy(), flat, rtol=1e-12)
    assert flat[1] == pytest.approx(-1.0)


def test_subsample_is_seeded_and_order_free_with_keys():
    assert np.array_equal(subsample(5, 10, seed=0), np.arange(5))
    keys = np.random.default_rng(12).permutation(10**5)[:300]
    chosen = subsample(300, 40, seed=2, keys=keys)
    assert len(np.unique(chosen)) == 40 and np.all(np.diff(chosen) > 0)
    shuffle = np.random.default_rng(13).permutation(300)
    again = subsample(300, 40, seed=2, keys=keys[shuffle])
    assert set(keys[shuffle][again]) == set(keys[chosen])
    assert set(subsample(300, 40, seed=3, keys=keys)) != set(chosen)


# ---------------------------------------------------------------------------------------------------
# bad inputs


X, Y = (torch.tensor(np.random.default_rng(seed).normal(size=(rows, 3))) for seed, rows in ((0, 6), (1, 5)))

BAD = {
    "widths": (lambda: mmd2_unbiased(X, torch.randn(5, 4)), "y"),
    "paired lengths": (lambda: mmd_test(X, Y, 9, 0, paired=True), "paired"),
    "permutations": (lambda: mmd_test(X, Y, -1, 0), "permutations"),
    "bandwidth 0": (lambda: mmd_test(X, Y, 9, 0, bandwidth=0.0), "bandwidth"),
    "bandwidth < 0": (lambda: mmd2_unbiased(X, Y, bandwidth=-1.0), "bandwidth"),
    "bandwidth nan": (lambda: rbf_kernel(X, float("nan")), "bandwidth"),
    "one vector": (lambda: mmd2_unbiased(X[:1], Y), "x"),
    "3-d sample": (lambda: mmd2_unbiased(X[None], Y), "x"),
    "non-finite": (lambda: mmd2_unbiased(X, torch.full((5, 3), float("inf"))), "y"),
    "dtype": (lambda: mmd2_unbiased(X, Y, dtype=torch.float16), "dtype"),
    "paired statistic lengths": (lambda: mmd2_unbiased(X, Y, paired=True), "paired"),
    "clusters length": (lambda: mmd_test(X, X, 9, 0, paired=True, clusters=np.arange(5)), "clusters"),
    "clusters unpaired": (lambda: mmd_test(X, Y, 9, 0, clusters=np.arange(6)), "clusters"),
    "keys repeated": (lambda: mmd_test(X, X, 9, 0, paired=True, keys=np.zeros(6)), "keys"),
    "chunk": (lambda: mmd_test(X, Y, 9, 0, chunk=0), "chunk"),
    "all points equal": (lambda: median_bandwidth(torch.ones(5, 2)), "bandwidth"),
    "cosine shapes": (lambda: cosine_per_window(X, Y), "b"),
    "cosine rank": (lambda: cosine_per_window(X[0], X[0]), "a"),
    "cap": (lambda: subsample(10, 0, 0), "cap"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_inputs_raise_config_error_naming_the_argument(case):
    call, option = BAD[case]
    with pytest.raises(ConfigError) as raised:
        call()
    assert raised.value.option == option


def test_zero_permutations_give_no_p_value():
    result = mmd_test(X, Y, 0, 0)
    assert math.isnan(result.p_value) and result.permutations == 0
    assert isinstance(result, MMDTest) and result.to_dict()["scheme"] == "unpaired"
