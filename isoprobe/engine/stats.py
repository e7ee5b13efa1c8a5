"""Statistics of an ablation grid that respect overlapping windows (DESIGN §4).

Windows cut from one repetition of one gesture overlap and share their errors, so the segment, not
the window, is the unit of resampling; and the experimental design fixes how many repetitions of each
gesture are evaluated, so segments are resampled within their class (stratified):

- confidence intervals come from a stratified cluster bootstrap (`Segments`): in each class with
  n ≥ 2 segments, n − 1 segments are drawn with replacement and weighted n/(n − 1), the rescaled
  bootstrap of Rao & Wu (1988, JASA 83:231), whose variance of a stratified mean is the textbook
  unbiased one Σ_h W_h² s_h²/n_h even at n = 2 (the naive n-of-n draw gives (n − 1)/n of it: half at
  DB2's two test repetitions). Each class keeps its segment count, so the class mix, and with it
  chance, stay as evaluated. Classes with one segment are pooled into one stratum (a single such class
  is held fixed: nothing to resample it against); one set of resamples serves every row. The interval
  is estimate ± t × (the resamples' standard deviation), t the Student quantile on the design's
  degrees of freedom, segments − strata (as survey practice does with replicate weights, e.g. R's
  `survey`): with 17 classes × 2 repetitions that is 17, and percentile intervals of the same
  resamples cover about 0.91 where these cover 0.94 (BENCHMARKS.md, "Coverage");
- the paired test is a sign-flip test on the segment totals of (base − intervened) correctness:
  under "the intervention changes nothing" each segment's total is as likely to be negated; exact
  over all 2^S sign patterns for S ≤ 16 segments, else (hits + 1)/(B + 1) over B random patterns;
- p-values of one grid carry a Holm correction;
- the chance-corrected drop is (base − acc)/(base − chance), chance being the majority-class rate of
  the evaluated windows, fixed (the design fixes the class mix); resamples where base ≤ chance leave
  it undefined: their share is reported, and the CI is NaN when it exceeds 1 − level.

Everything is vectorised over windows and resamples: one [resample, segment] weight matrix times
[segment, row] sums. Random draws depend on the seed alone and segments are numbered in sorted
order, so neither the order of the windows nor the batch size changes a number (beyond float
rounding in the last bits of sums taken in another order).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import t as student_t

from isoprobe.errors import ConfigError

_BOOTSTRAP_STREAM, _SIGN_STREAM = 0xB007, 0x5161
EXACT_SEGMENTS = 16  # up to 2^16 sign patterns: enumerate them all
# Fewer segments than this and the exact two-sided sign-flip p cannot fall below 0.05 (its least value is
# 2/2^S = 0.0625 at S = 5).
TESTABLE_SEGMENTS = 6
# Fewer segments than this and the 95% intervals cover clearly less than 95% in simulation (BENCHMARKS.md,
# "Coverage": about 0.91–0.93 at 10 segments, 0.93 at 20, 0.94 at 34): strata of unequal variance leave
# fewer effective degrees of freedom than the design's.
COVERED_SEGMENTS = 20


@dataclass(frozen=True)
class Segments:
    """The resampling design of an evaluated set: which segment each window belongs to and which class
    (stratum) each segment holds. codes: [window] segment 0…S-1 in sorted order of the segment ids;
    strata: [segment] stratum 0…H-1 in sorted order of the classes; windows: [segment] window counts."""

    codes: np.ndarray
    strata: np.ndarray
    windows: np.ndarray

    @classmethod
    def of(cls, segments, classes) -> "Segments":
        """From per-window segment ids and classes ([window] each). A segment is one repetition of one
        gesture, so it holds one class; a segment spanning two classes is an error."""
        codes, n_segments = segment_codes(segments)
        classes = np.asarray(classes).reshape(-1)
        if classes.shape != codes.shape:
            raise ConfigError("classes", f"{classes.size} values", f"needs one class per window ({codes.size})")
        class_codes, _ = segment_codes(classes)
        strata = np.full(n_segments, -1, dtype=np.int64)
        strata[codes] = class_codes
        mixed = np.flatnonzero(np.bincount(codes, weights=(class_codes != strata[codes]), minlength=n_segments))
        if len(mixed):
            raise ConfigError("segments", f"segment {np.unique(segments)[mixed[0]].item()!r}",
                              "holds windows of more than one class; a segment is one repetition of one gesture")
        return cls(codes, strata, np.bincount(codes, minlength=n_segments).astype(np.float64))

    @classmethod
    def of_windows(cls, windows) -> "Segments":
        """Of a WindowSet (its `segment` and class `y`)."""
        return cls.of(windows.segment, windows.y)

    @property
    def n_segments(self) -> int:
        return len(self.strata)

    @property
    def n_strata(self) -> int:
        return int(self.strata.max()) + 1 if len(self.strata) else 0

    @property
    def degrees_of_freedom(self) -> int:
        """segments − strata, strata of one segment pooled (a lone one held fixed adds nothing)."""
        strata = _pooled_strata(self.strata)
        sizes = np.bincount(strata) if len(strata) else np.zeros(0, dtype=int)
        return int(np.sum(np.maximum(sizes - 1, 0)))

    def take(self, index: np.ndarray) -> "Segments":
        """The design of the windows at `index` [window] (a subset keeps the original classes)."""
        codes = self.codes[np.asarray(index)]
        used, local = np.unique(codes, return_inverse=True)
        return Segments(local.reshape(-1), segment_codes(self.strata[used])[0],
                        np.bincount(local.reshape(-1), minlength=len(used)).astype(np.float64))

    def sums(self, values) -> np.ndarray:
        """Sums per segment of per-window values: [window, ...] -> [segment, ...]."""
        return segment_sums(self.codes, self.n_segments, values)

    def weights(self, resamples: int, seed: int) -> np.ndarray:
        """Rao–Wu rescaled stratified bootstrap weights [resample, segment]: in a stratum of n ≥ 2
        segments, the counts of n − 1 draws with replacement times n/(n − 1), so each resample keeps
        every stratum's total weight n. Strata of one segment are pooled first (see the module)."""
        strata = _pooled_strata(self.strata)
        out = np.ones((resamples, self.n_segments))
        rng = np.random.default_rng([_BOOTSTRAP_STREAM, seed])
        members = [np.flatnonzero(strata == h) for h in range(int(strata.max()) + 1 if len(strata) else 0)]
        for size in sorted({len(m) for m in members if len(m) >= 2}):  # a fixed order: the seed alone decides
            group = np.stack([m for m in members if len(m) == size])  # [stratum, segment]
            counts = rng.multinomial(size - 1, np.full(size, 1 / size), size=(resamples, len(group)))
            out[:, group] = counts * (size / (size - 1))
        return out

    def caveat(self) -> str:
        """What the segment count allows, in words ('' when it allows a 5% test and a covering CI)."""
        notes = []
        if self.n_segments < TESTABLE_SEGMENTS:
            notes.append(f"{self.n_segments} segments: the sign-flip p cannot fall below "
                         f"{2 / 2 ** self.n_segments if self.n_segments else 1:.3g}")
        if self.n_segments < COVERED_SEGMENTS:
            notes.append(f"{self.n_segments} segments (< {COVERED_SEGMENTS}): 95% CIs cover less than 95%")
        return "; ".join(notes)


