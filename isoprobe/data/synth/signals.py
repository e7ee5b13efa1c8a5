"""Signal models for the synthetic generator (DESIGN §2.3).

Accelerometer and force here; the sEMG model is in `motor_units`. Every function is vectorised
over samples and channels; loops run over protocol segments (a few hundred per subject), never over
samples or windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

GRAVITY_G = 1.0  # accelerometers in DB2 report g


@dataclass(frozen=True)
class Segment:
    """One labelled stretch of the protocol: samples [start, stop) of gesture `label`, repetition `repetition`.

    `variant` selects which of the class's two pattern pairs is shown (synergy classes alternate);
    `effort` scales the repetition's muscle excitation and, coherently, its force or movement.
    """

    start: int
    stop: int
    label: int
    repetition: int
    variant: int = 0
    effort: float = 1.0


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


def activation(segments: list[Segment], n_samples: int, fs: float, ramp_s: float = 0.25) -> np.ndarray:
    """Gesture activation in [0, 1] per sample (0 at rest, ramps at onset and offset): [time] float32."""
    level = np.zeros(n_samples, dtype=np.float32)
    for seg in segments:
        if seg.label != 0:
            level[seg.start : seg.stop] = ramp(seg.stop - seg.start, fs, ramp_s)
    return level


def effort_per_sample(segments: list[Segment], n_samples: int) -> np.ndarray:
    """The effort of the repetition under way at each sample (1 at rest): [time] float32."""
    effort = np.ones(n_samples, dtype=np.float32)
    for seg in segments:
        if seg.label != 0:
            effort[seg.start : seg.stop] = seg.effort
    return effort


def pattern_per_sample(segments: list[Segment], patterns: dict[tuple[int, int], np.ndarray], n_samples: int) -> np.ndarray:
    """The target pattern of the gesture under way at each sample (zeros at rest): [time, channel]."""
    width = len(next(iter(patterns.values())))
    out = np.zeros((n_samples, width), dtype=np.float32)
    for seg in segments:
        if seg.label != 0:
            out[seg.start : seg.stop] = patterns[(seg.label, seg.variant)]
    return out


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
    orientation as the gesture ramps in (further with more effort: the repetition's effort scales
    the movement as it scales the muscles' excitation), plus slow movement and sensor noise.

    rest_orientation: [sensor, 3] unit vectors; gesture_orientation values: [sensor * 3].
    Returns [time, sensor * 3] float32, axes interleaved per sensor (x1 y1 z1 x2 ...), as DB2 stores them.
    """
    n_sensors = rest_orientation.shape[0]
    rest = rest_orientation.reshape(1, -1).astype(np.float32)
    level = (activation(segments, n_samples, fs, ramp_s=0.4) * effort_per_sample(segments, n_samples))[:, None]
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
    """Finger forces: smooth curves that follow the gesture's per-finger pattern scaled by the
    repetition's effort (shared with the sEMG) and a little per-finger variation, with drift and noise.

    Returns [time, finger] float32 in newtons.
    """
    n_fingers = len(next(iter(patterns.values())))
    level = activation(segments, n_samples, fs, ramp_s=0.5)[:, None]
    target = pattern_per_sample(segments, patterns, n_samples)
    for seg in segments:
        target[seg.start : seg.stop] *= seg.effort * rng.lognormal(0.0, 0.05, n_fingers).astype(np.float32)
    drift = 0.03 * slow_noise(rng, n_samples, n_fingers, fs, cutoff_hz=1.0)
    noise = 0.005 * rng.standard_normal((n_samples, n_fingers), dtype=np.float32)
    return (full_scale * (level * target * (1.0 + drift) + drift * 0.2 + noise)).astype(np.float32)
