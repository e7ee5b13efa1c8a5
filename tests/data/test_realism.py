"""`isoprobe data realism`: each statistic against an independent computation on small generated
signals, and the command on tiny synthetic folders of both layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from isoprobe.data import realism as R
from isoprobe.data.synth import SynthConfig, generate
from tests.cli_helpers import assert_ok, assert_user_error, invoke

rng = np.random.default_rng(0)


def test_grid_and_ring_distances():
    d = R.grid_distance((3, 4))
    assert d[0, 1] == 1 and d[0, 4] == 1 and d[0, 5] == pytest.approx(np.sqrt(2)) and d[0, 11] == pytest.approx(np.hypot(2, 3))
    ring = R.ring_distance(12)
    assert ring[0, 11] == 1 and ring[0, 6] == 6 and ring[2, 10] == 4


def test_correlation_by_distance_equals_corrcoef_loop():
    shape = (5, 5)
    n = shape[0] * shape[1]
    x = rng.standard_normal((500, n)) + np.linspace(0, 1, n) * rng.standard_normal((500, 1))
    distance = R.grid_distance(shape)
    got = R.correlation_by_distance(x, distance)
    expected = {1: [], 2: [], 4: []}
    for i in range(n):
        for j in range(i + 1, n):
            r = np.corrcoef(x[:, i], x[:, j])[0, 1]
            d = np.hypot(*np.subtract(divmod(i, shape[1]), divmod(j, shape[1])))
            for b in (1, 2):
                if np.isclose(d, b):
                    expected[b].append(r)
            if d >= 4:
                expected[4].append(r)
    for b in (1, 2, 4):
        assert got[b] == pytest.approx(np.mean(expected[b]), abs=1e-12)


def test_common_average_of_identical_channels_is_zero():
    x = np.repeat(rng.standard_normal((100, 1)), 5, axis=1)
    assert np.abs(R.common_average(x)).max() < 1e-12
    # and the mean over channels of any CAR signal is zero
    assert np.abs(R.common_average(rng.standard_normal((50, 4))).mean(axis=1)).max() < 1e-12


def test_components_for_variance_equals_svd():
    x = rng.standard_normal((400, 3)) @ rng.standard_normal((3, 10)) + 0.1 * rng.standard_normal((400, 10))
    singular = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    share = np.cumsum(singular**2) / (singular**2).sum()
    expected = [int(np.argmax(share >= f)) + 1 for f in (0.9, 0.95)]
    assert R.components_for_variance(x) == expected
    assert R.components_for_variance(rng.standard_normal((5000, 10)))[0] >= 9  # negative control: no shared structure


def test_kurtosis_gaussian_and_spikes():
    noise = rng.standard_normal((20000, 3))
    got = R.pearson_kurtosis(noise)
    assert np.allclose(got, scipy.stats.kurtosis(noise, axis=0, fisher=False))
    assert np.allclose(got, 3, atol=0.15)
    spikes = np.zeros((5000, 2))
    spikes[rng.integers(0, 5000, 50), :] = 1
    spikes += 0.01 * rng.standard_normal(spikes.shape)
    got = R.pearson_kurtosis(spikes)
    assert np.allclose(got, scipy.stats.kurtosis(spikes, axis=0, fisher=False)) and (got > 10).all()


def test_windows_cut_and_short_signal_is_one_window():
    x = np.arange(23 * 2, dtype=float).reshape(23, 2)
    assert R.windows(x, 10).shape == (2, 10, 2)
    assert R.windows(x, 40).shape == (1, 23, 2)


def test_median_frequency_and_band_shares_of_a_sine():
    fs, f = 2048.0, 100.0
    t = np.arange(4096) / fs
    x = np.stack([np.sin(2 * np.pi * f * t), np.sin(2 * np.pi * 10 * t) + 5.0], axis=1)  # second: 10 Hz + DC
    freqs, psd = R.welch_psd(x, fs, 512)
    resolution = freqs[1] - freqs[0]
    mdf = R.median_frequency(freqs, psd)
    assert abs(mdf[0] - f) <= resolution and abs(mdf[1] - 10) <= resolution  # the DC offset is removed
    below = R.band_share(freqs, psd, high=20)
    assert below[0] < 0.01 and below[1] > 0.99
    assert R.band_share(freqs, psd, low=450)[0] < 0.01


@pytest.mark.parametrize("k", [3, -2, 0])
def test_peak_lag_of_a_delayed_copy(k):
    a = rng.standard_normal((2000, 2))
    b = np.roll(a, k, axis=0)  # b[t] = a[t - k]
    lag, r = R.peak_lag(a, b, max_lag=10)
    assert (lag == k).all() and np.allclose(r, 1, atol=0.02)


def test_rms_ratio_of_known_amplitudes():
    t = np.arange(2048) / 2048
    x = np.sin(2 * np.pi * 64 * t)[:, None] * np.array([1.0, 2.0, 3.0])
    assert R.rms_ratio(x) == pytest.approx(3.0)
    assert R.rms_envelope(x, 256)[:, 2] == pytest.approx(np.full(8, 3 / np.sqrt(2)), rel=1e-6)


def test_target_check():
    values = {"corr_d1": 0.9, "corr_d2": 0.95, "pcs_90": 9, "envelope_corr": 0.5}
    assert R.TARGETS["corr_d1"].check(values, "corr_d1") is True
    assert R.TARGETS["corr_d2"].check(values, "corr_d2") is False  # must fall with distance
    assert R.TARGETS["pcs_90"].check(values, "pcs_90") is False
    assert R.TARGETS["envelope_corr"].check(values, "envelope_corr") is None  # reference only
    assert R.TARGETS["kurtosis_mono"].check(values, "kurtosis_mono") is None  # not measured


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("realism")
    for layout in ("hdsemg65", "ninapro-db2"):
        generate(SynthConfig(layout=layout, gestures=2, subjects=1, seconds_per_repetition=0.6, rest_seconds=0.3),
                 root / layout)
    return root


@pytest.mark.parametrize("layout", ["hdsemg65", "ninapro-db2"])
def test_cli_prints_table_and_writes_json(folders, layout, tmp_path):
    out = tmp_path / "realism.json"
    result = invoke("data", "realism", folders / layout, "--out", out)
    assert_ok(result)
    for target in R.TARGETS.values():
        assert target.label in result.output
    assert "in range" in result.output
    payload = json.loads(out.read_text())
    assert payload["dataset"] == layout and payload["subject"] == 1
    assert set(R.TARGETS) <= set(payload["values"]) and set(payload["targets"]) == set(R.TARGETS)
    numbers = {k: v for k, v in payload["values"].items() if v is not None}
    expected_missing = {"kurtosis_mono", "delay_samples", "delay_signed", "delay_r"} if layout == "ninapro-db2" else set()
    assert set(payload["values"]) - set(numbers) == expected_missing
    assert payload["targets"]["median_frequency_hz"]["low"] == 45
    verdicts = [t["in_range"] for t in payload["targets"].values()]
    if layout == "hdsemg65":
        assert set(payload["per_group"]) == {"flexors", "extensors"} and payload["layout"] == "grid"
        assert sum(v is not None for v in verdicts) >= 12
    else:  # the ranges describe monopolar grids: a bipolar ring gets no verdict
        assert payload["layout"] == "ring" and all(v is None for v in verdicts) and "reference only" in result.output


def test_cli_missing_folder_is_one_line(tmp_path):
    assert_user_error(invoke("data", "realism", tmp_path / "nowhere"), "nowhere", "no such file or folder")


def test_cli_unknown_subject_is_one_line(folders):
    assert_user_error(invoke("data", "realism", folders / "hdsemg65", "--subject", "7"), "subject 7")
