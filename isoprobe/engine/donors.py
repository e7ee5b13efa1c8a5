"""Donor windows for the `resample` intervention (DESIGN §4).

Each evaluated window takes a pathway's contribution from one donor window. The donors are a random
derangement of the whole evaluated set (no window is its own donor and every window donates once),
fixed by the seed and the draw alone: they are drawn over the windows in the order of their keys (a
window's first sample, which names it), so neither the batch size, the device nor the order in which
the windows arrive changes who donates to whom. `other-class` repairs the derangement until no
window's donor shares its label.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from isoprobe.errors import ConfigError

DonorRule = Literal["any", "other-class"]
DONOR_RULES: tuple[str, ...] = get_args(DonorRule)
_STREAM = 0x0D0  # keeps donor draws apart from the bootstrap's and the permutation test's streams


def donor_indices(n: int, seed: int, draw: int = 0, labels: np.ndarray | None = None, keys: np.ndarray | None = None,
                  rule: DonorRule = "any") -> np.ndarray:
    """The donor of each window: [window] int, positions into the same set.

    labels: [window], needed for `other-class`; keys: [window] distinct values naming the windows
    (default: their positions, so then the order of the set matters)."""
    if rule not in DONOR_RULES:
        raise ConfigError("donor", rule, f"choose one of {', '.join(DONOR_RULES)}")
    if n < 2:
        raise ConfigError("resample", n, "needs at least two windows: a window cannot be its own donor")
    if keys is not None and (len(keys) != n or len(np.unique(np.asarray(keys))) != n):
        raise ConfigError("keys", f"{len(keys)} keys, {len(np.unique(np.asarray(keys)))} distinct",
                          f"need {n} distinct keys, one per window")
    if labels is not None and len(labels) != n:
        raise ConfigError("labels", f"{len(labels)} labels", f"need one label per window ({n})")
    order = np.arange(n) if keys is None else np.argsort(np.asarray(keys), kind="stable")
    rng = np.random.default_rng([_STREAM, seed, draw])
    donors = _derangement(n, rng)
    if rule == "other-class":
        if labels is None:
            raise ConfigError("donor", rule, "needs the windows' labels")
        donors = _other_class(donors, np.asarray(labels)[order], rng)
    # donors holds canonical positions: window order[i] takes from window order[donors[i]]
    out = np.empty(n, dtype=np.int64)
    out[order] = order[donors]
    return out


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation without fixed points (rejection: about e tries on average)."""
    while True:
        permutation = rng.permutation(n)
        if not np.any(permutation == np.arange(n)):
            return permutation


def _other_class(donors: np.ndarray, labels: np.ndarray, rng: np.random.Generator, rounds: int = 1000) -> np.ndarray:
    """Swap donors between windows until no window's donor has its label (it stays a derangement)."""
    n = len(donors)
    largest = np.bincount(np.unique(labels, return_inverse=True)[1].reshape(-1)).max()
    if 2 * largest > n:
        raise ConfigError("donor", "other-class", f"one class holds {largest} of the {n} windows, more than half: "
                          "not every window can take a donor of another class; use the donor rule any")
    donors = donors.copy()
    for _ in range(rounds):
        bad = np.flatnonzero(labels[donors] == labels)
        if not len(bad):
            return donors
        for i, j in zip(bad, rng.integers(0, n, size=len(bad))):
            a, b = donors[i], donors[j]  # after the swap i takes b and j takes a
            if labels[b] != labels[i] and labels[a] != labels[j] and b != i and a != j:
                donors[i], donors[j] = b, a
    raise ConfigError("donor", "other-class", f"no assignment found in {rounds} rounds")  # pragma: no cover
