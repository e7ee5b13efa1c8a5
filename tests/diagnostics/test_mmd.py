"""The distribution-shift core (`isoprobe.diagnostics.mmd`) against independent references written
here: the median heuristic, the kernel and the unbiased MMD² by explicit Python loops over pairs with
math.exp; the permutation p-values by a plain loop over the same permutations (drawn through the public
`permutation_assignments`) that re-indexes a loop-built kernel matrix; the paired scheme's exact p-value
by enumerating every swap pattern; calibration under no shift and power under a mean shift; the exact
identities of a representation compared with itself; invariance to the windows' order, the chunk size
and the dtype; and the cosine per window against a loop over tokens."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
import torch

from isoprobe.diagnostics.mmd import (TIE_RTOL, MMDTest, cosine_per_window, median_bandwidth, mmd2_unbiased,
                                      mmd_test, null_mmd2, permutation_assignments, permutation_statistics,
                                      rbf_kernel, subsample)
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


def loop_p_value(kernel: np.ndarray, n: int, assignments: np.ndarray) -> tuple[float, list[float]]:
    """(hits + 1)/(B + 1), one permutation at a time; and the permuted statistics."""
    observed, scale = indexed_mmd2(kernel, np.arange(len(kernel)) < n)
    permuted = [indexed_mmd2(kernel, row)[0] for row in assignments]
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
    assert result.mmd2 == pytest.approx(indexed_mmd2(kernel, np.arange(n + len(y)) < n)[0], rel=1e-9)
    p_value, permuted = loop_p_value(kernel, n, assignments)
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
    """4 segments of 3 pairs: all 16 swap patterns enumerated with the loop MMD²; the random test with
    many permutations lands within Monte Carlo error of the exact share."""
    rng = np.random.default_rng(6)
    clusters = np.repeat([10, 20, 30, 40], 3)
    x, y = paired_windows(rng, np.repeat(np.arange(4), 3), 2, 0.35)
    result = mmd_test(x, y, permutations=20000, seed=0, paired=True, clusters=clusters)
    bandwidth = result.bandwidth
    observed = loop_mmd2(x.tolist(), y.tolist(), bandwidth)
    hits = 0
    for pattern in itertools.product([False, True], repeat=4):
        swap = np.repeat(pattern, 3)
        xs = [(b if s else a) for a, b, s in zip(x.tolist(), y.tolist(), swap)]
        ys = [(a if s else b) for a, b, s in zip(x.tolist(), y.tolist(), swap)]
        hits += loop_mmd2(xs, ys, bandwidth) >= observed - 1e-9
    exact = hits / 16
    assert 2 / 16 <= exact < 1  # the full swap always ties; this data set is in between
    assert result.p_value == pytest.approx(exact, abs=0.015)  # 4 Monte Carlo SDs at most


# ---------------------------------------------------------------------------------------------------
# a representation against itself


def test_a_representation_against_itself():
    """Project acceptance point: cosine 1, MMD² ≈ 0. MMD²_u of x against itself is not 0 but exactly
    −2(1 − ā)/n (ā: the mean off-diagonal kernel value; the cross term keeps k(x_i, x_i) = 1), and the
    paired test of identical samples gives p = 1: no swap can change anything."""
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
    for clusters in (None, np.repeat(np.arange(10), 3)):
        result = mmd_test(x, x.clone(), permutations=99, seed=0, bandwidth=1.3, paired=True, clusters=clusters)
        assert result.mmd2 == pytest.approx(identity, rel=1e-10)
        assert result.p_value == 1.0
    assert mmd_test(x, x.clone(), permutations=99, seed=0, paired=True, dtype=torch.float32).p_value == 1.0


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
    assert single.bandwidth == pytest.approx(double.bandwidth, rel=1e-6)
    assert single.mmd2 == pytest.approx(double.mmd2, abs=1e-6)
    assert single.p_value == pytest.approx(double.p_value, abs=0.01)
    assert 0.01 < double.p_value < 0.99


# ---------------------------------------------------------------------------------------------------
# the null, the cosine, the subsample


def test_null_mmd2_is_small_next_to_a_shift_and_splits_by_segment():
    rng = np.random.default_rng(10)
    clusters = scattered_clusters(rng, sizes=[8] * 24)
    codes = np.unique(clusters, return_inverse=True)[1]
    x = torch.tensor(0.3 * rng.normal(size=(24, 6))[codes] + rng.normal(size=(len(codes), 6)))
    shifted = mmd2_unbiased(x, x + 1.0)
    null = null_mmd2(x, clusters, seed=0)
    assert abs(null) < 0.05 * shifted
    shuffle = rng.permutation(len(x))
    assert null_mmd2(x[shuffle], clusters[shuffle], seed=0) == pytest.approx(null, rel=1e-10)
    assert null_mmd2(x, clusters, seed=0, bandwidth=2.0) != pytest.approx(null)
    assert null_mmd2(x, clusters, seed=1) != pytest.approx(null)
    # without clusters: random halves of the windows, in the order of their keys
    keys = rng.permutation(10**6)[: len(x)]
    by_window = null_mmd2(x, None, seed=0, keys=keys)
    assert null_mmd2(x[shuffle], None, seed=0, keys=keys[shuffle]) == pytest.approx(by_window, rel=1e-10)
    assert null_mmd2(x, None, seed=1, keys=keys) != pytest.approx(by_window)
    # strong segment effects: halves of whole segments differ more than halves that share segments
    strong = torch.tensor(3 * rng.normal(size=(24, 6))[codes] + rng.normal(size=(len(codes), 6)))
    assert null_mmd2(strong, clusters, seed=0) > 5 * abs(null_mmd2(strong, None, seed=0))


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
    "clusters length": (lambda: mmd_test(X, X, 9, 0, paired=True, clusters=np.arange(5)), "clusters"),
    "clusters unpaired": (lambda: mmd_test(X, Y, 9, 0, clusters=np.arange(6)), "clusters"),
    "keys repeated": (lambda: mmd_test(X, X, 9, 0, paired=True, keys=np.zeros(6)), "keys"),
    "chunk": (lambda: mmd_test(X, Y, 9, 0, chunk=0), "chunk"),
    "all points equal": (lambda: median_bandwidth(torch.ones(5, 2)), "bandwidth"),
    "one cluster": (lambda: null_mmd2(X, np.zeros(6), 0), "clusters"),
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
