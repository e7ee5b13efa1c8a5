"""On synthetic data the answer is planted (isoprobe-synth.json: which modality each class needs);
these checks set what each run found next to it, one row per (run, check), with the pass rule
stated in the `planted` column. A method is trusted on real data only after it passes here.

- `alone`: a unimodal model recognises the classes its modality identifies alone: accuracy on
  them (95% cluster-bootstrap CI over segments) above chance 1/K (CI low > 1/K);
- `blind`: a unimodal model does not recognise the classes its modality carries nothing about (not
  synergy classes): accuracy on them near chance (passes when CI low < 2/K);
- `pair`: a unimodal model cannot split a synergy pair: of the windows it puts in the right pair,
  the share in the right class stays near 0.5 (passes below PAIR_SPLIT);
- `synergy`: a model with both modalities splits the pairs (CI low above PAIR_SPLIT);
- `interaction`: the modality interaction index (compare), v(both) − v(emg) − v(acc) + v(none) as a
  share, is positive where classes need both modalities (synergy: CI low > 0), negative where either
  modality alone suffices (redundancy, substitutes: v(both) = v(emg) = v(acc) gives v(none) − v(both);
  estimate < 0), and its CI covers 0 where one modality carries everything. Where synergy and
  redundant classes are mixed, the two offset in one index and no sign is planted: no row;
- `structural`: on the multimodal transformer, cross-modal rows are null by construction (no
  cross-modal attention exists), whatever the layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from isoprobe.data.modalities import split_groups
from isoprobe.engine.stats import Segments, cluster_means

PAIR_SPLIT = 0.65  # within-pair accuracy between chance (0.5) and a split pair (≈ 1)
BOOTSTRAP_SEED = 0

COLUMNS = ("check", "quantity", "method", "planted", "found", "ci_low", "ci_high", "passed")


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
    ablation = run / "ablate" / "ablation.csv"
    if ablation.is_file() and identity["arch"] == "mmt":
        rows += _null_rows(pd.read_csv(ablation))
    return rows


def _segment_mean(values: np.ndarray, frame: pd.DataFrame, bootstrap: int) -> tuple[float, float, float]:
    segments = Segments.of(frame.label.to_numpy() * 1000 + frame.repetition.to_numpy(), frame.label.to_numpy())
    mean, low, high = cluster_means(values.astype(np.float64), segments, bootstrap, BOOTSTRAP_SEED)
    return float(mean), float(low), float(high)


def _accuracy_rows(predictions: pd.DataFrame, classes: dict, sources: set[str], bootstrap: int) -> list[dict]:
    rows = []
    chance = 1 / len(classes)
    correct = (predictions.label == predictions.predicted).to_numpy()
    if len(sources) == 1:
        (source,) = sources
        alone = predictions.label.map(lambda label: source in classes[label]["informative_alone"]).to_numpy(bool)
        if alone.any():
            found = _segment_mean(correct[alone], predictions[alone], bootstrap)
            rows.append(_row("alone", f"accuracy on the classes {source} identifies alone", "accuracy",
                             f"above chance {chance:.3f} (CI low > chance)", found, found[1] > chance))
        blind = predictions.label.map(lambda label: classes[label].get("partner") is None
                                      and source not in classes[label]["informative_alone"]).to_numpy(bool)
        if blind.any():
            found = _segment_mean(correct[blind], predictions[blind], bootstrap)
            rows.append(_row("blind", f"accuracy on the classes {source} carries nothing about", "accuracy",
                             f"near chance {chance:.3f} (CI low < {2 * chance:.3f})", found, found[1] < 2 * chance))
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
                                 f"≈ 0.5, chance within the pair (passes below {PAIR_SPLIT})", found, found[0] < PAIR_SPLIT))
            else:
                rows.append(_row("synergy", "within-pair accuracy of the synergy classes", "accuracy",
                                 f"≈ 1, the pair split by the combination (CI low > {PAIR_SPLIT})", found, found[1] > PAIR_SPLIT))
    return rows


def _interaction_rows(compare: pd.DataFrame, classes: dict) -> list[dict]:
    synergy = any(c.get("partner") is not None for c in classes.values())
    redundant = any(len(c.get("informative_alone", [])) >= 2 for c in classes.values())
    if synergy and redundant:  # mixed: synergy (> 0) and redundancy (< 0) offset, no sign is planted
        return []
    quantity = "share of v(all) − v(none) needing both modalities"
    out = []
    for row in compare[compare.method == "interaction index"].itertuples():
        found = (float(row.estimate), float(row.ci_low), float(row.ci_high))
        if synergy:
            out.append(_row("interaction", quantity, "interaction index",
                            "> 0: synergy classes exist (CI low > 0)", found, found[1] > 0))
        elif redundant:
            out.append(_row("interaction", quantity, "interaction index",
                            "< 0: either modality alone suffices (redundancy; estimate < 0)", found, found[0] < 0))
        else:
            out.append(_row("interaction", quantity, "interaction index",
                            "0: one modality carries every class (CI covers 0)", found, found[1] <= 0 <= found[2]))
    return out


def _null_rows(ablation: pd.DataFrame) -> list[dict]:
    cross = ablation[ablation.pathway == "cross"]
    if cross.empty:
        return []
    null = cross.null_by_construction.astype(str).str.lower().isin(["true", "1"])
    drop = float(cross["drop"].abs().max())
    return [_row("structural", "cross-modal rows of the multimodal transformer", "IsoNet mask",
                 "0 by construction (no cross-modal attention; every row ∅)", (drop, drop, drop), bool(null.all()))]


def _row(check: str, quantity: str, method: str, planted: str, found: tuple[float, float, float], passed: bool) -> dict:
    return {"check": check, "quantity": quantity, "method": method, "planted": planted, "found": found[0],
            "ci_low": found[1], "ci_high": found[2], "passed": bool(passed)}
