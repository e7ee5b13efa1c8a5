"""Optional sEMG conditioning: zero-phase Butterworth band-pass and mains notch (DESIGN §2.4)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import signal

from isoprobe.data.recording import Recording
from isoprobe.errors import ConfigError

EMG_MODALITIES = ("emg", "hdsemg")  # only electrical signals are filtered; ACC and force keep their slow content


@dataclass(frozen=True)
class FilterConfig:
    bandpass_hz: tuple[float, float] | None = None  # e.g. (20, 450); 4th-order Butterworth, zero-phase
    notch_hz: float | None = None  # e.g. 50 (Europe) or 60
    notch_quality: float = 30.0

    def __post_init__(self) -> None:
        if self.bandpass_hz is not None:
            if len(self.bandpass_hz) != 2 or not 0 < self.bandpass_hz[0] < self.bandpass_hz[1]:
                raise ConfigError("bandpass_hz", self.bandpass_hz, "give LOW,HIGH in Hz with 0 < LOW < HIGH")
        if self.notch_hz is not None and self.notch_hz <= 0:
            raise ConfigError("notch_hz", self.notch_hz, "give the mains frequency in Hz (50 or 60)")
        if not self.notch_quality > 0:
            raise ConfigError("notch_quality", self.notch_quality, "must be positive (30 is typical)")

    @property
    def active(self) -> bool:
        return self.bandpass_hz is not None or self.notch_hz is not None

    def sections(self, fs: float) -> np.ndarray:
        """Second-order sections of the whole filter chain at sampling rate `fs`: [section, 6]."""
        parts = []
        if self.bandpass_hz is not None:
            low, high = self.bandpass_hz
            if high >= fs / 2:
                raise ConfigError("bandpass_hz", self.bandpass_hz, f"the upper edge must lie below Nyquist ({fs / 2:g} Hz)")
            # butter(N) for a band-pass gives order 2N; N=2 is the 4th-order filter of DESIGN §2.4.
            parts.append(signal.butter(2, [low, high], btype="band", fs=fs, output="sos"))
        if self.notch_hz is not None:
            if self.notch_hz >= fs / 2:
                raise ConfigError("notch_hz", self.notch_hz, f"must lie below Nyquist ({fs / 2:g} Hz)")
            b, a = signal.iirnotch(self.notch_hz, self.notch_quality, fs=fs)
            parts.append(signal.tf2sos(b, a))
        return np.vstack(parts)


def filter_recording(recording: Recording, config: FilterConfig) -> Recording:
    """A copy of `recording` with its sEMG modalities filtered file by file (never across file joins)."""
    if not config.active:
        return recording
    sos = config.sections(recording.sampling_rate)
    signals = dict(recording.signals)
    bounds = [*recording.segment_starts, recording.n_samples]
    for name in EMG_MODALITIES:
        if name not in signals:
            continue
        filtered = np.empty_like(signals[name])
        for start, stop in zip(bounds[:-1], bounds[1:]):
            filtered[start:stop] = signal.sosfiltfilt(sos, signals[name][start:stop], axis=0)
        signals[name] = filtered
    return replace(recording, signals=signals)
