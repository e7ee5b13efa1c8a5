"""Exact Shapley values and pairwise Shapley interaction indices (isoprobe.attribution.shapley) against
two independent computations: brute force written here (Shapley values as marginal contributions
averaged over every ordering of the players; Grabisch's sum over subsets term by term) and shapiq's
ExactComputer, the maintained library for these indices. A Banzhaf value computed by shapiq serves as
the negative control: it differs from the Shapley value on the same game, so the comparison can fail."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest
from shapiq import ExactComputer

from isoprobe.attribution.shapley import coalition_index, coalition_members, interaction_indices, player_pairs, shapley_values
from tests.tolerance import FLOAT64, assert_close

WINDOWS = 3


def random_game(n_players: int, seed: int) -> np.ndarray:
    """Values [coalition, window] of a game with no structure at all."""
    return np.random.default_rng(seed).normal(size=(2**n_players, WINDOWS))


def bits(players) -> int:
    return sum(1 << i for i in players)


def brute_shapley(values: np.ndarray, n: int) -> np.ndarray:
    """φ_i as the mean over all n! orderings of i's marginal contribution when it joins the players before it."""
    out = np.zeros((n, *values.shape[1:]))
    orderings = list(itertools.permutations(range(n)))
    for order in orderings:
        before = 0
        for player in order:
            out[player] += values[before | 1 << player] - values[before]
            before |= 1 << player
    return out / len(orderings)


def brute_interactions(values: np.ndarray, n: int) -> np.ndarray:
    """Grabisch (1999): I_ij = Σ_{S ⊆ N∖{i,j}} |S|!(n−|S|−2)!/(n−1)! Δ_ij v(S), term by term."""
    out = []
    for i, j in itertools.combinations(range(n), 2):
        rest = [p for p in range(n) if p not in (i, j)]
        total = np.zeros(values.shape[1:])
        for size in range(len(rest) + 1):
            weight = factorial(size) * factorial(n - size - 2) / factorial(n - 1)
            for subset in itertools.combinations(rest, size):
                s = bits(subset)
                total += weight * (values[s | 1 << i | 1 << j] - values[s | 1 << i] - values[s | 1 << j] + values[s])
        out.append(total)
    return np.array(out)


def test_coalitions_are_bitmasks():
    members = coalition_members(3)
    assert members.shape == (8, 3) and members.dtype == bool
    assert not members[0].any() and members[-1].all()
    assert members[0b101].tolist() == [True, False, True]  # bit i set: player i inside
    np.testing.assert_array_equal(coalition_index(members), np.arange(8))
    assert player_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("n", [3, 4, 5])
def test_shapley_values_match_all_orderings_and_are_efficient(n):
    values = random_game(n, seed=n)
    phi = shapley_values(values, n)
    assert phi.shape == (n, WINDOWS)
    np.testing.assert_allclose(phi, brute_shapley(values, n), rtol=0, atol=1e-12)
    np.testing.assert_allclose(phi.sum(axis=0), values[-1] - values[0], rtol=0, atol=1e-12)  # efficiency


@pytest.mark.parametrize("n", [3, 4, 5])
def test_interaction_indices_match_grabisch_term_by_term(n):
    values = random_game(n, seed=10 + n)
    pairs = interaction_indices(values, n)
    assert pairs.shape == (n * (n - 1) // 2, WINDOWS)
    np.testing.assert_allclose(pairs, brute_interactions(values, n), rtol=0, atol=1e-12)


def test_two_players_in_closed_form():
    v = random_game(2, seed=0)  # v(∅), v(1), v(2), v(12)
    (interaction,) = interaction_indices(v, 2)
    # float64 sums in another order: 1e-15 was ~2 ulps of values of size 2.5
    assert_close(interaction, v[3] - v[1] - v[2] + v[0], FLOAT64)
    phi = shapley_values(v, 2)
    assert_close(phi[0], ((v[1] - v[0]) + (v[3] - v[2])) / 2, FLOAT64)
    assert interaction_indices(v[:2], 1).shape == (0, WINDOWS)  # one player: no pair


@pytest.mark.parametrize("n", [3, 5])
def test_against_shapiq_exact_computer(n):
    values = random_game(n, seed=20 + n)
    phi, pairs = shapley_values(values, n), interaction_indices(values, n)
    for window in range(WINDOWS):
        # shapiq's game: a [coalition, player] boolean matrix -> one value per coalition
        computer = ExactComputer(lambda coalitions: values[coalition_index(coalitions), window], n_players=n)
        sv, sii, bv = computer("SV"), computer("SII", order=2), computer("BV")
        expected_phi = [sv.values[sv.interaction_lookup[(i,)]] for i in range(n)]
        expected_pairs = [sii.values[sii.interaction_lookup[pair]] for pair in player_pairs(n)]
        np.testing.assert_allclose(phi[:, window], expected_phi, rtol=0, atol=1e-10)
        np.testing.assert_allclose(pairs[:, window], expected_pairs, rtol=0, atol=1e-10)
        # negative control: the Banzhaf value weighs coalitions uniformly and differs
        banzhaf = [bv.values[bv.interaction_lookup[(i,)]] for i in range(n)]
        assert np.abs(phi[:, window] - banzhaf).max() > 1e-3


def test_a_null_player_gets_exactly_zero():
    """Player 1 never changes the value: its Shapley value and its interactions are exactly 0."""
    n = 4
    members = coalition_members(n)
    rng = np.random.default_rng(3)
    table = rng.normal(size=(2 ** (n - 1), WINDOWS)) * 1e3
    without_1 = coalition_index(np.delete(members, 1, axis=1))  # the coalition as seen by players 0, 2, 3
    values = table[without_1]
    phi, pairs = shapley_values(values, n), interaction_indices(values, n)
    assert (phi[1] == 0).all()
    for row, (i, j) in enumerate(player_pairs(n)):
        assert (pairs[row] == 0).all() == (1 in (i, j))


def test_symmetric_players_share_equally_and_values_must_cover_every_coalition():
    v = np.array([0.0, 1.0, 1.0, 5.0])  # a pure synergy: only together do the two players pay
    np.testing.assert_allclose(shapley_values(v, 2), [2.5, 2.5])
    np.testing.assert_allclose(interaction_indices(v, 2), [3.0])
    with pytest.raises(ValueError, match="coalition"):
        shapley_values(np.zeros((7, 2)), 3)
    with pytest.raises(ValueError, match="n_players"):
        shapley_values(np.zeros(1), 0)
