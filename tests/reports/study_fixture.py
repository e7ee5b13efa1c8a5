"""A study folder as `isoprobe study` writes it, with made-up numbers: tables/*.csv with the identification
columns and the columns `isoprobe ablate`, `compare` and `shift` write (copied from their CSV headers,
generated on a trained checkpoint), and study.json.

What the report must handle honestly is planted: the multimodal transformer's cross-modal rows are null by
construction (ablation and compare_layers; its logit-margin share is float noise of ±1e-8 that must never
be drawn), none of its shift interventions moves anything (MMD² exactly 0), subject 2's hierarchical
emg,acc run has 4 segments and a few-segment caveat, and the planted rules carry regions, one of them
with a threshold (chance) that differs between runs, failed by subject 2's runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

ABLATION = ("layers,pathway,heads,intervention,draws,windows,segments,base_accuracy,accuracy,accuracy_draw_sd,drop,"
            "drop_ci_low,drop_ci_high,relative_drop,chance,chance_corrected_drop,chance_corrected_ci_low,"
            "chance_corrected_ci_high,p_value,p_holm,logit_margin_base,logit_margin,logit_margin_change,"
            "logit_margin_change_ci_low,logit_margin_change_ci_high,kl,null_by_construction,caveat").split(",")
COMPARE = ("block,method,layers,estimate,ci_low,ci_high,estimand,windows,segments,caveat,shift_cosine,shift_mmd2,shift_p,"
           "shift_null95").split(",")
COMPARE_LAYERS = "layer,block,method,estimate,ci_low,ci_high,null_by_construction".split(",")
SHIFT = ("layers,pathway,heads,intervention,site,windows,segments,base_accuracy,accuracy,cosine,cosine_ci_low,"
         "cosine_ci_high,mmd_windows,mmd2,p_value,mmd2_null95,bandwidth").split(",")
ACCURACY, MARGIN, RELATED = "share of clean accuracy", "share of clean logit margin", "related quantities"
METHODS = {"mask (IsoNet)": (ACCURACY, "Σ(base − intervened correct) / Σ base correct, all windows; cross → −inf"),
           "mean ablation": (ACCURACY, "Σ(base − intervened correct) / Σ base correct, all windows; → training mean"),
           "resample ablation": (ACCURACY, "Σ(base − intervened correct) / Σ base correct, all windows; → a donor's"),
           "mask, logit margin": (MARGIN, "Σ(m_clean − m_masked) / Σ m_clean, windows the clean model gets right"),
           "attention attribution": (RELATED, "Σ cross / Σ non-self edges of the signed attention attribution"),
           "interaction index": (RELATED, "v(both) − v(one) − v(other) + v(none) in accuracy; not a share")}
MODELS = [("hierarchical", "emg,acc", "multimodal"), ("hierarchical", "emg[0:6],emg[6:12]", "equal-channel"),
          ("hierarchical", "emg", "unimodal"), ("mmt", "emg,acc", "multimodal"), ("mlp", "acc", "unimodal"),
          # with MODELS[0] and [2], a channel sweep: 4 and 12 sEMG channels, each with and without acc
          ("hierarchical", "emg[0:4]", "unimodal"), ("hierarchical", "emg[0:4],acc", "multimodal")]
DATA = "synthetic mixed (synergy 0.3)"
CAVEAT = "4 segments: the sign-flip p cannot fall below 0.125; 4 segments (< 20): 95% CIs cover less than 95%"
PAIR_SPLIT = 0.65


def _ci(rng, value, width=0.05):
    return value - rng.uniform(0, width), value + rng.uniform(0, width)


def make_study(root: Path, subjects=(1, 2, 3), seeds=(0, 1), models=MODELS, skip=(), seed=0) -> Path:
    """Write root/tables/*.csv (all but the tables named in `skip`) and root/study.json; return root."""
    rng = np.random.default_rng(seed)
    tables: dict[str, list[dict]] = {name: [] for name in
                                     ("runs", "ablation", "compare", "compare_layers", "shift", "curves", "confusion", "planted",
                                      "knockout", "sanity", "emap", "pid")}
    for subject in subjects:
        for arch, modalities, configuration in models:
            for s in seeds:
                run = f"runs/s{subject}/{arch}-{modalities}/seed{s}"
                ident = dict(dataset="ninapro-db2", data=DATA, subject=subject, arch=arch, model=arch,
                             modalities=modalities, configuration=configuration, seed=s, run=run)
                accuracy = rng.uniform(0.6, 0.95)
                low, high = _ci(rng, accuracy)
                tables["runs"].append(ident | dict(accuracy=accuracy, accuracy_ci_low=low, accuracy_ci_high=high,
                                                   balanced_accuracy=accuracy - 0.01, windows=342, segments=18,
                                                   best_epoch=4, parameters=12345))
                for epoch in range(1, 7):
                    tables["curves"].append(ident | {"epoch": epoch, "lambda": min(1.0, (epoch - 1) / 3),
                                                     "loss": 2 / epoch, "train_accuracy": 1 - 0.5 / epoch,
                                                     "val_accuracy": 1 - 0.6 / epoch, "val_loss": 2.2 / epoch, "lr": 1e-3})
                for true in ("rest", "1", "2", "3"):
                    for predicted in ("rest", "1", "2", "3"):
                        tables["confusion"].append(ident | {"true": true, "predicted": predicted,
                                                            "count": int(rng.integers(20, 40) if true == predicted else rng.integers(0, 5))})
                if arch == "mlp" or configuration == "unimodal":
                    continue  # nothing to intervene on, as `isoprobe study` runs it
                few = subject == 2 and arch == "hierarchical" and modalities == "emg,acc"
                _ablation(tables["ablation"], ident, arch, accuracy, rng, few)
                _compare(tables, ident, arch, rng)
                _shift(tables["shift"], ident, arch, accuracy, rng)
                _knockout(tables["knockout"], ident, arch, rng)
                _sanity(tables["sanity"], ident, arch, rng)
                _emap(tables["emap"], ident, accuracy, rng)
                _pid(tables["pid"], ident, rng)
                _planted(tables["planted"], ident, subject, rng)
    folder = Path(root) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        if name not in skip and rows:
            pd.DataFrame(rows).to_csv(folder / f"{name}.csv", index=False)
    (Path(root) / "study.json").write_text(json.dumps({"title": "Test study", "recipe": {"name": "test", "epochs": 5},
                                                       "provenance": {"isoprobe": "0.1.0", "commit": "abc123"}}))
    return Path(root)


def _ablation(rows: list, ident: dict, arch: str, base: float, rng, few: bool = False) -> None:
    for layers in ("L1", "L2", "L3", "L4", "L5", "L1-L5"):
        for pathway in ("uni", "cross", "relay", "readout"):
            null = (layers == "L5" and pathway != "readout") or (arch == "mmt" and pathway == "cross")
            drop = 0.0 if null else rng.uniform(-0.02, 0.3)
            low, high = (drop, drop) if null else _ci(rng, drop)
            corrected = drop / (base - 0.25)
            row = dict.fromkeys(ABLATION, np.nan) | dict(
                layers=layers, pathway=pathway, heads="all", intervention="mask", draws=1, windows=342,
                segments=4 if few else 18, caveat=CAVEAT if few else "",
                base_accuracy=base, accuracy=base - drop, drop=drop, drop_ci_low=low, drop_ci_high=high,
                relative_drop=drop / base, chance=0.25, chance_corrected_drop=corrected,
                chance_corrected_ci_low=low / (base - 0.25), chance_corrected_ci_high=high / (base - 0.25),
                p_value=1.0 if null else rng.uniform(), kl=rng.uniform(0, 0.1), null_by_construction=null)
            if null:
                row["p_holm"] = np.nan
            else:
                row["p_holm"] = min(1.0, row["p_value"] * 3)
            rows.append(ident | row)


def _compare(tables: dict, ident: dict, arch: str, rng) -> None:
    for method, (block, estimand) in METHODS.items():
        estimate = rng.uniform(-0.05, 0.4)
        low, high = _ci(rng, estimate)
        shift = dict(shift_cosine=0.98, shift_mmd2=rng.uniform(0, 0.05), shift_p=0.01, shift_null95=0.05) \
            if "ablation" in method or method == "mask (IsoNet)" else {}
        if method != "attention attribution":  # per layer only, as compare writes it
            tables["compare"].append(ident | dict.fromkeys(COMPARE, np.nan) | dict(
                method=method, layers="inputs" if method == "interaction index" else "L1-L5", estimate=estimate,
                ci_low=low, ci_high=high, block=block, estimand=estimand) | shift)
        if method != "interaction index":
            for layer in ("L1", "L2", "L3", "L4", "L5"):
                # no cross-modal attention in the mmt; only CLS reaches the head after the last layer
                null = arch == "mmt" or layer == "L5"
                estimate = rng.uniform(-0.05, 0.2)
                low, high = _ci(rng, estimate)
                if null:  # 0, except the float noise an older margin share carried
                    estimate = rng.choice([-1e-8, 1e-8]) if method == "mask, logit margin" else 0.0
                    low, high = estimate, estimate
                tables["compare_layers"].append(ident | dict(layer=layer, block=block, method=method, estimate=estimate,
                                                             ci_low=low, ci_high=high, null_by_construction=null))


def _pid(rows: list, ident: dict, rng) -> None:
    """pid.csv of the labels (the same for every model of a subject, as the study writes it)."""
    for k in (4, 8, 16):
        bits = {"redundancy": 1.0 + 0.1 * k ** 0.5, "unique_emg": 0.4, "unique_acc": 0.3, "synergy": 0.2 + 0.02 * k}
        bits["mutual_information"] = sum(bits.values())
        for part, value in bits.items():
            rows.append(ident | {"target": "labels", "k": k, "part": part, "bits": value,
                                 "fraction": value / bits["mutual_information"], "ci_low": value - 0.1,
                                 "ci_high": value + 0.1, "floor_mean": 0.01 * k, "floor95": 0.02 * k,
                                 "expected_bits": 1.0, "windows": 342, "segments": 18, "caveat": ""})


def _emap(rows: list, ident: dict, accuracy: float, rng) -> None:
    """emap.csv: overall and for two classes."""
    projected = accuracy - rng.uniform(0, 0.2)
    for cls, label in (("all", "all"), ("0", "0"), ("1", "3")):
        for quantity, value in (("model accuracy", accuracy), ("emap accuracy", projected), ("gap", accuracy - projected)):
            low, high = _ci(rng, value)
            rows.append(ident | {"quantity": quantity, "class": cls, "label": label, "estimate": value, "ci_low": low,
                                 "ci_high": high, "windows": 342, "segments": 18, "exact": False, "caveat": ""})


def _sanity(rows: list, ident: dict, arch: str, rng) -> None:
    """The cascade of compare --sanity: the mmt has no encoders; `input` explains the input (flagged)."""
    steps = ["trained", "head", "L5", "L4", "L3", "L2", "L1", *(["encoders"] if arch != "mmt" else []), "embeddings"]
    for method in ("mask", "attention", "input"):
        for index, step in enumerate(steps):
            rho = 1.0 if index == 0 or method == "input" else float(rng.uniform(-0.2, 0.9 - 0.12 * index))
            low, high = (rho, rho) if index == 0 else _ci(rng, rho)
            rows.append(ident | dict(method=method, step=step, step_index=index, spearman=rho, ci_low=low, ci_high=high,
                                     flagged=(rho > 0.5) if index == len(steps) - 1 else None))
        rows.append(ident | dict(method=method, step="random target", step_index=None, spearman=float(rng.uniform(-0.3, 0.3)),
                                 ci_low=-0.5, ci_high=0.5, flagged=None))


def _knockout(rows: list, ident: dict, arch: str, rng) -> None:
    """Windows of 3 of 5 layers centred on each layer, correctly classified windows only."""
    for centre in range(1, 6):
        low_layer, high_layer = max(1, centre - 1), min(5, centre + 1)
        for pathway in ("emg->acc", "acc->emg", "relay", "readout"):
            # no cross-modal attention in the mmt; after the last layer only CLS reaches the head
            null = (arch == "mmt" and "->" in pathway) or (low_layer == 5 and pathway != "readout")
            change = 0.0 if null else rng.uniform(-0.6, 0.05)
            low, high = (change, change) if null else _ci(rng, change)
            rows.append(ident | dict(layers=f"L{low_layer}-L{high_layer}", window_centre=centre, pathway=pathway,
                                     heads="all", intervention="mask", windows=300, segments=18, prob_change=change,
                                     prob_change_ci_low=low, prob_change_ci_high=high, null_by_construction=null))


def _shift(rows: list, ident: dict, arch: str, base: float, rng) -> None:
    for intervention in ("mask", "mean", "resample"):
        still = arch == "mmt"  # no cross-modal pathway: nothing moves, MMD² exactly 0
        accuracy = base if still else base - rng.uniform(0, 0.2)
        for site in ("L2 residual", "L3 residual", "L4 residual", "L5 residual", "final CLS"):
            cosine = rng.uniform(0.9, 1.0)
            rows.append(ident | dict(layers="L2-L4", pathway="cross", heads="all", intervention=intervention, site=site,
                                     windows=342, segments=18, base_accuracy=base, accuracy=accuracy, cosine=cosine,
                                     cosine_ci_low=cosine - 0.01, cosine_ci_high=cosine + 0.005, mmd_windows=200,
                                     mmd2=0.0 if still else rng.uniform(-0.005, 0.03), p_value=1.0 if still else rng.uniform(),
                                     mmd2_null95=0.07, bandwidth=85.0))


def passes(values: tuple, tested: str, low: float, high: float) -> bool:
    """As isoprobe.study.planted: the tested number(s) inside (low, high), both ends closed for the whole CI."""
    estimate, ci_low, ci_high = values
    numbers = {"estimate": [estimate], "ci_low": [ci_low], "ci_high": [ci_high], "ci": [ci_low, ci_high]}[tested]
    closed = tested == "ci"
    return all((np.isnan(low) or (v >= low if closed else v > low)) and (np.isnan(high) or (v <= high if closed else v < high))
               for v in numbers)


def _planted(rows: list, ident: dict, subject, rng) -> None:
    """Three rules: one with a per-run threshold (chance), one failed by subject 2's runs, one whose planted
    value is a number."""
    chance = rng.uniform(0.10, 0.14)
    split = (0.9, 0.85, 0.95) if subject != 2 else (0.72, 0.6, 0.8)  # subject 2: CI low below the threshold
    interaction = rng.uniform(0.22, 0.38)
    for check, quantity, method, planted, found, tested, low, high in (
            ("blind", "accuracy on the classes acc carries nothing about", "accuracy",
             f"chance {chance:.3f}, within 0.05 (CI high < {chance + 0.05:.3f})", (chance + 0.01, chance - 0.01, chance + 0.03),
             "ci_high", np.nan, chance + 0.05),
            ("synergy", "within-pair accuracy of the synergy classes", "accuracy",
             f"≈ 1, the pair split by the combination (CI low > {PAIR_SPLIT})", split, "ci_low", PAIR_SPLIT, np.nan),
            ("synergy needs cross", "interaction share", "interaction index", "0.3",
             (interaction, interaction - 0.03, interaction + 0.03), "estimate", 0.2, 0.4)):
        rows.append(ident | dict(check=check, quantity=quantity, method=method, planted=planted, found=found[0],
                                 ci_low=found[1], ci_high=found[2], tested=tested, low=low, high=high,
                                 passed=passes(found, tested, low, high)))
