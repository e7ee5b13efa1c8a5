"""Statistics of an ablation grid that respect overlapping windows (DESIGN §4).

Windows cut from one repetition of one gesture overlap and share their errors, so the segment, not
the window, is the unit of resampling:

- confidence intervals are percentile intervals of a cluster bootstrap that resamples segments with
  replacement (each segment with all its windows); one set of resamples serves every row;
- the paired test is a sign-flip test on the segment totals of (base − intervened) correctness:
  under "the intervention changes nothing" each segment's total is as likely to be negated; exact
  over all 2^S sign patterns for S ≤ 16 segments, else (hits + 1)/(B + 1) over B random patterns;
- p-values of one grid carry a Holm correction;
- the chance-corrected drop is (base − acc)/(base − chance), chance being the majority-class rate of
  the evaluated windows (recomputed within each bootstrap resample).

Everything is vectorised over windows and resamples: one [resample, segment] weight matrix times
[segment, row] sums. Random draws depend on the seed alone and segments are numbered in sorted
order, so neither the order of the windows nor the batch size changes a number (beyond float
rounding in the last bits of sums taken in another order).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

_BOOTSTRAP_STREAM, _SIGN_STREAM = 0xB007, 0x5161
EXACT_SEGMENTS = 16  # up to 2^16 sign patterns: enumerate them all


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


def bootstrap_counts(n_segments: int, resamples: int, seed: int) -> np.ndarray:
    """How often each segment is drawn in each cluster-bootstrap resample: [resample, segment], rows
    summing to n_segments (a draw of n_segments segments with replacement)."""
    rng = np.random.default_rng([_BOOTSTRAP_STREAM, seed])
    return rng.multinomial(n_segments, np.full(n_segments, 1 / n_segments), size=resamples).astype(np.float64)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of [resample, ...], ignoring NaN resamples: ([...], [...])."""
    tail = (1 - level) / 2
    if not len(samples):
        return np.full(samples.shape[1:], np.nan), np.full(samples.shape[1:], np.nan)
    with warnings.catch_warnings():
        # an all-NaN column (a chance-corrected drop where base = chance) gives NaN, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(samples, tail, axis=0), np.nanquantile(samples, 1 - tail, axis=0)


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


def cluster_means(values: np.ndarray, segments: np.ndarray, bootstrap: int, seed: int,
                  level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means over windows of per-window values with cluster-bootstrap CIs over segments.

    values: [window, ...]; segments: [window] ids -> (mean [...], ci_low [...], ci_high [...])."""
    values = np.asarray(values, dtype=np.float64)
    codes, n_segments = segment_codes(segments)
    weights = bootstrap_counts(n_segments, bootstrap, seed)  # [resample, segment]
    size = weights @ np.bincount(codes, minlength=n_segments)
    sums = segment_sums(codes, n_segments, values).reshape(n_segments, -1)
    resampled = (weights @ sums / size[:, None]).reshape(len(weights), *values.shape[1:])
    low, high = percentile_interval(resampled, level)
    return values.mean(axis=0), low, high


def cluster_ratio(numerator: np.ndarray, denominator: np.ndarray, segments: np.ndarray, bootstrap: int, seed: int,
                  level: float = 0.95) -> tuple[float, float, float]:
    """Ratio of means Σ numerator / Σ denominator over windows, with a cluster-bootstrap CI over
    segments (both sums from the same resamples); NaN where a resampled denominator is 0.
    numerator, denominator: [window] -> (ratio, ci_low, ci_high)."""
    codes, n_segments = segment_codes(segments)
    weights = bootstrap_counts(n_segments, bootstrap, seed)
    top = weights @ segment_sums(codes, n_segments, numerator)
    bottom = weights @ segment_sums(codes, n_segments, denominator)
    resampled = np.full(len(weights), np.nan)
    np.divide(top, bottom, out=resampled, where=bottom != 0)
    total = float(np.sum(denominator))
    low, high = percentile_interval(resampled, level)
    return (float(np.sum(numerator)) / total if total != 0 else float("nan")), float(low), float(high)


def chance_corrected(drop: np.ndarray, above_chance: np.ndarray) -> np.ndarray:
    """drop / (base − chance); NaN where the base accuracy is not above chance (nothing to lose)."""
    above_chance = np.broadcast_to(above_chance, np.shape(drop))
    out = np.full(np.shape(drop), np.nan)
    np.divide(drop, above_chance, out=out, where=above_chance > 0)
    return out


def grid_statistics(base: torch.Tensor, intervened: list[torch.Tensor], target: torch.Tensor, segments: np.ndarray,
                    bootstrap: int, permutations: int, seed: int, level: float = 0.95) -> list[dict]:
    """The numbers of each row of a grid.

    base: clean logits [window, class]; intervened: per row, logits [draw, window, class] (one draw
    for mask and mean); target: [window] class indices; segments: [window] segment ids. A row's
    correctness per window is averaged over its draws; `accuracy_draw_sd` is the spread of the
    accuracy across draws. p_holm is left to the caller, which knows which rows are findings."""
    target = target.detach().cpu().long()
    labels = target.numpy()
    n_classes = max(int(base.shape[1]), int(labels.max()) + 1 if len(labels) else 0)
    codes, n_segments = segment_codes(segments)
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
    counts = np.bincount(labels, minlength=n_classes)
    chance = counts.max() / n
    base_accuracy = float(base_correct.mean())
    accuracy = correct.mean(axis=0)
    drop = base_accuracy - accuracy
    corrected = chance_corrected(drop, base_accuracy - chance)

    # cluster bootstrap: [resample, segment] counts times [segment, …] sums
    weights = bootstrap_counts(n_segments, bootstrap, seed)
    size = weights @ np.bincount(codes, minlength=n_segments)  # [resample] windows drawn
    base_b = weights @ segment_sums(codes, n_segments, base_correct) / size
    drop_b = base_b[:, None] - weights @ segment_sums(codes, n_segments, correct) / size[:, None]
    chance_b = (weights @ segment_sums(codes, n_segments, np.eye(n_classes)[labels])).max(axis=1) / size
    corrected_b = chance_corrected(drop_b, (base_b - chance_b)[:, None])
    drop_ci, corrected_ci = (percentile_interval(x, level) for x in (drop_b, corrected_b))
    margin_ci = cluster_means(margin_change, segments, bootstrap, seed, level)[1:]

    p = sign_flip_p(segment_sums(codes, n_segments, base_correct[:, None] - correct), permutations, seed)
    rows = []
    for r, draws in enumerate(correct_draws):  # draws: [draw, window]
        rows.append({
            "draws": len(draws),
            "windows": n,
            "segments": n_segments,
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
            "p_value": float(p[r]),
            "logit_margin_base": float(margin_base.mean()),
            "logit_margin": float(margin_base.mean() + margin_change[:, r].mean()),
            "logit_margin_change": float(margin_change[:, r].mean()),
            "logit_margin_change_ci_low": float(margin_ci[0][r]),
            "logit_margin_change_ci_high": float(margin_ci[1][r]),
            "kl": float(kl[:, r].mean()),
        })
    return rows
