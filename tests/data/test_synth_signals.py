"""Synthetic signals look like the real thing (DESIGN §2.3): sEMG spectrum and envelope, gravity."""

from __future__ import annotations

import numpy as np
from scipy import signal

from isoprobe.data import hdsemg, ninapro


def median_frequency(values: np.ndarray, fs: float) -> float:
    freqs, power = signal.welch(values, fs=fs, nperseg=1024, axis=0)
    cumulative = np.cumsum(power.mean(axis=1))
    return float(freqs[np.searchsorted(cumulative, cumulative[-1] / 2)])


def test_semg_median_frequency_is_physiological(db2_redundant, hd_redundant):
    db2 = ninapro.load_subject(db2_redundant, 1)
    active = db2.labels != 0
    assert 60 <= median_frequency(db2.signals["emg"][active], db2.sampling_rate) <= 150
    hd = hdsemg.load_subject(hd_redundant, 1)
    assert 60 <= median_frequency(hd.signals["hdsemg"][hd.labels != 0], hd.sampling_rate) <= 150


def test_semg_amplitude_rises_during_gestures(db2_redundant):
    recording = ninapro.load_subject(db2_redundant, 1)
    emg = recording.signals["emg"].astype(np.float64)
    rms_rest = np.sqrt((emg[recording.labels == 0] ** 2).mean(axis=0))
    rms_gesture = np.sqrt((emg[recording.labels != 0] ** 2).mean(axis=0))
    assert np.all(rms_gesture > 3 * rms_rest)
    # amplitude in volts, as DB2 stores it (tens of microvolts)
    assert 1e-6 < rms_gesture.mean() < 1e-3


def test_accelerometer_reads_one_g_at_rest(db2_redundant):
    recording = ninapro.load_subject(db2_redundant, 1)
    acc = recording.signals["acc"][recording.labels == 0].reshape(-1, 12, 3)
    magnitude = np.linalg.norm(acc, axis=2)
    assert abs(np.median(magnitude) - 1.0) < 0.03
    assert np.percentile(np.abs(magnitude - 1.0), 95) < 0.1


def test_force_is_smooth_and_rises_during_gestures(hd_redundant):
    recording = hdsemg.load_subject(hd_redundant, 1)
    force = recording.signals["force"].astype(np.float64)
    assert force[recording.labels != 0].max(axis=0).max() > 5 * np.abs(force[recording.labels == 0]).mean()
    # smooth: almost all power below 10 Hz
    freqs, power = signal.welch(force, fs=recording.sampling_rate, nperseg=4096, axis=0)
    assert power[freqs < 10].sum() / power.sum() > 0.95
