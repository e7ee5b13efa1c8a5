"""Planted class structure: which modality carries which class (DESIGN §2.3 presets).

Every class shows, in each repetition, one pattern per modality. A pattern id of 0 is shared by
all classes (it carries no class information). Synergy classes come in pairs (c0, c1) built as an
XOR: with sEMG patterns A, B and second-modality patterns P, Q,

    c0 = (A, P) or (B, Q),   c1 = (A, Q) or (B, P),

alternating between repetitions, so either modality alone sees the same mixture for c0 and c1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from isoprobe.errors import ConfigError

Preset = Literal["redundant", "emg-only", "acc-only", "synergy", "mixed"]
PRESETS: tuple[str, ...] = ("redundant", "emg-only", "acc-only", "synergy", "mixed")
# What a class needs to be recognised: either modality, only the first, only the second, or both together.
Needs = Literal["either", "first", "second", "both"]


@dataclass(frozen=True)
class ClassPlan:
    label: int
    needs: Needs
    first: tuple[int, int]  # pattern id of the first modality (sEMG) in variant 0 and variant 1
    second: tuple[int, int]  # pattern id of the second modality (ACC or force)
    partner: int | None = None  # the other class of a synergy pair

    def to_dict(self, first_name: str, second_name: str) -> dict:
        names = {"either": f"{first_name} or {second_name}", "first": first_name, "second": second_name,
                 "both": f"{first_name} and {second_name}"}
        informative = {"either": [first_name, second_name], "first": [first_name], "second": [second_name],
                       "both": []}
        return {**asdict(self), "needs": self.needs, "needs_modalities": names[self.needs],
                "informative_alone": informative[self.needs]}


def synergy_count(preset: str, n_classes: int, synergy_fraction: float | None) -> int:
    """How many classes are placed in synergy pairs (always even)."""
    if preset == "synergy":
        return n_classes - n_classes % 2
    if preset == "mixed":
        if synergy_fraction is None or not 0.0 <= synergy_fraction <= 1.0:
            raise ConfigError("synergy_fraction", synergy_fraction, "the mixed preset needs a fraction in [0, 1]")
        # The even count nearest to f × n (ties upward), at least one pair when f > 0.
        count = 2 * math.floor(synergy_fraction * n_classes / 2 + 0.5)
        count = min(count, n_classes - n_classes % 2)
        return max(count, 2 if synergy_fraction > 0 and n_classes >= 2 else 0)
    return 0


def plan_classes(preset: str, labels: list[int], synergy_fraction: float | None, rng: np.random.Generator) -> list[ClassPlan]:
    """One plan per gesture label. Pattern ids are 1 + the class's index (0 = shared pattern)."""
    if preset not in PRESETS:
        raise ConfigError("preset", preset, f"choose one of {', '.join(PRESETS)}")
    if preset != "mixed" and synergy_fraction is not None:
        raise ConfigError("synergy_fraction", synergy_fraction, "only the mixed preset takes a synergy fraction")
    ids = {label: index + 1 for index, label in enumerate(labels)}
    plans: dict[int, ClassPlan] = {}
    for label in labels:
        own = (ids[label], ids[label])
        if preset == "emg-only":
            plans[label] = ClassPlan(label, "first", own, (0, 0))
        elif preset == "acc-only":
            plans[label] = ClassPlan(label, "second", (0, 0), own)
        else:
            plans[label] = ClassPlan(label, "either", own, own)
    n_synergy = synergy_count(preset, len(labels), synergy_fraction)
    chosen = sorted(rng.choice(labels, size=n_synergy, replace=False).tolist()) if preset == "mixed" else labels[:n_synergy]
    for c0, c1 in zip(chosen[0::2], chosen[1::2]):
        a, b = ids[c0], ids[c1]  # sEMG patterns A, B; second-modality patterns P=a, Q=b
        plans[c0] = ClassPlan(c0, "both", first=(a, b), second=(a, b), partner=c1)
        plans[c1] = ClassPlan(c1, "both", first=(a, b), second=(b, a), partner=c0)
    return [plans[label] for label in labels]


def repetition_variants(train: tuple[int, ...], test: tuple[int, ...]) -> dict[int, int]:
    """Variant 0/1 per repetition, alternating within the train and within the test repetitions,
    so that both variants of every synergy class appear on both sides of the standard split."""
    variants = {}
    for part in (train, test):
        for position, rep in enumerate(sorted(part)):
            variants[rep] = position % 2
    return variants
