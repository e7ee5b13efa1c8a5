"""Pair-level reading of the positive control (analyses/positive-control.md).

On synthetic `synergy` data every class has a partner that only the combination of sEMG and
accelerometer tells apart. Accuracy mixes two things an intervention can break: finding the pair
(either modality alone does that) and choosing within the pair (only the combination does). This
prints, for each checkpoint, clean and with `cross` in every shared layer masked, mean-ablated and
resampled: exact accuracy and pair accuracy (95% cluster-bootstrap CIs over segments) and the
within-pair accuracy of the windows whose pair is right — the synergy. The single-modality level is
the emg-alone model's within-pair accuracy (0.5 is chance).

    python analyses/positive_control_pairs.py CONTROL/data CONTROL/emg-alone/checkpoint.pt \
        CONTROL/ordinary/checkpoint.pt CONTROL/readout-from-emg-only/checkpoint.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from isoprobe.analysis import load_analysis
from isoprobe.data.synth.generate import read_ground_truth
from isoprobe.engine.ablate import AblationConfig, ablation_logits
from isoprobe.engine.stats import Segments, cluster_means
from isoprobe.training.metrics import predict_logits


def pair_rows(name: str, analysis, predicted: np.ndarray, partner: dict[int, int]) -> dict:
    labels = np.asarray(analysis.checkpoint.class_labels)
    true, guess = labels[analysis.windows.y], labels[predicted]
    exact = guess == true
    pair = exact | (guess == np.array([partner.get(int(t), -1) for t in true]))
    row = {"condition": name}
    for what, values in (("exact", exact), ("pair", pair)):
        mean, low, high = cluster_means(values.astype(float), Segments.of_windows(analysis.windows), 1000, seed=0,
                                        bounds=(0.0, 1.0))
        row[what] = f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    row["within pair"] = f"{exact[pair].mean():.3f}" if pair.any() else "—"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the synergy data folder (with isoprobe-synth.json)")
    parser.add_argument("single", type=Path, help="checkpoint of the single-modality (emg-alone) model")
    parser.add_argument("checkpoints", type=Path, nargs="+", help="two-modality checkpoints to intervene on")
    args = parser.parse_args()
    truth = read_ground_truth(args.data)
    if truth is None:
        parser.error(f"{args.data}: no isoprobe-synth.json; this needs synthetic synergy data")
    partner = {c["label"]: c["partner"] for c in truth["classes"] if c["partner"] is not None}
    rows = []
    single = load_analysis(args.single, args.data)
    rows.append(pair_rows(f"{args.single.parent.name} (single modality)", single,
                          predict_logits(single.model, single.windows, single.model.modality_names).argmax(-1).numpy(), partner))
    for path in args.checkpoints:
        analysis = load_analysis(path, args.data)
        clean = predict_logits(analysis.model, analysis.windows, analysis.model.modality_names).argmax(-1).numpy()
        rows.append(pair_rows(f"{path.parent.name} clean", analysis, clean, partner))
        for intervention in ("mask", "mean", "resample"):
            config = AblationConfig(layers="all", pathway="cross", mode="joint", intervention=intervention)
            (logits,) = ablation_logits(analysis.model, analysis.windows, config, reference=analysis.reference).logits.values()
            rows.append(pair_rows(f"{path.parent.name} cross {intervention}", analysis, logits.argmax(-1).numpy(), partner))
    width = max(len(r["condition"]) for r in rows)
    print(f"{'condition':{width}}  {'exact (95% CI)':22}  {'pair (95% CI)':22}  within pair")
    for r in rows:
        print(f"{r['condition']:{width}}  {r['exact']:22}  {r['pair']:22}  {r['within pair']}")


if __name__ == "__main__":
    main()
