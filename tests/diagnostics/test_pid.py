"""Partial information decomposition: the BROJA parts of the textbook gates (Bertschinger et al. 2014;
Griffith & Koch 2014), a brute-force BROJA over binary joints written here independently of cvxpy,
the identities on random joints, the refusals; then the estimate from windows — deterministic given
the seed, blind to the order of the windows — and on the planted presets the ordering the planted
structure demands, each part above its permutation floor, beside the planted values derived by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.data.synth.generate import SynthConfig, db2_labels_per_exercise, ground_truth, read_ground_truth
from isoprobe.data.synth.structure import plan_classes
from isoprobe.diagnostics.pid import (PIDConfig, data_pid, decompose, expected_pid, is_semg, model_pid, window_codes,
                                      window_features)
from isoprobe.errors import ConfigError
from isoprobe.training.metrics import predict_logits
from tests.conftest import make_synth

TOLERANCE = 1e-5  # bits; the solver lands within about 1e-9


# --- independent information measures ------------------------------------------------------------------

def entropy(p) -> float:
    p = np.asarray(p, dtype=np.float64).ravel()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def information(pxy) -> float:
    """I(X;Y) of a 2-d joint, as H(X) + H(Y) − H(X,Y)."""
    return entropy(pxy.sum(axis=1)) + entropy(pxy.sum(axis=0)) - entropy(pxy)


def h(x: float) -> float:  # the binary entropy
    return 0.0 if x in (0.0, 1.0) else -x * math.log2(x) - (1 - x) * math.log2(1 - x)


def gate(rule, outputs: int = 2) -> np.ndarray:
    """P[x1, x2, y] of y = rule(x1, x2) over two independent uniform bits."""
    p = np.zeros((2, 2, outputs))
    for x1 in (0, 1):
        for x2 in (0, 1):
            p[x1, x2, rule(x1, x2)] += 0.25
    return p


# --- the decomposition ---------------------------------------------------------------------------------

# (R, U1, U2, S) of the canonical gates with uniform inputs
GATES = {
    "xor": (gate(lambda a, b: a ^ b), (0.0, 0.0, 0.0, 1.0)),
    "and": (gate(lambda a, b: a & b), (h(0.25) - 0.5, 0.0, 0.0, 0.5)),  # R = I(X1;Y) = h(¼) − ½·h(½)
    "copy one bit twice (x1 = x2 = y)": (np.array([[[0.5, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.5]]]), (1.0, 0.0, 0.0, 0.0)),
    "unq (y = x1)": (gate(lambda a, b: a), (0.0, 1.0, 0.0, 0.0)),
    "copy (y = (x1, x2))": (gate(lambda a, b: 2 * a + b, outputs=4), (0.0, 1.0, 1.0, 0.0)),
    "sum (y = x1 + x2)": (gate(lambda a, b: a + b, outputs=3), (0.5, 0.0, 0.0, 1.0)),
}


@pytest.mark.parametrize("name", list(GATES))
def test_the_canonical_gates(name):
    joint, (r, u1, u2, s) = GATES[name]
    pid = decompose(joint)
    assert pid.redundancy == pytest.approx(r, abs=TOLERANCE)
    assert pid.unique[0] == pytest.approx(u1, abs=TOLERANCE) and pid.unique[1] == pytest.approx(u2, abs=TOLERANCE)
    assert pid.synergy == pytest.approx(s, abs=TOLERANCE)
    assert pid.mutual_information == pytest.approx(information(joint.reshape(-1, joint.shape[2])), abs=1e-12)
    assert pid.to_dict()["unique"] == list(pid.unique)


def test_and_gate_redundancy_is_its_single_input_information():
    """AND: I(X1;Y) = H(Y) − H(Y|X1) = h(1/4) − ½·h(½) ≈ 0.3113, and BROJA gives it all to redundancy."""
    pid = decompose(gate(lambda a, b: a & b))
    assert pid.redundancy == pytest.approx(h(0.25) - 0.5, abs=TOLERANCE) == pytest.approx(0.311278, abs=1e-6)
    assert pid.mutual_information == pytest.approx(h(0.25), abs=1e-12)


def brute_force_binary(p: np.ndarray) -> tuple[float, float, float, float]:
    """BROJA of a 2×2×2 joint without a conic solver. For each y the 2×2 table q(·,·,y) with the
    marginals p(x1,y), p(x2,y) has one free entry t_y = q(0,0,y) in an interval; I_Q(X1,X2;Y) is convex
    in (t_0, t_1), so a grid and a bounded quasi-Newton refinement find its minimum."""
    a, b, m = p.sum(axis=1)[0], p.sum(axis=0)[0], p.sum(axis=(0, 1))  # p(x1=0,y), p(x2=0,y), p(y): [y]
    low, high = np.maximum(0, a + b - m), np.minimum(a, b)

    def table(t):
        q = np.empty((2, 2, 2))
        q[0, 0], q[0, 1], q[1, 0], q[1, 1] = t, a - t, b - t, m - a - b + t
        return np.clip(q, 0, None)

    def objective(t):
        q = table(t)
        return information(q.reshape(4, 2))

    grid = np.stack(np.meshgrid(*(np.linspace(lo, hi, 81) for lo, hi in zip(low, high)), indexing="ij"), -1).reshape(-1, 2)
    start = grid[np.argmin([objective(t) for t in grid])]
    best = scipy.optimize.minimize(objective, start, method="L-BFGS-B", bounds=list(zip(low, high)),
                                   options={"ftol": 1e-15, "gtol": 1e-12}).x
    q = table(best)
    u1 = entropy(q.sum(axis=2)) + entropy(q.sum(axis=0)) - entropy(q) - entropy(q.sum(axis=(0, 2)))
    qs = q.transpose(1, 0, 2)
    u2 = entropy(qs.sum(axis=2)) + entropy(qs.sum(axis=0)) - entropy(qs) - entropy(qs.sum(axis=(0, 2)))
    i1 = information(p.sum(axis=1))
    return i1 - u1, u1, u2, information(p.reshape(4, 2)) - information(q.reshape(4, 2))


@pytest.mark.parametrize("draw", range(8))
def test_binary_joints_match_a_brute_force_broja(draw):
    rng = np.random.default_rng(draw)
    p = rng.dirichlet(np.full(8, 0.7)).reshape(2, 2, 2)
    expected = brute_force_binary(p)
    pid = decompose(p)
    got = (pid.redundancy, *pid.unique, pid.synergy)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("draw", range(20))
def test_identities_on_random_joints(draw):
    rng = np.random.default_rng(100 + draw)
    shape = tuple(rng.integers(2, 6, size=3))
    p = rng.dirichlet(np.full(int(np.prod(shape)), 0.5)).reshape(shape)
    p[rng.random(shape) < 0.2] = 0.0  # zero entries and, sometimes, whole zero marginals
    p /= p.sum()
    pid = decompose(p)
    i1, i2 = information(p.sum(axis=1)), information(p.sum(axis=0))
    total = information(p.reshape(-1, shape[2]))
    assert pid.redundancy + pid.unique[0] == pytest.approx(i1, abs=TOLERANCE)
    assert pid.redundancy + pid.unique[1] == pytest.approx(i2, abs=TOLERANCE)
    assert sum(pid.values()[:4]) == pytest.approx(total, abs=TOLERANCE)
    assert min(pid.values()) >= 0.0
    # bounds that follow from the definitions: R ≤ min(I(X1;Y), I(X2;Y)), S ≤ I(X1,X2;Y)
    assert pid.synergy <= total + TOLERANCE and pid.redundancy <= min(i1, i2) + TOLERANCE


def test_dropping_zero_outcomes_changes_nothing():
    joint = gate(lambda a, b: a & b)
    padded = np.zeros((4, 3, 5))
    padded[1:3, :2, 2:4] = joint
    assert decompose(padded).values() == pytest.approx(decompose(joint).values(), abs=1e-9)


@pytest.mark.parametrize("joint, fragment", [
    (np.full((2, 2, 2), np.nan), "NaN"),
    (np.array([[[0.5, 0.5], [0.25, -0.25]], [[0.0, 0.0], [0.0, 0.0]]]), "negative"),
    (np.full((2, 2, 2), 0.1), "summing to 0.8"),
    (np.full((4, 2), 0.125), "shape (4, 2)"),
    (np.full((2, 2, 2, 1), 0.125), "3-d"),
])
def test_refuses_what_is_not_a_joint(joint, fragment):
    with pytest.raises(ConfigError, match=r"^joint") as error:
        decompose(joint)
    assert fragment in str(error.value)


# --- features -------------------------------------------------------------------------------------------

def test_features_of_a_sine_and_a_level():
    t = np.arange(400) / 2000.0
    sine = 3.0 * np.sin(2 * np.pi * 100.0 * t)  # 20 whole periods
    x = np.stack([sine + 5.0, 0.5 * sine], axis=1)[None].astype(np.float32)  # [1, 400, 2]
    semg = window_features(x, semg=True)
    assert semg.shape == (1, 2 * 5)
    # log-RMS of the window with its mean removed: the offset is no information for sEMG
    np.testing.assert_allclose(semg[0, :2], np.log([3.0 / np.sqrt(2), 1.5 / np.sqrt(2)]), atol=1e-5)
    bands = semg[0, 2:].reshape(4, 2)  # [band, channel]
    assert bands[:, 0].argmax() == 2  # 100 Hz of 1000: the third of four log-spaced bands
    np.testing.assert_allclose(bands[2, 0] - bands[2, 1], np.log(4.0), atol=1e-5)  # twice the amplitude
    np.testing.assert_allclose(window_features(x, semg=False), [[5.0, 0.0]], atol=1e-5)  # the level
    assert is_semg("emg") and is_semg("emg[0:6]") and is_semg("hdsemg[::4]")
    assert not is_semg("acc") and not is_semg("force")


# --- what the synthetic data plant ----------------------------------------------------------------------

def planted(preset: str, gestures: int, fraction: float | None = None) -> tuple[dict, list[int]]:
    """The sidecar the generator writes for a DB2 data set (without writing signals) and its labels."""
    config = SynthConfig(preset=preset, gestures=gestures, synergy_fraction=fraction)
    labels = [label for ls in db2_labels_per_exercise(gestures).values() for label in ls]
    plans = plan_classes(preset, labels, fraction, np.random.default_rng([0, 999]))
    variants = {1: 0, 3: 1, 4: 0, 6: 1, 2: 0, 5: 1}
    return ground_truth(config, plans, variants), labels


@pytest.mark.parametrize("preset, gestures, fraction, parts", [
    ("emg-only", 8, None, {"unique_emg": 3.0}),
    ("acc-only", 8, None, {"unique_acc": 3.0}),
    ("redundant", 6, None, {"redundancy": math.log2(6)}),
    # 4 XOR pairs: each modality tells the pair (2 bits), both together the class within it (1 bit)
    ("synergy", 8, None, {"redundancy": 2.0, "synergy": 1.0}),
    # 4 pairs and a lone class of 9: H(pair or lone class) = (8/9)·log2(9/2) + (1/9)·log2(9); synergy 8/9 bit
    ("synergy", 9, None, {"redundancy": 8 / 9 * math.log2(4.5) + 1 / 9 * math.log2(9), "synergy": 8 / 9}),
    # 2 pairs + 4 lone classes of 8: half the classes need 1 bit more than either modality tells
    ("mixed", 8, 0.5, {"redundancy": 2.5, "synergy": 0.5}),
])
def test_expected_parts_of_the_presets(preset, gestures, fraction, parts):
    truth, labels = planted(preset, gestures, fraction)
    expected = expected_pid(truth, np.repeat(labels, 7))
    assert set(expected) == {"redundancy", "unique_emg", "unique_acc", "synergy", "mutual_information"}
    assert expected["mutual_information"] == pytest.approx(math.log2(gestures), abs=TOLERANCE)
    for part, bits in expected.items():
        assert bits == pytest.approx(parts.get(part, 0.0 if part != "mutual_information" else bits), abs=TOLERANCE), part


def test_expected_parts_follow_the_repetitions_variants():
    """Only variant-0 repetitions: c0 shows (A, P), c1 (A, Q), so the accelerometer alone tells the class
    within the pair: the bit that was synergy becomes unique to it."""
    truth, labels = planted("synergy", 8)
    expected = expected_pid(truth, np.repeat(labels, 2), repetitions=np.tile([1, 2], len(labels)))
    assert expected["redundancy"] == pytest.approx(2.0, abs=TOLERANCE)
    assert expected["unique_acc"] == pytest.approx(1.0, abs=TOLERANCE)
    assert expected["synergy"] == pytest.approx(0.0, abs=TOLERANCE)


def test_expected_parts_are_unknown_where_the_sidecar_does_not_pin_them():
    truth, labels = planted("redundant", 6)
    assert expected_pid(None, np.array(labels)) is None  # real data
    assert expected_pid(truth, np.array([0, *labels])) is None  # rest has no plan
    assert expected_pid({k: v for k, v in truth.items() if k != "classes"}, np.array(labels)) is None


# --- the estimate from windows --------------------------------------------------------------------------

FAST = dict(ks=(4, 8), permutations=4, bootstrap=6)


@pytest.fixture(scope="module")
def split(db2):
    return db2.splits["test"], db2.splits["train"]


def test_deterministic_given_the_seed_and_blind_to_the_window_order(split, db2_redundant):
    windows, fit = split
    truth = read_ground_truth(db2_redundant)
    first = data_pid(windows, fit, PIDConfig(**FAST), truth).table
    again = data_pid(windows, fit, PIDConfig(**FAST), truth).table
    pd.testing.assert_frame_equal(first, again)
    rng = np.random.default_rng(7)
    shuffled = data_pid(windows.take(rng.permutation(len(windows))), fit.take(rng.permutation(len(fit))),
                        PIDConfig(**FAST), truth).table
    # the same codes and counts; bootstrap weights summed in another order move the solver's input in the last bits
    pd.testing.assert_frame_equal(first, shuffled, rtol=0, atol=1e-7)
    other_seed = data_pid(windows, fit, PIDConfig(**FAST, seed=1), truth).table
    assert not np.allclose(other_seed.floor_mean, first.floor_mean)


def test_the_table(split, db2_redundant):
    windows, fit = split
    result = data_pid(windows, fit, PIDConfig(**FAST), read_ground_truth(db2_redundant))
    table = result.table
    parts = ["redundancy", "unique_emg", "unique_acc", "synergy", "mutual_information"]
    assert list(table.part) == parts * 2 and list(table.k) == [4] * 5 + [8] * 5 and set(table.target) == {"labels"}
    for k, rows in table.groupby("k"):
        bits = rows.set_index("part").bits
        assert bits[parts[:4]].sum() == pytest.approx(bits["mutual_information"], abs=TOLERANCE)
        assert rows.fraction.iloc[-1] == 1.0
        assert bits["mutual_information"] <= math.log2(6) + 1e-9  # six gestures
    ci = table.dropna(subset=["ci_low"])
    assert len(ci) and (ci.ci_low <= ci.bits + 1e-12).all() and (ci.bits <= ci.ci_high + 1e-12).all()
    assert (ci.ci_low >= 0).all() and (ci.ci_high <= math.log2(6) + 1e-9).all()
    # the fraction's own interval: from each resample's ratio, inside [0, 1], defined where the bits' is
    assert ci.fraction_ci_low.notna().all() and (ci.fraction_ci_low >= 0).all() and (ci.fraction_ci_high <= 1).all()
    assert ((ci.fraction_ci_low <= ci.fraction + 1e-12) & (ci.fraction <= ci.fraction_ci_high + 1e-12)).all()
    assert table.fraction_ci_low.isna().equals(table.ci_low.isna())
    assert (table.floor95 >= table.floor_mean - 1e-12).all()
    assert table.expected_bits.tolist() == pytest.approx([math.log2(6), 0, 0, 0, math.log2(6)] * 2, abs=TOLERANCE)
    assert (table.windows == len(windows)).all() and (table.segments == 12).all()
    assert result.bits(8, "redundancy") == table.bits.iloc[5] and result.to_dict()["kind"] == "pid"
    bare = data_pid(windows, fit, PIDConfig(ks=(4,), permutations=0, bootstrap=0)).table
    assert bare[["ci_low", "ci_high", "fraction_ci_low", "fraction_ci_high", "floor_mean", "floor95",
                 "expected_bits"]].isna().all().all()


def test_other_modality_groups_have_no_planted_values(db2_redundant):
    data = prepare(DataConfig(root=str(db2_redundant), modalities="emg[0:6],emg[6:12]"), cache_dir=None)
    table = data_pid(data.splits["test"], data.splits["train"], PIDConfig(ks=(4,), permutations=0, bootstrap=0),
                     read_ground_truth(db2_redundant)).table
    assert table.expected_bits.isna().all() and "unique_emg[0:6]" in set(table.part)


def test_the_model_pid_decomposes_its_predictions(hier, split):
    windows, fit = split
    config = PIDConfig(ks=(4,), permutations=2, bootstrap=0, target="predictions")
    table = model_pid(hier, windows, fit, config).table
    predicted = predict_logits(hier, windows, hier.modality_names).argmax(-1).numpy()
    codes = window_codes(windows, fit, tuple(hier.modality_names), config)[4]
    joint = np.zeros((4, 4, int(predicted.max()) + 1))
    np.add.at(joint, (codes[0], codes[1], predicted), 1.0)
    assert table.bits.tolist() == pytest.approx(decompose(joint / joint.sum()).values(), abs=1e-9)
    assert set(table.target) == {"predictions"}
    # target labels: the data's decomposition on the same codes
    labels = PIDConfig(ks=(4,), permutations=2, bootstrap=0)
    pd.testing.assert_frame_equal(model_pid(hier, windows, fit, labels).table, data_pid(windows, fit, labels).table)


def test_refusals(split, db2_emg):
    windows, fit = split
    with pytest.raises(ConfigError, match="^target"):
        data_pid(windows, fit, PIDConfig(target="predictions"))
    with pytest.raises(ConfigError, match="^modalities"):
        data_pid(db2_emg.splits["test"], db2_emg.splits["train"], PIDConfig(ks=(4,)))
    with pytest.raises(ConfigError, match="^ks"):
        data_pid(windows, fit.take(np.arange(6)), PIDConfig(ks=(4, 8)))


@pytest.mark.parametrize("values, field", [({"ks": "1,4"}, "ks"), ({"ks": (4, 4)}, "ks"), ({"ks": "four"}, "ks"),
                                           ({"ks": ()}, "ks"), ({"components": 0}, "components"),
                                           ({"permutations": -1}, "permutations"), ({"bootstrap": -1}, "bootstrap"),
                                           ({"target": "logits"}, "target"), ({"level": 1.0}, "level")])
def test_config_refuses_bad_values(values, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        PIDConfig(**values)


def test_config_round_trips():
    config = PIDConfig(ks="16,4", permutations=3)
    assert config.ks == (4, 16) and PIDConfig.from_dict(config.to_dict()) == config


# --- the planted presets --------------------------------------------------------------------------------

PRESET_CONFIG = PIDConfig(ks=(8,), permutations=10, bootstrap=0)


@pytest.fixture(scope="module")
def preset_data(tmp_path_factory) -> dict:
    """Three presets (DB2 layout, 8 gestures, 1 subject): preset -> (prepared data, sidecar)."""
    out = {}
    for preset in ("emg-only", "redundant", "synergy"):
        root = make_synth(tmp_path_factory.mktemp(preset), preset=preset, gestures=8)
        out[preset] = prepare(DataConfig(root=str(root)), cache_dir=None), read_ground_truth(root)
    return out


@pytest.fixture(scope="module")
def presets(preset_data) -> dict:
    """The test split's PID at K = 8 of each preset: preset -> table indexed by part."""
    return {preset: data_pid(data.splits["test"], data.splits["train"], PRESET_CONFIG, truth).table.set_index("part")
            for preset, (data, truth) in preset_data.items()}


