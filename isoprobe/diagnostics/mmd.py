"""Distribution shift of representations under an intervention (DESIGN §5): the cosine similarity of
intervened and clean representations per window, and the kernel two-sample statistic MMD² with a
permutation test and the 95th percentile of its permutation null.

Conventions, fixed here and quoted by the reports:

- kernel: the Gaussian RBF k(a, b) = exp(−‖a − b‖² / (2σ²)), squared distances by the expansion
  ‖a‖² + ‖b‖² − 2a·b (after centring: distances do not move, the cancellation shrinks), clamped at 0;
- bandwidth, the median heuristic: σ = sqrt(median_{i<j} ‖z_i − z_j‖² / 2) over the distinct pairs
  of the pooled sample, so that k = exp(−‖a − b‖² / median) and a pair at the median squared distance
  has kernel value e⁻¹. The median of an even count is the mean of the middle two (numpy's). Beyond
  BANDWIDTH_POINTS points the median is taken over a seeded subsample of that many (`subsample`).
  Gretton et al. (2012, JMLR 13:723, §8) set σ to the median distance itself, a kernel √2 times wider:
  pass `bandwidth=` to use another convention;
- statistic, one per scheme, each an unbiased estimate of MMD² (expectation 0 when nothing differs,
  so it is often slightly negative then):
  unpaired, independent samples x [n] and y [m]: MMD²_u of Gretton et al. (2012), eq. 3,
      1/(n(n−1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i, y_j) − 2/(nm) Σ_{i,j} k(x_i, y_j);
  paired, y[i] the counterpart of x[i] (m = n): the U-statistic over the pairs z_i = (x_i, y_i),
      1/(n(n−1)) Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j) − k(x_i, y_j) − k(x_j, y_i)]
  (Gretton et al.'s form for m = n), which leaves each pair's own k(x_i, y_i) out of the cross term.
  The unpaired formula keeps those terms, and a window's two representations are close: on paired
  data it lies below the paired one by (2/n)(mean_i k(x_i, y_i) − mean_{i≠j} k(x_i, y_j)), a downward
  bias (measured with no shift at all, x_i = u_i + e_i and y_i = u_i + e'_i of width 16, n = 400:
  −2.2e-3 on average over 200 seeds, 230 standard errors below 0). Each bracket is
  ⟨φ(x_i) − φ(y_i), φ(x_j) − φ(y_j)⟩ in the kernel's feature space, so the paired statistic measures
  the moves that windows share: its expectation is 0 whenever each window's clean and intervened
  representations are exchangeable, and it is 0 exactly when at most one window moved (the code
  returns 0.0 for identical samples rather than the rounding of its sums);
- p-value: (hits + 1)/(B + 1) over B random permutations (Phipson & Smyth 2010, "Permutation
  p-values should never be zero"), a hit being a permuted statistic ≥ the observed one less a tie
  tolerance of TIE_RTOL × (the sum of the three terms' magnitudes): permutations that cannot change
  the statistic (identical samples, the swap of every pair) count as ties, not as rounding luck;
- null95: the 95th percentile (numpy's linear interpolation) of the same B permuted statistics, the
  size of the statistic when nothing moved, on its own scale: the observed value exceeds it about
  as often as p < 0.05.

Two permutation schemes:

- unpaired: x and y are independent samples; each permutation draws a uniformly random n-subset of
  the pooled n + m rows as the first sample;
- paired: x[i] and y[i] are the same window, clean and intervened; each permutation swaps the two
  members of each pair with probability ½. Overlapping windows of one repetition are not independent
  (DESIGN §4): with `clusters` (the segment of each pair) all pairs of one segment swap together.
  Swapping every unit leaves MMD² unchanged (it is symmetric in x and y), so the exact p-value cannot
  fall below 2/2^units: few segments, little power.

Vectorised: the pooled kernel matrix is computed once, and all permutations are evaluated in chunks as
one quadratic form each. With K₀ the pooled kernel without its diagonal, T = 1ᵀK₀1 and r = K₀1:
- unpaired, assignment a ∈ {0,1}^(n+m) (1 = first sample): Sxx = aᵀK₀a, Sxy = aᵀr − Sxx and
  Syy = T − 2aᵀr + Sxx, so one [chunk, n+m] × [n+m, n+m] product per chunk;
- paired, swap signs s ∈ {±1}^n (s = Cσ for cluster signs σ, C the [pair, cluster] membership):
  the within-sample total is W = ½ 1ᵀB₀1 + ½ σᵀ(CᵀG₀C)σ with G = Kxx + Kyy − Kxy − Kyx and
  B = Kxx + Kyy + Kxy + Kyx (both without their diagonal); the cross total over all i, j is (T − W)/2,
  and over i ≠ j it is (T − W)/2 − D with D = Σ_i k(x_i, y_i), which no swap moves; so one
  [chunk, units] × [units, units] product per chunk (units: pairs, or clusters).
Random draws come from `np.random.default_rng([stream, seed])`, one uniform per unit and permutation,
drawn row after row: the chunk size, the device and the dtype never change which permutations are
drawn, and with `keys` (or `clusters`, numbered in sorted order of their ids) neither does the order of
the windows (as in `isoprobe.engine.donors`). Memory is O((n + m)²): subsample to WINDOW_CAP first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F

from isoprobe.engine.stats import segment_codes
from isoprobe.errors import ConfigError

Scheme = Literal["unpaired", "paired"]
BANDWIDTH_POINTS = 1000  # at most this many pooled points for the median: 499,500 pairs
WINDOW_CAP = 2000  # a suggested cap per sample: the pooled kernel of 2 × 2,000 windows is 128 MB in float64
CHUNK_ELEMENTS = 1 << 22  # entries of one chunk's assignment matrix (32 MB in float64)
# Tie tolerance, relative to the scale of the terms (≈ 1.5 at the median bandwidth): above the rounding
# of the statistics (measured at n = m = 2,000, width 64: 1e-15 of the scale in float64; in float32 2e-7
# for the exact ties of the paired scheme, 1e-6 for the unpaired sums) and far below the statistic's
# null spread (7e-5 there, shrinking like 1/n). float32 is an approximation: its rounding comes within
# two orders of magnitude of that spread, so its p-values can differ from float64's by a few hits.
TIE_RTOL = {torch.float64: 1e-9, torch.float32: 1e-6}
_PERMUTATION_STREAM, _SUBSAMPLE_STREAM = 0x33D, 0x5AB  # apart from engine.stats and donors


@dataclass(frozen=True)
class MMDTest:
    """One two-sample test. mmd2: the scheme's unbiased statistic (module docstring); null95: the 95th
    percentile of its permutation null; units: what the permutations exchange (pooled rows for unpaired;
    pairs, or clusters when given, for paired). p_value and null95 are NaN when permutations is 0."""

    mmd2: float
    p_value: float
    null95: float
    bandwidth: float
    n: int
    m: int
    permutations: int
    scheme: Scheme
    units: int

    def to_dict(self) -> dict:
        return asdict(self)


def subsample(n: int, cap: int, seed: int, keys: np.ndarray | None = None) -> np.ndarray:
    """At most `cap` of n windows, chosen at random without replacement: [≤ cap] int positions, ascending.

    All n when n ≤ cap. keys: [n] distinct values naming the windows; with them the chosen set of
    windows depends on the seed alone, not on the order in which the windows arrive."""
    if cap < 1:
        raise ConfigError("cap", cap, "needs at least 1 window")
    order = _key_order(keys, n)
    if n <= cap:
        return np.arange(n)
    chosen = np.random.default_rng([_SUBSAMPLE_STREAM, seed]).choice(n, size=cap, replace=False)
    return np.sort(order[chosen])


def median_bandwidth(pooled: torch.Tensor, max_points: int = BANDWIDTH_POINTS, seed: int = 0,
                     keys: np.ndarray | None = None, *, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> float:
    """The median-heuristic σ of the pooled sample [N, d_model]: sqrt(median_{i<j} ‖z_i − z_j‖² / 2),
    over the points `subsample(N, max_points, seed, keys)` (all of them when N ≤ max_points)."""
    if max_points < 2:
        raise ConfigError("max_points", max_points, "needs at least 2 points to form a pair")
    z = _as_matrix("pooled", pooled, dtype, device)
    if len(z) < 2:
        raise ConfigError("pooled", f"{len(z)} vectors", "needs at least 2 vectors for the median heuristic")
    z = z[torch.as_tensor(subsample(len(z), max_points, seed, keys), device=z.device)]
    upper = torch.triu(torch.ones(len(z), len(z), dtype=torch.bool, device=z.device), diagonal=1)
    values = _squared_distances(z)[upper].sort().values
    middle = len(values) // 2
    median = float(values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2)
    if not median > 0:
        raise ConfigError("bandwidth", 0.0, "the median heuristic gave 0 (at least half of the pairs of vectors "
                          "coincide); pass a bandwidth > 0")
    return math.sqrt(median / 2)


def rbf_kernel(z: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """exp(−‖z_i − z_j‖² / (2σ²)) with σ = bandwidth: [N, d_model] -> [N, N], in z's dtype; symmetric
    up to rounding, with a diagonal of exactly 1."""
    return _squared_distances(z).mul_(-1 / (2 * _check_bandwidth(bandwidth) ** 2)).exp_()


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None, *, paired: bool = False,
                  seed: int = 0, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> float:
    """The unbiased MMD² between x [n, d_model] and y [m, d_model], n, m ≥ 2, as `mmd_test` computes it.

    paired False: independent samples, Gretton et al. (2012) eq. 3 (its cross term sums all n·m
    pairs). paired True: y[i] is the counterpart of x[i] (m = n); the U-statistic over pairs, whose
    cross term leaves out each pair's own k(x_i, y_i) — 0.0 exactly when y equals x. On the same data
    the paired value exceeds the unpaired one by (2/n)(mean_i k(x_i, y_i) − mean_{i≠j} k(x_i, y_j))
    (module docstring).
    bandwidth None: the median heuristic over the pooled sample (its subsample, beyond BANDWIDTH_POINTS,
    seeded by `seed`); pass an `MMDTest.bandwidth` to reproduce that test's statistic."""
    x, y = _pair_of_samples(x, y, dtype, device)
    _units(len(x), len(y), paired, None, None)  # paired: equal lengths
    bandwidth = _bandwidth_or_median(torch.cat([x, y]), bandwidth, seed, None)
    if paired and torch.equal(x, y):
        return 0.0
    return float(_statistic(_without_diagonal(rbf_kernel(torch.cat([x, y]), bandwidth)), len(x), paired)[0])


