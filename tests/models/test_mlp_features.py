"""Classic time-domain EMG features (Hudgins et al. 1993) against a naive numpy implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoprobe.models.mlp import N_CLASSIC, classic_features


def naive_features(windows: np.ndarray, threshold: float) -> np.ndarray:
    """Per window and channel, with explicit loops over time, as classic_features documents them:
    RMS and MAV over the window, WL the mean absolute step, ZC the number of sign changes of the
    signal whose step exceeds `threshold`, SSC the number of sign changes of the slope where either
    adjacent step exceeds it; ZC and SSC divided by the window length. Feature-major layout."""
    batch, n_time, n_channel = windows.shape
    out = np.zeros((batch, N_CLASSIC, n_channel))
    for b in range(batch):
        for c in range(n_channel):
            x = [float(v) for v in windows[b, :, c]]
            rms = (sum(v * v for v in x) / n_time) ** 0.5
            mav = sum(abs(v) for v in x) / n_time
            steps = [x[t + 1] - x[t] for t in range(n_time - 1)]
            wl = sum(abs(s) for s in steps) / len(steps)
            zc = sum(1 for t in range(n_time - 1) if x[t] * x[t + 1] < 0 and abs(steps[t]) > threshold)
            ssc = sum(
                1 for t in range(len(steps) - 1)
                if steps[t] * steps[t + 1] < 0 and (abs(steps[t]) > threshold or abs(steps[t + 1]) > threshold)
            )
            out[b, :, c] = [rms, mav, wl, zc / n_time, ssc / n_time]
    return out.reshape(batch, N_CLASSIC * n_channel)


def test_matches_naive_implementation_on_random_windows():
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((3, 50, 4)).astype(np.float32)
    # Small steps around zero, so the threshold decides some crossings.
    windows[1, :, 2] = 0.004 * rng.standard_normal(50)
    got = classic_features(torch.from_numpy(windows), threshold=0.01).numpy()
    assert got.shape == (3, 4 * N_CLASSIC)
    np.testing.assert_allclose(got, naive_features(windows, 0.01), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_threshold_is_applied(threshold):
    rng = np.random.default_rng(1)
    windows = rng.standard_normal((2, 40, 3)).astype(np.float32)
    got = classic_features(torch.from_numpy(windows), threshold=threshold).numpy()
    np.testing.assert_allclose(got, naive_features(windows, threshold), rtol=1e-5, atol=1e-6)


def test_known_values_on_an_alternating_signal():
    """x = +1, -1, +1, ... over 10 samples: RMS = MAV = 1, every step has size 2 (WL = 2),
    9 zero crossings and 8 slope sign changes, divided by the window length 10."""
    x = torch.tensor([(-1.0) ** t for t in range(10)]).reshape(1, 10, 1)
    features = classic_features(x)
    torch.testing.assert_close(features, torch.tensor([[1.0, 1.0, 2.0, 0.9, 0.8]]))


def test_constant_and_monotone_signals_have_no_crossings():
    constant = torch.full((1, 20, 1), 0.5)
    ramp = torch.linspace(-1, 1, 20).reshape(1, 20, 1)
    c = classic_features(constant)[0]
    torch.testing.assert_close(c, torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0]))
    r = classic_features(ramp)[0]
    assert r[3] == pytest.approx(1 / 20)  # one crossing of zero, step 2/19 > threshold
    assert r[4] == 0.0  # the slope never changes sign