def test_presets_order_their_parts_as_planted(presets):
    emg_only, redundant, synergy = presets["emg-only"], presets["redundant"], presets["synergy"]
    assert synergy.bits["synergy"] > redundant.bits["synergy"] + 0.5
    assert redundant.bits["redundancy"] > synergy.bits["redundancy"]
    assert emg_only.bits.drop("mutual_information").idxmax() == "unique_emg"
    # each planted part clears the plug-in bias of its own permutation floor
    assert synergy.bits["synergy"] > synergy.floor95["synergy"]
    assert redundant.bits["redundancy"] > redundant.floor95["redundancy"]
    assert emg_only.bits["unique_emg"] > emg_only.floor95["unique_emg"]
    # and the sidecar's values sit beside them
    assert synergy.expected_bits["synergy"] == pytest.approx(1.0, abs=TOLERANCE)
    assert emg_only.expected_bits["unique_emg"] == pytest.approx(3.0, abs=TOLERANCE)


def test_synergy_needs_both_variants(preset_data):
    """Negative control: the synergy data's test windows of repetition 2 alone show each class one pattern
    pair (variant 0), which the accelerometer tells apart on its own. The sidecar then plants no synergy,
    and the estimate's synergy falls below its floor: the synergy check above can fail."""
    data, truth = preset_data["synergy"]
    windows = data.splits["test"]
    one_variant = windows.take(np.flatnonzero(windows.repetition == 2))
    table = data_pid(one_variant, data.splits["train"], PRESET_CONFIG, truth).table.set_index("part")
    assert table.expected_bits["synergy"] == pytest.approx(0.0, abs=TOLERANCE)
    assert table.expected_bits["unique_acc"] == pytest.approx(1.0, abs=TOLERANCE)
    assert table.bits["synergy"] < table.floor95["synergy"]