def _pooled_strata(strata: np.ndarray) -> np.ndarray:
    """Strata with one segment pooled into one stratum (the lowest of their codes), renumbered 0…H-1."""
    sizes = np.bincount(strata, minlength=int(strata.max()) + 1 if len(strata) else 0)
    lonely = sizes[strata] == 1
    pooled = strata.copy()
    if lonely.sum() >= 2:
        pooled[lonely] = strata[lonely].min()
    return segment_codes(pooled)[0] if len(pooled) else pooled


def logit_margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the largest other logit: [..., window, class], target [window] -> [..., window]."""
    index = target.expand(logits.shape[:-1])[..., None]
    true = logits.gather(-1, index).squeeze(-1)
    others = logits.scatter(-1, index, float("-inf")).amax(dim=-1)
    return true - others


def kl_divergence(base: torch.Tensor, intervened: torch.Tensor) -> torch.Tensor:
    """KL(p_base ‖ p_intervened) in nats, in float64: base [window, class], intervened [..., window, class] -> [..., window]."""
    log_p, log_q = torch.log_softmax(base.double(), dim=-1), torch.log_softmax(intervened.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def segment_codes(segments: np.ndarray) -> tuple[np.ndarray, int]:
    """Segment ids of any kind -> ([window] codes 0…S-1 in sorted order of the ids, S)."""
    codes = np.unique(np.asarray(segments), return_inverse=True)[1].reshape(-1)
    return codes, int(codes.max()) + 1 if len(codes) else 0


def segment_sums(codes: np.ndarray, n_segments: int, values: np.ndarray) -> np.ndarray:
    """Sums per segment of per-window values: [window, ...] -> [segment, ...]."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros((n_segments, *values.shape[1:]))
    np.add.at(out, codes, values)
    return out


def undefined_share(samples: np.ndarray) -> np.ndarray:
    """Share of resamples where a statistic is undefined (NaN): [resample, ...] -> [...]."""
    return np.isnan(samples).mean(axis=0) if len(samples) else np.full(samples.shape[1:], np.nan)


