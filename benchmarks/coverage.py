"""Coverage of the ablation table's 95% CIs by simulation (DESIGN §4), not by recomputing the formula.

Replicate data sets with the structure of a real evaluation: K classes × R test repetitions × W windows,
each segment (one repetition of one class) with its own accuracy drawn around its class's (windows of one
segment share their errors: intra-segment correlation `rho`), and an intervention that knocks out a
share of each segment's correct windows, also drawn per segment. The class parameters are fixed (the
design fixes which gestures are evaluated, DESIGN §4), so the truth is known exactly:

    drop = mean_h p_h k_h,   base = mean_h p_h,   chance = 1/K (equal windows per class),
    chance-corrected drop = drop / (base − chance).

Each replicate goes through `grid_statistics` (the code behind `isoprobe ablate`); coverage is the share
of replicates whose CI holds the truth.

    python benchmarks/coverage.py                      # the table in BENCHMARKS.md ("Coverage")
    python benchmarks/coverage.py --replicates 2000 --classes 17 --repetitions 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from isoprobe.engine.stats import Segments, grid_statistics


ACCURACY = {"typical": (0.35, 0.95), "low": (0.1, 0.45)}  # ranges of the classes' base accuracy; low: near chance


def class_parameters(n_classes: int, seed: int, accuracy: str = "typical") -> tuple[np.ndarray, np.ndarray]:
    """Per class: base accuracy p_h and the share k_h of correct windows the intervention knocks out."""
    rng = np.random.default_rng([7, seed])
    return rng.uniform(*ACCURACY[accuracy], n_classes), rng.uniform(0.05, 0.6, n_classes)


def beta_around(mean: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """One draw per entry of a Beta with the given mean and intra-class correlation rho = 1/(a + b + 1)."""
    concentration = 1 / rho - 1
    return rng.beta(mean * concentration, (1 - mean) * concentration)


def replicate(p: np.ndarray, k: np.ndarray, repetitions: int, windows: int, rho: float, rng: np.random.Generator):
    """One evaluated set: (base logits, intervened logits [1, window, class], target, Segments)."""
    n_classes = len(p)
    cls = np.repeat(np.arange(n_classes), repetitions)  # [segment]
    p_segment, k_segment = beta_around(p[cls], rho, rng), beta_around(k[cls], rho, rng)
    segment = np.repeat(np.arange(len(cls)), windows)
    target = cls[segment]
    base_right = rng.random(len(segment)) < p_segment[segment]
    int_right = base_right & (rng.random(len(segment)) >= k_segment[segment])
    wrong = (target + 1) % n_classes

    def logits(right):
        x = np.zeros((len(segment), n_classes), dtype=np.float32)
        x[np.arange(len(segment)), np.where(right, target, wrong)] = 1.0
        return torch.from_numpy(x)

    return logits(base_right), logits(int_right)[None], torch.from_numpy(target), Segments.of(segment, target)


def coverage(n_classes: int, repetitions: int, windows: int, rho: float, replicates: int, bootstrap: int,
             seed: int = 0, accuracy: str = "typical", statistics=grid_statistics) -> dict:
    """Coverage of the drop's and the chance-corrected drop's 95% CIs over `replicates` data sets."""
    p, k = class_parameters(n_classes, seed, accuracy)
    truth_drop = float(np.mean(p * k))
    truth_corrected = truth_drop / (float(np.mean(p)) - 1 / n_classes)
    rng = np.random.default_rng([11, seed])
    hits = {"drop": 0, "chance_corrected": 0}
    undefined = 0
    for r in range(replicates):
        base, intervened, target, design = replicate(p, k, repetitions, windows, rho, rng)
        (row,) = statistics(base, [intervened], target, design, bootstrap, 0, seed=r)
        hits["drop"] += row["drop_ci_low"] <= truth_drop <= row["drop_ci_high"]
        hits["chance_corrected"] += row["chance_corrected_ci_low"] <= truth_corrected <= row["chance_corrected_ci_high"]
        undefined += np.isnan(row["chance_corrected_ci_low"])
    return {"segments": n_classes * repetitions, "classes": n_classes, "repetitions": repetitions,
            "replicates": replicates, "drop": hits["drop"] / replicates,
            "chance_corrected": hits["chance_corrected"] / replicates, "undefined": undefined / replicates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--rho", type=float, default=0.3)
    parser.add_argument("--classes", type=int, nargs="*", default=[5, 10, 17, 50])
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--accuracy", choices=list(ACCURACY), nargs="*", default=list(ACCURACY))
    args = parser.parse_args()
    se = (0.95 * 0.05 / args.replicates) ** 0.5
    print(f"{args.replicates} replicates each (binomial SE of a coverage of 0.95: {se:.3f}), {args.windows} windows per "
          f"segment, intra-segment correlation {args.rho}, {args.bootstrap} resamples")
    print("| segments | classes × repetitions | base accuracy per class | drop CI coverage | chance-corrected CI coverage |")
    print("| --- | --- | --- | --- | --- |")
    for accuracy in args.accuracy:
        for n_classes in args.classes:
            row = coverage(n_classes, args.repetitions, args.windows, args.rho, args.replicates, args.bootstrap,
                           accuracy=accuracy)
            low, high = ACCURACY[accuracy]
            print(f"| {row['segments']} | {n_classes} × {args.repetitions} | {low}–{high} | {row['drop']:.3f} "
                  f"| {row['chance_corrected']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
