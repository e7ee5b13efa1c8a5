"""Exact cooperative-game quantities for a handful of players, vectorised over windows (DESIGN §5).

A game on n players is given by its value on every coalition, `values` [coalition, ...] (the trailing
axes are usually [window]). Coalitions are bitmasks 0 … 2^n − 1: player i is in coalition c iff bit i
of c is set, so coalition 0 is the empty one and 2^n − 1 the grand coalition N.

Both quantities are linear in the values: weights times marginal contributions, vectorised over the
trailing axes.

  Shapley value (Shapley 1953)
      φ_i = Σ_{S ⊆ N∖i} |S|!(n−|S|−1)!/n! · (v(S ∪ i) − v(S))
  pairwise Shapley interaction index (Grabisch 1999; shapiq's "SII" at order 2)
      I_ij = Σ_{S ⊆ N∖{i,j}} |S|!(n−|S|−2)!/(n−1)! · (v(S ∪ {i,j}) − v(S ∪ i) − v(S ∪ j) + v(S))

Efficiency: Σ_i φ_i = v(N) − v(∅). For two players I_12 = v(12) − v(1) − v(2) + v(∅), the modality
interaction index of DESIGN §5. Pairs are ordered as `itertools.combinations(range(n), 2)`:
(0,1), (0,2), …, (0,n−1), (1,2), …
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from math import factorial

import numpy as np

MAX_PLAYERS = 16  # 2^16 coalitions per window: beyond that no game here is "a handful of players"


def _check_players(n_players: int) -> None:
    if not isinstance(n_players, (int, np.integer)) or not 1 <= n_players <= MAX_PLAYERS:
        raise ValueError(f"n_players: got {n_players!r}; an exact game needs 1–{MAX_PLAYERS} players")


def coalition_members(n_players: int) -> np.ndarray:
    """Boolean [coalition, player]: True where player i belongs to coalition c (bit i of c set)."""
    _check_players(n_players)
    return (np.arange(2**n_players)[:, None] >> np.arange(n_players)[None, :]) & 1 == 1


def coalition_index(members: np.ndarray) -> np.ndarray:
    """The inverse of `coalition_members`: boolean [..., player] -> bitmask [...] (int64)."""
    members = np.asarray(members, dtype=bool)
    return (members.astype(np.int64) << np.arange(members.shape[-1])).sum(axis=-1)


def player_pairs(n_players: int) -> list[tuple[int, int]]:
    """The pairs (i, j), i < j, in the order `interaction_indices` returns them."""
    return list(itertools.combinations(range(n_players), 2))


@lru_cache(maxsize=64)
def _plan(n_players: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """For each player (group 1) or pair (group 2), in `player_pairs` order: the coalitions S that
    hold none of its players, as bitmasks [row, S], and their weights [row, S]:
    |S|!(n−|S|−1)!/n! (Shapley) or |S|!(n−|S|−2)!/(n−1)! (Grabisch's pair weight)."""
    n = n_players
    members = coalition_members(n)
    rows = [(i,) for i in range(n)] if group == 1 else player_pairs(n)
    table = np.array([factorial(s) * factorial(n - s - group) / factorial(n - group + 1) for s in range(n - group + 1)])
    base = np.array([np.flatnonzero(~members[:, list(row)].any(axis=1)) for row in rows], dtype=np.int64)
    base = base.reshape(len(rows), 2 ** max(n - group, 0))  # [0, …] when there is no pair
    weights = table[members.sum(axis=1)[base]]
    for array in (base, weights):
        array.setflags(write=False)
    return base, weights


def _check_values(values: np.ndarray, n_players: int) -> np.ndarray:
    _check_players(n_players)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] != 2**n_players:
        raise ValueError(f"values: got shape {values.shape}; need [coalition = 2^{n_players} = {2**n_players}, ...]")
    return values


def shapley_values(values: np.ndarray, n_players: int) -> np.ndarray:
    """Exact Shapley values: values [coalition, ...] -> [player, ...] (float64).

    Per player, a [coalition without i] weight vector times the marginal contributions
    v(S ∪ i) − v(S): taking the differences first makes a null player's value exactly 0 (identical
    coalition values cancel before any weighting) and keeps memory at [2^(n−1), ...] per player."""
    values = _check_values(values, n_players)
    base, weights = _plan(int(n_players), 1)
    out = np.empty((n_players, *values.shape[1:]))
    for i in range(n_players):
        out[i] = np.tensordot(weights[i], values[base[i] | 1 << i] - values[base[i]], axes=1)
    return out


def interaction_indices(values: np.ndarray, n_players: int) -> np.ndarray:
    """Exact pairwise Shapley interaction indices: values [coalition, ...] -> [pair, ...] (float64),
    pairs in `player_pairs` (itertools.combinations) order; [0, ...] for one player.

    Per pair, weights times the discrete second differences (v(S∪ij) − v(S∪i)) − (v(S∪j) − v(S)),
    exactly 0 when either player is null."""
    values = _check_values(values, n_players)
    base, weights = _plan(int(n_players), 2)
    out = np.empty((len(base), *values.shape[1:]))
    for row, (i, j) in enumerate(player_pairs(n_players)):
        s, with_i, with_j = base[row], base[row] | 1 << i, base[row] | 1 << j
        second = (values[with_i | 1 << j] - values[with_i]) - (values[with_j] - values[s])
        out[row] = np.tensordot(weights[row], second, axes=1)
    return out
