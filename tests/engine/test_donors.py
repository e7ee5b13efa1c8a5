"""Donor windows for the `resample` intervention (`isoprobe.engine.donors.donor_indices`) against
independent references written here: the same-class donor rate on class-sorted windows against the
chance rate Σ p_c² of a uniform draw, the result against the definition of a derangement (and, for
four windows, against all nine derangements enumerated with itertools), the dependence on seed and
draw alone against shifted and rotated copies of another seed's donors, the invariance to window
order against pairs matched by key, and the error messages of invalid requests."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from isoprobe.engine.donors import donor_indices
from isoprobe.errors import ConfigError


def assert_derangement(donors: np.ndarray, n: int) -> None:
    assert donors.shape == (n,) and donors.dtype.kind == "i"
    np.testing.assert_array_equal(np.sort(donors), np.arange(n))  # every window donates exactly once
    assert not np.any(donors == np.arange(n))  # no window is its own donor


SORTED_EQUAL = np.repeat(np.arange(17), 40)  # a test split sorted by class, 17 classes of 40
SORTED_UNEQUAL = np.repeat(np.arange(17), np.random.default_rng(0).integers(10, 70, size=17))


@pytest.mark.parametrize("labels", [SORTED_EQUAL, SORTED_UNEQUAL], ids=["equal", "unequal"])
def test_same_class_donors_at_chance_on_class_sorted_windows(labels):
    """DESIGN §4 acceptance point. Donors drawn within batches of class-sorted windows come mostly from
    the same class; drawn over the whole set they share the window's class at the chance rate Σ p_c²."""
    n, draws = len(labels), 20
    p = np.bincount(labels) / n
    chance = float((p**2).sum())
    same = 0
    for draw in range(draws):
        donors = donor_indices(n, seed=7, draw=draw, labels=labels, rule="any")
        assert_derangement(donors, n)
        same += int((labels[donors] == labels).sum())
        other = donor_indices(n, seed=7, draw=draw, labels=labels, rule="other-class")
        assert_derangement(other, n)
        assert not np.any(labels[other] == labels)  # exactly zero same-class donors
    rate = same / (n * draws)
    # Over 20 draws of n windows the count is close to binomial: standard error √(c(1−c)/(n·draws)),
    # about 0.002 here. A derangement gives each window n−1 candidates, not n, which moves the
    # expectation by under 0.002 for these sizes; 5 standard errors cover both, while batch-local
    # donors (the fault this guards against) give rates near 0.5.
    tolerance = 5 * math.sqrt(chance * (1 - chance) / (n * draws))
    assert abs(rate - chance) < tolerance, (rate, chance, tolerance)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 17, 100])
def test_donors_form_a_derangement(n):
    rng = np.random.default_rng(n)
    # two classes of exactly half for even n, three for odd n: the tightest labellings other-class accepts
    labels = rng.permutation(np.arange(n) % (2 if n % 2 == 0 else 3))
    for seed in range(5):
        assert_derangement(donor_indices(n, seed), n)
        other = donor_indices(n, seed, labels=labels, rule="other-class")
        assert_derangement(other, n)
        assert not np.any(labels[other] == labels)
    if n == 2:
        np.testing.assert_array_equal(donor_indices(2, 0), [1, 0])  # the only derangement of two


def test_derangements_of_four_are_uniform():
    """All 9 derangements of four windows (enumerated by itertools) appear, each about equally often
    over seeds: 900 seeds give 100 ± 5·√(100·8/9) ≈ ±47 per derangement."""
    derangements = [p for p in itertools.permutations(range(4)) if all(p[i] != i for i in range(4))]
    assert len(derangements) == 9
    counts = dict.fromkeys(derangements, 0)
    for seed in range(900):
        counts[tuple(donor_indices(4, seed).tolist())] += 1  # a KeyError would mean a non-derangement
    assert all(abs(c - 100) < 47 for c in counts.values()), counts


