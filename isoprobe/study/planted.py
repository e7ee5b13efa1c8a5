"""On synthetic data the answer is planted (isoprobe-synth.json: which modality each class needs);
these checks set what each run found next to it, one row per (run, check). Each rule names the number
it tests (`tested`: the estimate, a CI bound, or the whole CI) and the region it must lie in
(`low` < tested < `high`, either side open where empty), so a failure can be read off the figure;
each rule has a failing case in tests/study/test_planted.py. A method is trusted on real data only
after it passes here.

- `alone`: a unimodal model recognises the classes its modality identifies alone: accuracy on them
  (95% stratified cluster-bootstrap CI over segments) above chance, CI low > chance. Chance is what a
  model blind to the input scores on those windows while predicting each class as often as this model
  does: Σ_c π_c q_c, π_c the tested windows' class shares, q_c the share of all its windows it assigns
  to class c (1/K for a model spreading its answers evenly; 1/m when it keeps to the m classes tested);
- `blind`: a unimodal model does not recognise the classes its modality carries nothing about (not
  synergy classes): accuracy on them within BLIND_MARGIN of that chance, CI high < chance + margin;
- `pair`: a unimodal model cannot split a synergy pair: of the windows it puts in the right pair,
  the share in the right class stays near 0.5: CI high < PAIR_SPLIT;
- `synergy`: a model with both modalities splits the pairs: CI low > PAIR_SPLIT;
- `interaction`: the modality interaction index (compare), v(both) − v(emg) − v(acc) + v(none) in
  accuracy, is positive where classes need both modalities (synergy: CI low > 0), negative where either
  modality alone suffices (redundancy, substitutes: v(both) = v(emg) = v(acc) gives v(none) − v(both):
  CI high < 0), and within ±INTERACTION_MARGIN where one modality carries everything (the whole CI:
  a CI merely covering 0 would pass more easily the noisier the data). Where synergy and redundant
  classes are mixed, the two offset in one index and no sign is planted: no row;
- `emap`: the EMAP gap (compare: model accuracy − its additive projection's) is positive where classes
  need both modalities (CI low > 0), and where no class needs both the model needs no interaction: CI
  high < INTERACTION_MARGIN (one-sided: a model that does better once the uninformative modality is
  averaged out has a negative gap, and needs no interaction either);
- `pid`: the data's synergy (pid.csv, labels, at PID_CODES codes per modality) lies above the
  permutation floor's 95th percentile where the sidecar plants synergy bits, and at or below it where it
  plants none (the plug-in bias is all the floor shows);
- `structural`: on the multimodal transformer, every cross-modal row of the ablation is null by
  construction (no cross-modal attention exists) and changes nothing: its accuracy drop and logit-margin
  change are 0 (|Δ| ≤ STRUCTURAL_TOLERANCE; the engine returns the clean logits for such rows, so 0
  exactly). `found` is the largest |Δ|, and a row not marked null fails whatever it measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from isoprobe.data.modalities import split_groups
from isoprobe.engine.stats import Segments, cluster_means

PAIR_SPLIT = 0.65  # within-pair accuracy between chance (0.5) and a split pair (≈ 1)
BLIND_MARGIN = 0.05  # accuracy points above chance a blind model may reach (equivalence margin)
INTERACTION_MARGIN = 0.05  # accuracy points: the interaction index where one modality carries everything
STRUCTURAL_TOLERANCE = 1e-6
PID_CODES = 8  # codes per modality of the PID check (compare's data-synergy row uses the same)
BOOTSTRAP_SEED = 0

COLUMNS = ("check", "quantity", "method", "planted", "found", "ci_low", "ci_high", "tested", "low", "high", "passed")


def planted_rows(truth: dict, run: Path, identity: dict, bootstrap: int) -> list[dict]:
    """The checks that apply to one run (its predictions, compare and ablation tables)."""
    rows: list[dict] = []
    classes = {c["label"]: c for c in truth["classes"]}
    sources = {group.split("[")[0].strip() for group in split_groups(identity["modalities"])}
    predictions = run / "eval" / "predictions.csv"
    if predictions.is_file():
        rows += _accuracy_rows(pd.read_csv(predictions), classes, sources, bootstrap)
    compare = run / "compare" / "compare.csv"
    if compare.is_file():
        rows += _interaction_rows(pd.read_csv(compare), classes)
        rows += _emap_rows(pd.read_csv(compare), classes)
    pid = run / "pid" / "pid.csv"
    if pid.is_file():
        rows += _pid_rows(pd.read_csv(pid))
    ablation = run / "ablate" / "ablation.csv"
    if ablation.is_file() and identity["arch"] == "mmt":
        rows += _null_rows(pd.read_csv(ablation))
    return rows


def _segment_mean(values: np.ndarray, frame: pd.DataFrame, bootstrap: int) -> tuple[float, float, float]:
    labels = frame.label.to_numpy()
    segments = Segments.of(labels * 1000 + frame.repetition.to_numpy(), labels)
    mean, low, high = cluster_means(values.astype(np.float64), segments, bootstrap, BOOTSTRAP_SEED, bounds=(0.0, 1.0))
    return float(mean), float(low), float(high)


def blind_chance(predictions: pd.DataFrame, tested: np.ndarray) -> float:
    """Σ_c π_c q_c: the accuracy on the `tested` windows [window] bool of a model that ignores its input
    and predicts class c at the rate q_c this run predicts it over all its windows."""
    rates = predictions.predicted.value_counts(normalize=True)
    shares = predictions.label[tested].value_counts(normalize=True)
    return float(sum(share * rates.get(label, 0.0) for label, share in shares.items()))


def _accuracy_rows(predictions: pd.DataFrame, classes: dict, sources: set[str], bootstrap: int) -> list[dict]:
    rows = []
    correct = (predictions.label == predictions.predicted).to_numpy()
    if len(sources) == 1:
        (source,) = sources
        alone = predictions.label.map(lambda label: source in classes[label]["informative_alone"]).to_numpy(bool)
        if alone.any():
            found = _segment_mean(correct[alone], predictions[alone], bootstrap)
            chance = blind_chance(predictions, alone)
            rows.append(_row("alone", f"accuracy on the classes {source} identifies alone", "accuracy",
                             f"above chance {chance:.3f} (CI low > chance)", found, "ci_low", chance, None))
        blind = predictions.label.map(lambda label: classes[label].get("partner") is None
                                      and source not in classes[label]["informative_alone"]).to_numpy(bool)
        if blind.any():
            found = _segment_mean(correct[blind], predictions[blind], bootstrap)
            chance = blind_chance(predictions, blind)
            rows.append(_row("blind", f"accuracy on the classes {source} carries nothing about", "accuracy",
                             f"chance {chance:.3f}, within {BLIND_MARGIN} (CI high < {chance + BLIND_MARGIN:.3f})", found,
                             "ci_high", None, chance + BLIND_MARGIN))
    partner = {label: c["partner"] for label, c in classes.items() if c.get("partner") is not None}
    in_pair = predictions.label.isin(partner.keys()).to_numpy(bool)
    if in_pair.any():
        pairs = predictions[in_pair]
        right_pair = (pairs.predicted == pairs.label) | (pairs.predicted == pairs.label.map(partner))
        split = (pairs.predicted == pairs.label).to_numpy()[right_pair.to_numpy()]
        if split.size:
            found = _segment_mean(split, pairs[right_pair.to_numpy()], bootstrap)
            if len(sources) == 1:
                rows.append(_row("pair", "within-pair accuracy of the synergy classes", "accuracy",
                                 f"≈ 0.5, chance within the pair (CI high < {PAIR_SPLIT})", found, "ci_high", None, PAIR_SPLIT))
            else:
                rows.append(_row("synergy", "within-pair accuracy of the synergy classes", "accuracy",
                                 f"≈ 1, the pair split by the combination (CI low > {PAIR_SPLIT})", found, "ci_low",
                                 PAIR_SPLIT, None))
    return rows


def _interaction_rows(compare: pd.DataFrame, classes: dict) -> list[dict]:
    synergy = any(c.get("partner") is not None for c in classes.values())
    redundant = any(len(c.get("informative_alone", [])) >= 2 for c in classes.values())
    if synergy and redundant:  # mixed: synergy (> 0) and redundancy (< 0) offset, no sign is planted
        return []
    quantity = "v(both) − v(emg) − v(acc) + v(none), accuracy"
    out = []
    for row in compare[compare.method == "interaction index"].itertuples():
        found = (float(row.estimate), float(row.ci_low), float(row.ci_high))
        if synergy:
            out.append(_row("interaction", quantity, "interaction index", "> 0: synergy classes exist (CI low > 0)",
                            found, "ci_low", 0.0, None))
        elif redundant:
            out.append(_row("interaction", quantity, "interaction index",
                            "< 0: either modality alone suffices (redundancy; CI high < 0)", found, "ci_high", None, 0.0))
        else:
            out.append(_row("interaction", quantity, "interaction index",
                            f"0: one modality carries every class (CI within ±{INTERACTION_MARGIN})", found, "ci",
                            -INTERACTION_MARGIN, INTERACTION_MARGIN))
    return out


def _emap_rows(compare: pd.DataFrame, classes: dict) -> list[dict]:
    synergy = any(c.get("partner") is not None for c in classes.values())
    quantity = "model accuracy − EMAP accuracy (its best additive projection)"
    out = []
    for row in compare[compare.method == "EMAP gap"].itertuples():
        found = (float(row.estimate), float(row.ci_low), float(row.ci_high))
        if synergy:
            out.append(_row("emap", quantity, "EMAP gap", "> 0: synergy classes need the interaction (CI low > 0)",
                            found, "ci_low", 0.0, None))
        else:
            out.append(_row("emap", quantity, "EMAP gap", f"no interaction needed: no class needs both modalities "
                            f"(CI high < {INTERACTION_MARGIN})", found, "ci_high", None, INTERACTION_MARGIN))
    return out


def _pid_rows(pid: pd.DataFrame) -> list[dict]:
    rows = pid[(pid.target == "labels") & (pid.k == PID_CODES) & (pid.part == "synergy")]
    if rows.empty or not np.isfinite(rows.expected_bits.iloc[0]):
        return []
    row = rows.iloc[0]
    found = (float(row.bits), float(row.ci_low), float(row.ci_high))
    quantity = f"synergy of the labels, bits (K = {PID_CODES} codes per modality)"
    if row.expected_bits > 0:
        return [_row("pid", quantity, "PID (BROJA)", f"{row.expected_bits:.3g} bits planted: above the permutation "
                     "floor's 95th percentile", found, "estimate", float(row.floor95), None)]
    return [_row("pid", quantity, "PID (BROJA)", "0 bits planted: at or below the permutation floor's 95th percentile",
                 found, "estimate", None, float(row.floor95) + 1e-12)]


def _null_rows(ablation: pd.DataFrame) -> list[dict]:
    cross = ablation[ablation.pathway == "cross"]
    if cross.empty:
        return []
    null = cross.null_by_construction.astype(str).str.lower().isin(["true", "1"])
    changes = [cross[c].abs().to_numpy(float) for c in ("drop", "logit_margin_change") if c in cross]
    largest = float(np.nanmax(np.concatenate(changes))) if changes else float("nan")
    row = _row("structural", "cross-modal rows of the multimodal transformer: largest |drop| or |logit-margin change|",
               "IsoNet mask", f"0 by construction (every row ∅, |Δ| ≤ {STRUCTURAL_TOLERANCE:g})", (largest,) * 3, "ci",
               -STRUCTURAL_TOLERANCE, STRUCTURAL_TOLERANCE)
    row["passed"] = bool(row["passed"] and null.all())
    return [row]


def _row(check: str, quantity: str, method: str, planted: str, found: tuple[float, float, float], tested: str,
         low: float | None, high: float | None) -> dict:
    """A check's row; passed when the tested number lies inside (low, high) (for "ci" both bounds, in [low, high])."""
    values = {"estimate": [found[0]], "ci_low": [found[1]], "ci_high": [found[2]], "ci": [found[1], found[2]]}[tested]
    closed = tested == "ci"  # an equivalence region includes its bounds: |Δ| ≤ tolerance

    def within(value: float) -> bool:
        above = low is None or (value >= low if closed else value > low)
        below = high is None or (value <= high if closed else value < high)
        return bool(np.isfinite(value) and above and below)

    inside = all(within(v) for v in values)
    return {"check": check, "quantity": quantity, "method": method, "planted": planted, "found": found[0],
            "ci_low": found[1], "ci_high": found[2], "tested": tested, "low": np.nan if low is None else float(low),
            "high": np.nan if high is None else float(high), "passed": bool(inside)}