def bootstrap_interval(resampled: np.ndarray, estimate: np.ndarray, degrees_of_freedom: int,
                       level: float = 0.95, bounds: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """estimate ± t_{df, (1 + level)/2} × the standard deviation of the resamples [resample, ...] -> ([...], [...]).

    Resamples where the statistic is undefined (NaN) are left out while they are at most 1 − level of
    them; beyond that the interval would be conditional on a rare event, and it is NaN (as with no
    degrees of freedom, or fewer than two resamples). bounds: the statistic's range (an accuracy's
    [0, 1]; each end a number or an array broadcasting to [...]), which the interval is clipped to: a
    symmetric interval can reach past it, the truth cannot."""
    resampled = np.asarray(resampled, dtype=np.float64)
    shape = resampled.shape[1:]
    if len(resampled) < 2 or degrees_of_freedom < 1:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN, as meant
        spread = np.nanstd(resampled, axis=0, ddof=1)
    half = student_t.ppf((1 + level) / 2, degrees_of_freedom) * spread
    usable = undefined_share(resampled) <= 1 - level + 1e-12
    estimate = np.broadcast_to(np.asarray(estimate, dtype=np.float64), shape)
    low, high = estimate - half, estimate + half
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    return np.where(usable, low, np.nan), np.where(usable, high, np.nan)


def sign_flip_p(totals: np.ndarray, permutations: int, seed: int) -> np.ndarray:
    """Two-sided paired p-value per row from segment totals of the differences: [segment, row] -> [row].

    Exact (share of all 2^S sign patterns whose |Σ| reaches the observed |Σ|) for S ≤ EXACT_SEGMENTS;
    otherwise (hits + 1)/(B + 1) over B = `permutations` random patterns. NaN when B = 0 and S is large."""
    totals = np.asarray(totals, dtype=np.float64)
    n_segments, n_rows = totals.shape
    if n_segments == 0:
        return np.full(n_rows, np.nan)
    observed = np.abs(totals.sum(axis=0))
    # sums of ±1-weighted totals are exact up to rounding: count ties as hits
    threshold = observed - 1e-9 * np.maximum(1.0, np.abs(totals).sum(axis=0))
    if n_segments <= EXACT_SEGMENTS:
        patterns = ((np.arange(2**n_segments)[:, None] >> np.arange(n_segments)) & 1) * 2.0 - 1
        return (np.abs(patterns @ totals) >= threshold).mean(axis=0)
    if permutations <= 0:
        return np.full(n_rows, np.nan)
    rng = np.random.default_rng([_SIGN_STREAM, seed])
    hits = np.zeros(n_rows)
    for start in range(0, permutations, 4096):  # chunks bound the [pattern, segment] matrix
        patterns = rng.choice(np.array([-1.0, 1.0]), size=(min(4096, permutations - start), n_segments))
        hits += (np.abs(patterns @ totals) >= threshold).sum(axis=0)
    return (hits + 1) / (permutations + 1)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values: [row] -> [row]; NaN entries stay NaN and are not counted."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m:
        order = valid[np.argsort(p[valid], kind="stable")]
        adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
        out[order] = np.minimum(adjusted, 1.0)
    return out


def _design(segments: Segments) -> Segments:
    if not isinstance(segments, Segments):
        raise TypeError("pass the resampling design, Segments.of(segment ids, classes), not bare segment ids: "
                        "the bootstrap is stratified by class")
    return segments


def cluster_means(values: np.ndarray, segments: Segments, bootstrap: int, seed: int, level: float = 0.95,
                  bounds: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means over windows of per-window values with stratified cluster-bootstrap CIs over segments
    (clipped to `bounds`, the range the mean can take, where given).

    values: [window, ...] -> (mean [...], ci_low [...], ci_high [...])."""
    values = np.asarray(values, dtype=np.float64)
    design = _design(segments)
    weights = design.weights(bootstrap, seed)  # [resample, segment]
    sums = design.sums(values).reshape(design.n_segments, -1)
    resampled = (weights @ sums / (weights @ design.windows)[:, None]).reshape(len(weights), *values.shape[1:])
    mean = values.mean(axis=0)
    low, high = bootstrap_interval(resampled, mean, design.degrees_of_freedom, level, bounds)
    return mean, low, high


def cluster_ratio(numerator: np.ndarray, denominator: np.ndarray, segments: Segments, bootstrap: int, seed: int,
                  level: float = 0.95) -> tuple[float, float, float]:
    """Ratio of means Σ numerator / Σ denominator over windows, with a stratified cluster-bootstrap CI
    over segments (both sums from the same resamples; NaN where a resampled denominator is 0).
    numerator, denominator: [window] -> (ratio, ci_low, ci_high)."""
    design = _design(segments)
    weights = design.weights(bootstrap, seed)
    top, bottom = weights @ design.sums(numerator), weights @ design.sums(denominator)
    resampled = np.full(len(weights), np.nan)
    np.divide(top, bottom, out=resampled, where=bottom != 0)
    total = float(np.sum(denominator))
    ratio = float(np.sum(numerator)) / total if total != 0 else float("nan")
    low, high = bootstrap_interval(resampled[:, None], ratio, design.degrees_of_freedom, level)
    return ratio, float(low[0]), float(high[0])


def chance_corrected(drop: np.ndarray, above_chance: np.ndarray) -> np.ndarray:
    """drop / (base − chance); NaN where the base accuracy is not above chance (nothing to lose)."""
    above_chance = np.broadcast_to(above_chance, np.shape(drop))
    out = np.full(np.shape(drop), np.nan)
    np.divide(drop, above_chance, out=out, where=above_chance > 0)
    return out


def grid_statistics(base: torch.Tensor, intervened: list[torch.Tensor], target: torch.Tensor, segments: Segments,
                    bootstrap: int, permutations: int, seed: int, level: float = 0.95) -> list[dict]:
    """The numbers of each row of a grid.

    base: clean logits [window, class]; intervened: per row, logits [draw, window, class] (one draw
    for mask and mean); target: [window] class indices; segments: the windows' design. A row's
    correctness per window is averaged over its draws; `accuracy_draw_sd` is the spread of the
    accuracy across draws. p_holm is left to the caller, which knows which rows are findings."""
    design = _design(segments)
    target = target.detach().cpu().long()
    labels = target.numpy()
    n_classes = max(int(base.shape[1]), int(labels.max()) + 1 if len(labels) else 0)
    base = base.detach().cpu().double()
    base_correct = (base.argmax(1) == target).double().numpy()
    margin_base = logit_margin(base, target)
    correct_draws, margin_change, kl = [], [], []
    for row in intervened:  # every draw of a row at once: [draw, window, class]
        row = row.detach().cpu().double()
        correct_draws.append((row.argmax(-1) == target).double().numpy())  # [draw, window]
        margin_change.append((logit_margin(row, target).mean(dim=0) - margin_base).numpy())
        kl.append(kl_divergence(base, row).mean(dim=0).numpy())
    correct = np.stack([c.mean(axis=0) for c in correct_draws], axis=1)  # [window, row]
    margin_change, kl = np.stack(margin_change, axis=1), np.stack(kl, axis=1)  # [window, row]
    margin_base = margin_base.numpy()

    n = len(labels)
    chance = np.bincount(labels, minlength=n_classes).max() / n  # fixed by the design
    base_accuracy = float(base_correct.mean())
    accuracy = correct.mean(axis=0)
    drop = base_accuracy - accuracy
    corrected = chance_corrected(drop, base_accuracy - chance)

    weights = design.weights(bootstrap, seed)  # [resample, segment]
    size = weights @ design.windows  # [resample] windows drawn
    base_b = weights @ design.sums(base_correct) / size
    drop_b = base_b[:, None] - weights @ design.sums(correct) / size[:, None]
    corrected_b = chance_corrected(drop_b, (base_b - chance)[:, None])
    df = design.degrees_of_freedom
    drop_ci = bootstrap_interval(drop_b, drop, df, level, bounds=(-1.0, 1.0))
    corrected_ci = bootstrap_interval(corrected_b, corrected, df, level)
    undefined = undefined_share(corrected_b)
    margin_ci = cluster_means(margin_change, design, bootstrap, seed, level)[1:]

    p = sign_flip_p(design.sums(base_correct[:, None] - correct), permutations, seed)
    caveat = design.caveat()
    rows = []
    for r, draws in enumerate(correct_draws):  # draws: [draw, window]
        rows.append({
            "draws": len(draws),
            "windows": n,
            "segments": design.n_segments,
            "base_accuracy": base_accuracy,
            "accuracy": float(accuracy[r]),
            "accuracy_draw_sd": float(draws.mean(axis=1).std(ddof=1)) if len(draws) > 1 else float("nan"),
            "drop": float(drop[r]),
            "drop_ci_low": float(drop_ci[0][r]),
            "drop_ci_high": float(drop_ci[1][r]),
            "relative_drop": float(drop[r] / base_accuracy) if base_accuracy > 0 else float("nan"),
            "chance": float(chance),
            "chance_corrected_drop": float(corrected[r]),
            "chance_corrected_ci_low": float(corrected_ci[0][r]),
            "chance_corrected_ci_high": float(corrected_ci[1][r]),
            "chance_corrected_undefined": float(undefined[r]),
            "p_value": float(p[r]),
            "logit_margin_base": float(margin_base.mean()),
            "logit_margin": float(margin_base.mean() + margin_change[:, r].mean()),
            "logit_margin_change": float(margin_change[:, r].mean()),
            "logit_margin_change_ci_low": float(margin_ci[0][r]),
            "logit_margin_change_ci_high": float(margin_ci[1][r]),
            "kl": float(kl[:, r].mean()),
            "caveat": caveat,
        })
    return rows
