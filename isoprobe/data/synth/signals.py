"""Signal models for the synthetic generator (DESIGN §2.3).

Every function is vectorised over samples and channels; loops run over protocol segments
(a few hundred per subject), never over samples or windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

GRAVITY_G = 1.0  # accelerometers in DB2 report g


@dataclass(frozen=True)
class Segment:
    """One labelled stretch of the protocol: samples [start, stop) of gesture `label`, repetition `repetition`.

    `variant` selects which of the class's two pattern pairs is shown (synergy classes alternate).
    """

    start: int
    stop: int
    label: int
    repetition: int
    variant: int = 0


def ramp(n_samples: int, fs: float, ramp_s: float) -> np.ndarray:
    """Raised-cosine onset and offset around a plateau of 1: [time] float32."""
    n_ramp = min(int(round(ramp_s * fs)), n_samples // 2)
    shape = np.ones(n_samples, dtype=np.float32)
    if n_ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n_ramp, dtype=np.float32))
        shape[:n_ramp] = rise
        shape[n_samples - n_ramp :] = rise[::-1]
    return shape


def slow_noise(rng: np.random.Generator, n_samples: int, n_channels: int, fs: float, cutoff_hz: float) -> np.ndarray:
    """Smooth zero-mean noise of unit standard deviation below `cutoff_hz`: [time, channel] float32."""
    # Draw at a low rate and interpolate: far cheaper than low-pass filtering millions of samples.
    step = max(1, int(fs / (4 * cutoff_hz)))
    n_coarse = n_samples // step + 4
    coarse = rng.standard_normal((n_coarse, n_channels))
    coarse = signal.sosfiltfilt(signal.butter(2, 0.25, output="sos"), coarse, axis=0) if n_coarse > 12 else coarse
    coarse /= coarse.std(axis=0, keepdims=True) + 1e-12
    fine_t = np.arange(n_samples) / step
    out = np.empty((n_samples, n_channels), dtype=np.float32)
    for channel in range(n_channels):
        out[:, channel] = np.interp(fine_t, np.arange(n_coarse), coarse[:, channel])
    return out


def emg_carrier(rng: np.random.Generator, n_samples: int, n_channels: int, fs: float) -> np.ndarray:
    """Unit-variance surface-EMG-like noise: band-limited to 20–450 Hz with a spectrum falling above ~100 Hz.

    Real sEMG power peaks near 50–100 Hz with a median frequency of roughly 60–150 Hz; a 4th-order
    band-pass plus a first-order 100 Hz low-pass places the median near 95 Hz. Returns [time, channel].
    """
    white = rng.standard_normal((n_samples, n_channels), dtype=np.float32)
    band = signal.butter(4, [20.0, min(450.0, 0.45 * fs)], btype="band", fs=fs, output="sos")
    tilt = signal.butter(1, 100.0, fs=fs, output="sos")
    shaped = signal.sosfilt(np.vstack([band, tilt]), white, axis=0).astype(np.float32)
    shaped /= shaped.std(axis=0, keepdims=True) + 1e-12
    return shaped


def activation(segments: list[Segment], n_samples: int, fs: float, ramp_s: float = 0.25) -> np.ndarray:
    """Gesture activation in [0, 1] per sample (0 at rest, ramps at onset and offset): [time] float32."""
    level = np.zeros(n_samples, dtype=np.float32)
    for seg in segments:
        if seg.label != 0:
            level[seg.start : seg.stop] = ramp(seg.stop - seg.start, fs, ramp_s)
    return level


def pattern_per_sample(segments: list[Segment], patterns: dict[tuple[int, int], np.ndarray], n_samples: int) -> np.ndarray:
    """The target pattern of the gesture under way at each sample (zeros at rest): [time, channel]."""
    width = len(next(iter(patterns.values())))
    out = np.zeros((n_samples, width), dtype=np.float32)
    for seg in segments:
        if seg.label != 0:
            out[seg.start : seg.stop] = patterns[(seg.label, seg.variant)]
    return out


def emg(
    rng: np.random.Generator,
    segments: list[Segment],
    patterns: dict[tuple[int, int], np.ndarray],
    n_samples: int,
    fs: float,
    amplitude_v: float = 5e-5,
    rest_fraction: float = 0.04,
    mains_fraction: float = 0.01,
) -> np.ndarray:
    """sEMG in volts: band-limited noise amplitude-modulated by per-channel activation envelopes.

    Envelope = rest floor + activation ramp × class pattern × per-repetition gain × slow fluctuation;
    a faint 50 Hz mains component makes the notch filter meaningful. Returns [time, channel] float32.
    """
    n_channels = len(next(iter(patterns.values())))
    target = pattern_per_sample(segments, patterns, n_samples)
    gain = np.ones((n_samples, n_channels), dtype=np.float32)
    for seg in segments:  # repetition-to-repetition variability of effort, per channel
        gain[seg.start : seg.stop] = rng.lognormal(0.0, 0.12, n_channels)
    wobble = 1.0 + 0.1 * slow_noise(rng, n_samples, n_channels, fs, cutoff_hz=1.5)
    envelope = rest_fraction + activation(segments, n_samples, fs)[:, None] * target * gain * wobble
    mains = mains_fraction * np.sin(2 * np.pi * 50.0 * np.arange(n_samples)[:, None] / fs + rng.uniform(0, 2 * np.pi, n_channels))
    return (amplitude_v * (emg_carrier(rng, n_samples, n_channels, fs) * envelope + mains)).astype(np.float32)


def rotation(angles_rad: np.ndarray) -> np.ndarray:
    """Rotation matrix from x, y, z Euler angles: [3, 3]."""
    cx, cy, cz = np.cos(angles_rad)
    sx, sy, sz = np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def accelerometer(
    rng: np.random.Generator,
    segments: list[Segment],
    rest_orientation: np.ndarray,
    gesture_orientation: dict[tuple[int, int], np.ndarray],
    n_samples: int,
    fs: float,
) -> np.ndarray:
    """Tri-axial accelerometers in g: a gravity vector per sensor that turns towards the gesture's
    orientation as the gesture ramps in, plus slow movement and sensor noise.

    rest_orientation: [sensor, 3] unit vectors; gesture_orientation values: [sensor * 3].
    Returns [time, sensor * 3] float32, axes interleaved per sensor (x1 y1 z1 x2 ...), as DB2 stores them.
    """
    n_sensors = rest_orientation.shape[0]
    rest = rest_orientation.reshape(1, -1).astype(np.float32)
    level = activation(segments, n_samples, fs, ramp_s=0.4)[:, None]
    target = pattern_per_sample(segments, gesture_orientation, n_samples)
    for seg in segments:  # the posture is never held exactly alike: a few degrees' turn per repetition
        if seg.label != 0:
            turn = rotation(np.deg2rad(rng.normal(0.0, 2.5, 3))).astype(np.float32)
            posture = target[seg.start].reshape(n_sensors, 3) @ turn.T
            target[seg.start : seg.stop] = posture.reshape(-1)
    direction = (1.0 - level) * rest + level * target
    direction = direction.reshape(n_samples, n_sensors, 3)
    direction /= np.linalg.norm(direction, axis=2, keepdims=True) + 1e-9
    movement = 0.02 * slow_noise(rng, n_samples, n_sensors * 3, fs, cutoff_hz=2.0)
    noise = 0.004 * rng.standard_normal((n_samples, n_sensors * 3), dtype=np.float32)
    return (GRAVITY_G * direction.reshape(n_samples, -1) + movement + noise).astype(np.float32)


def force(
    rng: np.random.Generator,
    segments: list[Segment],
    patterns: dict[tuple[int, int], np.ndarray],
    n_samples: int,
    fs: float,
    full_scale: float = 10.0,
) -> np.ndarray:
    """Finger forces: smooth curves that follow the gesture's per-finger pattern, with drift and noise.

    Returns [time, finger] float32 in newtons.
    """
    n_fingers = len(next(iter(patterns.values())))
    level = activation(segments, n_samples, fs, ramp_s=0.5)[:, None]
    target = pattern_per_sample(segments, patterns, n_samples)
    for seg in segments:  # effort varies from repetition to repetition
        target[seg.start : seg.stop] *= rng.lognormal(0.0, 0.1, n_fingers).astype(np.float32)
    drift = 0.03 * slow_noise(rng, n_samples, n_fingers, fs, cutoff_hz=1.0)
    noise = 0.005 * rng.standard_normal((n_samples, n_fingers), dtype=np.float32)
    return (full_scale * (level * target * (1.0 + drift) + drift * 0.2 + noise)).astype(np.float32)