def permutation_assignments(n: int, m: int, permutations: int, seed: int, paired: bool = False,
                            clusters: np.ndarray | None = None, keys: np.ndarray | None = None) -> np.ndarray:
    """The permutations `mmd_test` draws, spelled out: [permutation, n + m] bool, True where a pooled row
    (x's rows, then y's) belongs to the first sample. Arguments as for `mmd_test`."""
    if permutations < 0:
        raise ConfigError("permutations", permutations, "needs a number ≥ 0")
    n_units, unit_of, order = _units(n, m, paired, clusters, keys)
    rows = []
    for draws in _uniform_chunks(n_units, permutations, seed, max(1, CHUNK_ELEMENTS // max(n_units, 1))):
        if paired:
            swap = _swaps(draws)[:, unit_of]
            rows.append(np.concatenate([~swap, swap], axis=1))
        else:
            rows.append(_first_sample(draws, n, order))
    return np.concatenate(rows) if rows else np.zeros((0, n + m), dtype=bool)


def mmd_test(x: torch.Tensor, y: torch.Tensor, permutations: int, seed: int, bandwidth: float | None = None,
             paired: bool = False, clusters: np.ndarray | None = None, *, keys: np.ndarray | None = None,
             dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
             chunk: int | None = None) -> MMDTest:
    """Permutation test of "x and y come from one distribution" on the scheme's unbiased MMD²
    (`mmd2_unbiased`), with the 95th percentile of the permuted statistics (`null95`).

    x: [n, d_model]; y: [m, d_model] (m = n when paired, y[i] the counterpart of x[i]); clusters: [n]
    segment ids of the pairs (paired only: a segment's pairs swap together); keys: distinct values
    naming the windows ([n] pairs when paired, [n + m] rows of x then y when unpaired) so that the
    result does not depend on their order; bandwidth None: the median heuristic over the pooled
    sample, seeded by `seed`; chunk: permutations per matrix product (default: CHUNK_ELEMENTS entries).
    Runs on `device` (default: x's) in `dtype` (float64 or float32)."""
    null = permutation_statistics(x, y, permutations, seed, bandwidth, paired, clusters, keys=keys, dtype=dtype,
                                  device=device, chunk=chunk)
    hits = int((null.statistics >= null.observed - TIE_RTOL[dtype] * null.scale).sum())
    null95 = float(np.quantile(null.statistics.cpu().numpy(), 0.95)) if permutations else float("nan")
    return MMDTest(mmd2=null.observed, p_value=(hits + 1) / (permutations + 1) if permutations else float("nan"),
                   null95=null95, bandwidth=null.bandwidth, n=null.n, m=null.m, permutations=permutations,
                   scheme="paired" if paired else "unpaired", units=null.units)


@dataclass(frozen=True)
class PermutationNull:
    """The observed statistic (the scheme's unbiased MMD²), its permutation distribution statistics
    [permutation] (on the device, in the dtype of the computation), and what `mmd_test` needs to count
    hits."""

    observed: float
    statistics: torch.Tensor
    scale: float  # the sum of the observed terms' magnitudes: TIE_RTOL is relative to it
    bandwidth: float
    n: int
    m: int
    units: int


def permutation_statistics(x: torch.Tensor, y: torch.Tensor, permutations: int, seed: int,
                           bandwidth: float | None = None, paired: bool = False, clusters: np.ndarray | None = None,
                           *, keys: np.ndarray | None = None, dtype: torch.dtype = torch.float64,
                           device: torch.device | str | None = None, chunk: int | None = None) -> PermutationNull:
    """The statistic under each of the permutations `permutation_assignments` spells out, all at once
    (the null distribution behind `mmd_test`, e.g. for a figure). Arguments as for `mmd_test`."""
    if permutations < 0:
        raise ConfigError("permutations", permutations, "needs a number ≥ 0 (0: no test, p-value NaN)")
    if chunk is not None and chunk < 1:
        raise ConfigError("chunk", chunk, "needs at least 1 permutation per chunk")
    x, y = _pair_of_samples(x, y, dtype, device)
    n, m = len(x), len(y)
    n_units, unit_of, order = _units(n, m, paired, clusters, keys)
    pooled = torch.cat([x, y])
    bandwidth = _bandwidth_or_median(pooled, bandwidth, seed, _pooled_keys(n, paired, keys))
    k0 = _without_diagonal(rbf_kernel(pooled, bandwidth))
    observed, scale = _statistic(k0, n, paired)
    if paired and torch.equal(x, y):
        # nothing moved: every bracket of the U-statistic cancels for every swap, so the statistic and its
        # whole null are 0; summing the blocks would give rounding (1e-17) instead of an exact 0
        return PermutationNull(observed=0.0, statistics=torch.zeros(permutations, dtype=dtype, device=x.device),
                               scale=float(scale), bandwidth=bandwidth, n=n, m=m, units=n_units)
    evaluate = _paired_statistic(k0, n, unit_of, n_units) if paired else _unpaired_statistic(k0, n)
    statistics = [torch.zeros(0, dtype=dtype, device=x.device)]
    for draws in _uniform_chunks(n_units, permutations, seed, chunk or max(1, CHUNK_ELEMENTS // n_units)):
        pattern = _swaps(draws) if paired else _first_sample(draws, n, order)
        statistics.append(evaluate(torch.as_tensor(pattern, device=x.device)))
    return PermutationNull(observed=float(observed), statistics=torch.cat(statistics), scale=float(scale),
                           bandwidth=bandwidth, n=n, m=m, units=n_units)


def cosine_per_window(a: torch.Tensor, b: torch.Tensor, *, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Cosine similarity of intervened and clean representations per window: [window, pos, d_model]
    inputs -> the mean over positions of each token's cosine; [window, d_model] -> the vectors' cosine;
    either way [window] in `dtype`.

    A token that is zero in both is unchanged and counts 1; zero against non-zero counts 0 (no
    direction to compare: torch's cosine with eps)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim not in (2, 3):
        raise ConfigError("a", f"shape {tuple(a.shape)}", "needs [window, d_model] or [window, pos, d_model]")
    if b.shape != a.shape:
        raise ConfigError("b", f"shape {tuple(b.shape)}", f"needs the shape of a, {tuple(a.shape)}")
    a, b = a.to(device=device or a.device, dtype=dtype), b.to(device=device or a.device, dtype=dtype)
    both_zero = (a == 0).all(dim=-1) & (b == 0).all(dim=-1)
    cosine = torch.where(both_zero, 1.0, F.cosine_similarity(a, b, dim=-1).clamp(-1, 1))
    return cosine.mean(dim=-1) if a.ndim == 3 else cosine


# ---------------------------------------------------------------------------------------------------
# private workers


def _as_matrix(name: str, z, dtype: torch.dtype, device) -> torch.Tensor:
    if dtype not in TIE_RTOL:
        raise ConfigError("dtype", dtype, "choose torch.float64 or torch.float32")
    z = torch.as_tensor(z)
    if z.ndim != 2:
        raise ConfigError(name, f"shape {tuple(z.shape)}", "needs [window, d_model] (flatten pos and d_model, "
                          "or take one position, first)")
    z = z.to(device=device or z.device, dtype=dtype)
    if not bool(torch.isfinite(z).all()):
        raise ConfigError(name, "non-finite values", "needs finite representations")
    return z


def _pair_of_samples(x, y, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    x = _as_matrix("x", x, dtype, device)
    y = _as_matrix("y", y, dtype, x.device)
    if y.shape[1] != x.shape[1]:
        raise ConfigError("y", f"width {y.shape[1]}", f"needs the width of x ({x.shape[1]})")
    for name, z in (("x", x), ("y", y)):
        if len(z) < 2:
            raise ConfigError(name, f"{len(z)} vectors", "needs at least 2 vectors (the unbiased MMD² has n − 1 "
                              "in a denominator)")
    return x, y


def _check_bandwidth(bandwidth: float) -> float:
    if not (math.isfinite(bandwidth) and bandwidth > 0):
        raise ConfigError("bandwidth", bandwidth, "needs a finite number > 0 (or None: the median heuristic)")
    return float(bandwidth)


def _bandwidth_or_median(pooled: torch.Tensor, bandwidth: float | None, seed: int, keys) -> float:
    if bandwidth is None:
        return median_bandwidth(pooled, seed=seed, keys=keys, dtype=pooled.dtype, device=pooled.device)
    return _check_bandwidth(bandwidth)


def _squared_distances(z: torch.Tensor) -> torch.Tensor:
    """‖z_i − z_j‖²: [N, d_model] -> [N, N], ≥ 0, diagonal exactly 0, symmetric up to rounding. Built in
    place with few passes over the [N, N] matrix: at N = 4,000 one elementwise pass costs about as much
    as the product itself."""
    z = z - z.mean(dim=0)
    norms = (z * z).sum(dim=1)
    d2 = torch.addmm(norms[:, None] + norms[None, :], z, z.T, alpha=-2).clamp_(min=0)
    return d2.fill_diagonal_(0)


def _without_diagonal(k: torch.Tensor) -> torch.Tensor:
    return k.fill_diagonal_(0)


def _statistic(k0: torch.Tensor, n: int, paired: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n pooled rows against the rest, from the kernel without its diagonal [N, N] ->
    (statistic, sum of the three terms' magnitudes: the scale of the tie tolerance). Unpaired: MMD²_u,
    the cross sum over all n·m pairs; paired: the U-statistic, the cross sum over i ≠ j (the diagonal of
    the x–y block, each pair's own k(x_i, y_i), left out)."""
    m = len(k0) - n
    within_x = k0[:n, :n].sum() / (n * (n - 1))
    within_y = k0[n:, n:].sum() / (m * (m - 1))
    block = k0[:n, n:]
    cross = (block.sum() - block.diagonal().sum()) / (n * (n - 1)) if paired else block.sum() / (n * m)
    return within_x + within_y - 2 * cross, within_x.abs() + within_y.abs() + 2 * cross.abs()


def _unpaired_statistic(k0: torch.Tensor, n: int):
    """MMD²_u for assignments [chunk, N] bool (True: first sample) -> [chunk]."""
    m = len(k0) - n
    rows = k0.sum(dim=1)
    total = rows.sum()

    def evaluate(assignment: torch.Tensor) -> torch.Tensor:
        a = assignment.to(k0.dtype)
        within_x = ((a @ k0) * a).sum(dim=1)
        linear = a @ rows  # aᵀK₀1 = Sxx + Sxy
        within_y = total - 2 * linear + within_x
        return within_x / (n * (n - 1)) + within_y / (m * (m - 1)) - 2 * (linear - within_x) / (n * m)

    return evaluate


def _paired_statistic(k0: torch.Tensor, n: int, unit_of: np.ndarray, n_units: int):
    """The paired U-statistic for swap patterns [chunk, units] bool (True: the unit's pairs swap) -> [chunk]."""
    kxx, kyy, kxy = k0[:n, :n], k0[n:, n:], k0[:n, n:]
    # k0 has no diagonal; the pooled diagonal of the x–y block is k(x_i, y_i), which no swap moves
    # within the samples, so B and G drop it too
    sym = (kxy + kxy.T).fill_diagonal_(0)
    base = (kxx.sum() + kyy.sum() + sym.sum()) / 2
    g = kxx + kyy - sym
    unit = torch.as_tensor(unit_of, device=k0.device)
    if n_units == n and bool((unit == torch.arange(n, device=k0.device)).all()):
        merged = g
    else:  # CᵀG₀C (transposed, which a quadratic form ignores): columns summed per unit, then rows, both
        # along dim 1, which torch's CPU index_add_ runs several times faster than dim 0
        columns = torch.zeros(n, n_units, dtype=k0.dtype, device=k0.device).index_add_(1, unit, g)
        merged = torch.zeros(n_units, n_units, dtype=k0.dtype, device=k0.device).index_add_(1, unit, columns.T)
    total = k0.sum()
    own = (kxy.diagonal().sum() + k0[n:, :n].diagonal().sum()) / 2  # D = Σ_i k(x_i, y_i), as T counts it

    def evaluate(swap: torch.Tensor) -> torch.Tensor:
        signs = 1 - 2 * swap.to(k0.dtype)
        within = base + ((signs @ merged) * signs).sum(dim=1) / 2  # Sxx + Syy after the swaps
        cross = (total - within) / 2 - own  # Σ_{i≠j} k(x_i, y_j) after the swaps
        return (within - 2 * cross) / (n * (n - 1))

    return evaluate


def _key_order(keys, n: int) -> np.ndarray:
    """Positions of n windows in sorted order of their keys (their own order without keys)."""
    if keys is None:
        return np.arange(n)
    keys = np.asarray(keys)
    if keys.shape != (n,) or len(np.unique(keys)) != n:
        raise ConfigError("keys", f"{keys.size} keys, {len(np.unique(keys))} distinct",
                          f"need {n} distinct keys, one per window")
    return np.argsort(keys, kind="stable")


def _cluster_codes(clusters, n: int) -> tuple[np.ndarray, int]:
    clusters = np.asarray(clusters)
    if clusters.shape != (n,):
        raise ConfigError("clusters", f"shape {clusters.shape}", f"needs one segment id per pair ({n})")
    return segment_codes(clusters)


def _units(n: int, m: int, paired: bool, clusters, keys) -> tuple[int, np.ndarray, np.ndarray]:
    """What the permutations exchange: (number of units, [pair] unit of each pair (paired), [unit]
    position of each unit in canonical order (unpaired: the pooled rows))."""
    if paired:
        if m != n:
            raise ConfigError("paired", f"n = {n}, m = {m}", "needs x and y of equal length (y[i] pairs with x[i])")
        if clusters is not None:
            codes, n_clusters = _cluster_codes(clusters, n)
            _key_order(keys, n)  # still validated: they order the bandwidth's subsample
            return n_clusters, codes, np.arange(n_clusters)
        order = _key_order(keys, n)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        return n, rank, order
    if clusters is not None:
        raise ConfigError("clusters", "given with paired=False", "clusters need the paired scheme (paired=True)")
    return n + m, np.arange(n + m), _key_order(keys, n + m)


def _pooled_keys(n: int, paired: bool, keys) -> np.ndarray | None:
    """Keys of the pooled rows for the bandwidth's subsample: a pair's two rows follow each other."""
    if keys is None or not paired:
        return keys
    rank = np.empty(n, dtype=np.int64)
    rank[_key_order(keys, n)] = np.arange(n)
    return np.concatenate([2 * rank, 2 * rank + 1])


def _uniform_chunks(n_units: int, permutations: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """[chunk, units] uniforms, row after row of one stream: the same rows whatever the chunk size."""
    rng = np.random.default_rng([_PERMUTATION_STREAM, seed])
    for start in range(0, permutations, chunk):
        yield rng.random((min(chunk, permutations - start), n_units))


def _swaps(draws: np.ndarray) -> np.ndarray:
    return draws < 0.5


def _first_sample(draws: np.ndarray, n: int, order: np.ndarray) -> np.ndarray:
    """The n units with the smallest draws form the first sample (a uniform n-subset), mapped from
    canonical units to pooled positions: [chunk, N] bool."""
    smallest = np.argpartition(draws, n - 1, axis=1)[:, :n]
    canonical = np.zeros(draws.shape, dtype=bool)
    np.put_along_axis(canonical, smallest, True, axis=1)
    out = np.empty_like(canonical)
    out[:, order] = canonical
    return out