def test_donors_depend_on_seed_and_draw_alone():
    n = 50
    labels = np.arange(n) % 5
    base = donor_indices(n, seed=0)
    np.testing.assert_array_equal(base, donor_indices(n, seed=0))
    np.testing.assert_array_equal(base, donor_indices(n, seed=0, draw=0, labels=labels))  # labels unused by `any`
    np.testing.assert_array_equal(donor_indices(n, 3, draw=2, labels=labels, rule="other-class"),
                                  donor_indices(n, 3, draw=2, labels=labels, rule="other-class"))
    others = {"seed 1": donor_indices(n, seed=1), "draw 1": donor_indices(n, seed=0, draw=1)}
    for name, other in others.items():
        assert not np.array_equal(other, base), name
        # the old code reused one draw shifted by a batch: no rotation of the windows, nor of the donor
        # positions, of seed 0's donors gives these
        for shift in range(n):
            assert not np.array_equal(other, np.roll(base, shift)), (name, shift)
            assert not np.array_equal(other, (base + shift) % n), (name, shift)
    assert not np.array_equal(donor_indices(n, seed=1, draw=0), donor_indices(n, seed=0, draw=1))


@pytest.mark.parametrize("rule", ["any", "other-class"])
def test_window_order_does_not_matter_with_keys(rule):
    rng = np.random.default_rng(3)
    n = 60
    keys = rng.choice(10_000, size=n, replace=False)  # e.g. each window's first sample
    labels = rng.integers(0, 6, size=n)

    def pairs(keys, labels):
        donors = donor_indices(n, seed=5, draw=1, labels=labels, keys=keys, rule=rule)
        assert_derangement(donors, n)
        return {int(keys[i]): int(keys[donors[i]]) for i in range(n)}

    expected = pairs(keys, labels)
    for _ in range(3):
        perm = rng.permutation(n)
        assert pairs(keys[perm], labels[perm]) == expected
    # negative control: without keys the positions name the windows, so a permutation changes the pairs
    perm = rng.permutation(n)
    by_position = donor_indices(n, seed=5, draw=1, labels=labels[perm], rule=rule)
    assert {int(keys[perm][i]): int(keys[perm][by_position[i]]) for i in range(n)} != expected


@pytest.mark.parametrize("call, fragments", [
    (dict(n=1, seed=0), ["resample", "at least two windows"]),
    (dict(n=0, seed=0), ["at least two windows"]),
    (dict(n=4, seed=0, keys=np.array([3, 8, 3, 1])), ["keys", "distinct keys"]),
    (dict(n=5, seed=0, keys=np.array([3, 8, 2, 1])), ["4 keys", "need 5 distinct keys"]),
    (dict(n=4, seed=0, rule="same-class"), ["donor", "'same-class'", "any, other-class"]),
    (dict(n=4, seed=0, rule="other-class"), ["other-class", "labels"]),
    (dict(n=5, seed=0, labels=np.array([1, 1, 1, 0, 2]), rule="other-class"),
     ["3 of the 5 windows", "more than half", "donor rule any"]),
])
def test_errors_name_the_problem(call, fragments):
    with pytest.raises(ConfigError) as caught:
        donor_indices(**call)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_keys_of_any_kind_and_the_label_count_are_checked():
    names = np.array([f"w{i:02d}" for i in range(8)])  # string keys (say file:sample) work like numbers
    donors = donor_indices(8, 3, keys=names)
    assert_derangement(donors, 8)
    assert np.array_equal(donor_indices(8, 3, keys=np.arange(8)), donors)  # the same sorted order, the same donors
    with pytest.raises(ConfigError, match="distinct"):
        donor_indices(3, 0, keys=np.array(["a", "b", "a"]))
    for labels in (np.zeros(7), np.zeros(3)):
        with pytest.raises(ConfigError, match="one label per window"):
            donor_indices(4, 0, labels=labels)


def test_other_class_accepts_a_class_of_exactly_half():
    labels = np.array([0, 0, 1, 1, 0, 2])  # class 0 holds 3 of 6: every window can still find a donor
    for seed in range(10):
        donors = donor_indices(6, seed, labels=labels, rule="other-class")
        assert_derangement(donors, 6)
        assert not np.any(labels[donors] == labels)
