"""How much a folder of recordings behaves like real surface EMG: `isoprobe data realism`.

Every statistic is computed on the sEMG channels of one subject during *steady contraction*:
the middle 50% of each gesture repetition (label > 0 and repetition > 0), rest excluded, never
across a file join. "Band-passed" means the project's 20–450 Hz zero-phase Butterworth
(`data.filters`); the other statistics see the recorded signal with each contraction's mean
removed.

Electrode groups. HD-sEMG: each 8×8 grid (`Recording.grids`), electrode distance = Euclidean
distance in grid steps (so d = 1, 2 are pairs along a row or column; diagonal pairs fall in no
bin below 4); bipolar channels are differences of neighbours along the grid's column axis
(row r+1 minus row r), the fibre direction. NinaPro DB2: the 12 sensors taken as one ring around
the forearm, distance = circular index distance; its channels are already bipolar, so the
monopolar kurtosis and the along-fibre delay do not apply (reported as null), and the ranges,
which describe monopolar grids, get no in-range verdict.

Statistics (values pooled over groups as stated):
1. `corr_d1`, `corr_d2`, `corr_d4`: mean Pearson r of band-passed channel pairs at distance 1, 2
   and ≥ 4; `car_corr_*` the same after common-average reference (the group mean subtracted at
   each sample).
2. `pcs_90`, `pcs_95`: principal components for 90% / 95% of the band-passed variance in one
   group (64 channels of a grid, 12 for DB2); the largest over groups.
3. `kurtosis_mono`, `kurtosis_bipolar`: Pearson kurtosis (normal = 3) in 0.5 s windows, median
   over windows and channels.
4. `median_frequency_hz`, `power_below_20hz`, `power_above_450hz`: from a Welch PSD (≈ 4 Hz bins,
   segment mean removed), median over channels.
5. `envelope_corr`: mean r of neighbouring (d = 1) channels' 100 ms RMS envelopes within each
   contraction; `envelope_cv`: std/mean of the envelope over a contraction, mean over channels and
   contractions; `envelope_shared`: CV of the group-mean envelope ÷ the mean per-channel CV (1 when
   all channels wax and wane together, ≈ 1/√channels when independently).
6. `delay_samples`, `delay_r`: between neighbouring bipolar channels along the fibres, the lag
   (within ±10 samples) of the peak cross-correlation, median |lag| over pairs, and the mean peak r.
7. `rms_ratio`: channel RMS max ÷ min within a group, mean over groups.

Targets. `real` is each statistic in a real monopolar HD-sEMG recording (8 mm 13×5 grid, vastus
lateralis, ~26% MVC; measured for issue 12). The acceptance ranges for synthetic data are issue
12's; they agree with the physiology: a 20–450 Hz sEMG spectrum has its median frequency at
50–120 Hz (Merletti & Farina, *Surface Electromyography*, 2016); surface EMG at low to moderate
force is super-Gaussian (Nazarpour et al. 2013, Brain Res. Bull.); fibre conduction velocity of
3–5 m/s over 8 mm spacing at 2048 Hz is a delay of 3–5 samples. Statistics without an issue-12
range print the real value for reference only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal

from isoprobe.data.datasets import locate
from isoprobe.data.filters import EMG_MODALITIES, FilterConfig, filter_recording
from isoprobe.data.recording import Recording
from isoprobe.errors import DataFormatError

BANDPASS_HZ = (20.0, 450.0)
KURTOSIS_WINDOW_S = 0.5
ENVELOPE_WINDOW_S = 0.1
MAX_LAG = 10
DISTANCE_BINS = (1, 2, 4)  # the last bin is "≥ 4"
REAL = "real HD-sEMG (VL, 8 mm 13×5, ~26% MVC)"
ISSUE = "issue 12 acceptance"


@dataclass(frozen=True)
class Target:
    """What one statistic should be: the real recording's value and, where issue 12 sets one, a range."""

    label: str
    real: float | None
    low: float | None = None
    high: float | None = None
    below: str | None = None  # must also be smaller than this statistic (correlation falling with distance)

    def check(self, values: dict[str, float | None], name: str) -> bool | None:
        """True/False against the acceptance range; None with no range or no value."""
        value = values.get(name)
        if value is None or (self.low is None and self.high is None and self.below is None):
            return None
        if self.below is not None and values.get(self.below) is None and self.low is None and self.high is None:
            return None
        ok = (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        if self.below is not None and values.get(self.below) is not None:
            ok = ok and value < values[self.below]
        return bool(ok)

    def describe(self) -> str:
        parts = []
        if self.low is not None and self.high is not None:
            parts.append(f"{self.low:g}–{self.high:g}")
        elif self.low is not None:
            parts.append(f"≥ {self.low:g}")
        elif self.high is not None:
            parts.append(f"≤ {self.high:g}")
        if self.below is not None:
            parts.append(f"< {self.below}")
        rule = ", ".join(parts) if parts else "reference only"
        return rule + (f" (real {self.real:g})" if self.real is not None else "")

    @property
    def source(self) -> str:
        return ISSUE if (self.low, self.high, self.below) != (None, None, None) else REAL

    def to_dict(self) -> dict:
        return {"label": self.label, "real": self.real, "low": self.low, "high": self.high, "below": self.below,
                "range": self.describe(), "source": self.source, "real_source": REAL}


TARGETS: dict[str, Target] = {
    "corr_d1": Target("neighbour corr d=1 (band-passed)", 0.97, low=0.8),
    "corr_d2": Target("neighbour corr d=2", 0.91, below="corr_d1"),
    "corr_d4": Target("neighbour corr d≥4", 0.69, below="corr_d2"),
    "car_corr_d1": Target("CAR corr d=1", 0.86, low=0.6),
    "car_corr_d2": Target("CAR corr d=2", 0.53),
    "car_corr_d4": Target("CAR corr d≥4", -0.33, high=0.0),
    "pcs_90": Target("PCs for 90% variance", 3, high=8),
    "pcs_95": Target("PCs for 95% variance", 5, high=12),
    "kurtosis_mono": Target("kurtosis monopolar (0.5 s)", 3.6, low=3.4),
    "kurtosis_bipolar": Target("kurtosis bipolar (0.5 s)", 4.6, low=4.0),
    "median_frequency_hz": Target("median frequency (Hz)", 47, low=45, high=120),
    "power_below_20hz": Target("power < 20 Hz (%)", 9.8, low=2, high=15),
    "power_above_450hz": Target("power > 450 Hz (%)", None, high=0.3),
    "envelope_corr": Target("envelope neighbour corr (100 ms)", 0.97),
    "envelope_cv": Target("envelope CV", 0.22, low=0.15, high=0.3),
    "envelope_shared": Target("envelope CV shared (mean-channel ÷ per-channel)", None, low=0.5),
    "delay_samples": Target("bipolar neighbour delay (samples)", 3, low=2, high=5),
    "delay_r": Target("bipolar neighbour peak r", 0.84),
    "rms_ratio": Target("channel RMS max ÷ min", 1.85),
}


@dataclass(frozen=True)
class ElectrodeGroup:
    """Channels recorded together: one HD grid or the DB2 ring.

    channels: [channel] indices into the sEMG modality
    distance: [channel, channel] electrode distance in inter-electrode steps
    bipolar: [pair, 2] (from, to) positions within `channels` whose difference is a bipolar channel
        along the fibres; None when the recorded channels are bipolar already
    fibre_pairs: [pair, 2] positions within the bipolar channels that neighbour along the fibres
    """

    name: str
    channels: np.ndarray
    distance: np.ndarray
    bipolar: np.ndarray | None
    fibre_pairs: np.ndarray


@dataclass
class RealismReport:
    path: str
    dataset: str
    subject: int
    sampling_rate: float
    contractions: int
    steady_seconds: float
    values: dict[str, float | None]
    per_group: dict[str, dict[str, float | None]] = field(default_factory=dict)
    layout: str = "grid"  # "grid": monopolar electrode grids, which the ranges are for; "ring": bipolar sensors

    def verdict(self, name: str) -> bool | None:
        """In range (True/False) for grids; None for a ring of bipolar sensors: the ranges describe
        monopolar HD grids (a bipolar ring's neighbours are meant to correlate less, for one)."""
        return TARGETS[name].check(self.values, name) if self.layout == "grid" else None

    def rows(self) -> list[tuple[str, str, float | None, str, bool | None]]:
        """(name, label, value, target range, in range) for every statistic, in TARGETS order."""
        return [(name, t.label, self.values.get(name), t.describe(), self.verdict(name)) for name, t in TARGETS.items()]

    def to_dict(self) -> dict:
        return {
            "path": self.path, "dataset": self.dataset, "subject": self.subject, "sampling_rate": self.sampling_rate,
            "contractions": self.contractions, "steady_seconds": self.steady_seconds, "layout": self.layout,
            "values": dict(self.values), "per_group": {k: dict(v) for k, v in self.per_group.items()},
            "targets": {name: t.to_dict() | {"in_range": self.verdict(name)} for name, t in TARGETS.items()},
        }


# ---- building blocks (each tested against an independent computation) ----

def steady_intervals(recording: Recording) -> list[tuple[int, int]]:
    """(start, stop) of the middle 50% of every gesture repetition, never across a file join."""
    active = (recording.labels > 0) & (recording.repetitions > 0)
    key = np.where(active, recording.labels * 1000 + recording.repetitions, -1).astype(np.int64)
    change = np.flatnonzero(np.diff(key)) + 1
    bounds = np.union1d(np.union1d(change, recording.segment_starts), [0, recording.n_samples])
    intervals = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if key[start] < 0:
            continue
        quarter = (stop - start) // 4
        if stop - start - 2 * quarter >= 2:
            intervals.append((int(start + quarter), int(stop - quarter)))
    return intervals


def grid_distance(shape: tuple[int, int]) -> np.ndarray:
    """Euclidean electrode distance on a row-major grid: [channel, channel]."""
    rows, cols = np.divmod(np.arange(shape[0] * shape[1]), shape[1])
    return np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])


def ring_distance(n: int) -> np.ndarray:
    """Circular index distance of n sensors around a ring: [channel, channel]."""
    gap = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    return np.minimum(gap, n - gap).astype(float)


def correlation_by_distance(x: np.ndarray, distance: np.ndarray, bins=DISTANCE_BINS) -> dict[int, float]:
    """Mean Pearson r of channel pairs by distance. x: [time, channel]; distance: [channel, channel].
    Bin d holds pairs at exactly d, the last bin pairs at ≥ d. Returns {d: mean r} (NaN for an empty bin)."""
    r = np.corrcoef(x, rowvar=False)
    upper = np.triu(np.ones_like(r, dtype=bool), k=1)
    out = {}
    for i, d in enumerate(bins):
        mask = upper & (np.isclose(distance, d) if i < len(bins) - 1 else distance >= d - 1e-9)
        out[d] = float(r[mask].mean()) if mask.any() else math.nan
    return out


def common_average(x: np.ndarray) -> np.ndarray:
    """Common-average reference: x minus its mean over channels at each sample. [time, channel]."""
    return x - x.mean(axis=1, keepdims=True)


def components_for_variance(x: np.ndarray, fractions=(0.9, 0.95)) -> list[int]:
    """Number of principal components needed for each fraction of the variance. x: [time, channel]."""
    centred = x - x.mean(axis=0)
    eigen = np.clip(np.linalg.eigvalsh(centred.T @ centred), 0, None)[::-1]
    share = np.cumsum(eigen) / eigen.sum()
    return [int(np.searchsorted(share, f - 1e-12) + 1) for f in fractions]


def pearson_kurtosis(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Pearson kurtosis E[(x-μ)^4]/σ^4 (normal = 3) along `axis`."""
    centred = x - x.mean(axis=axis, keepdims=True)
    variance = (centred**2).mean(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred**4).mean(axis=axis) / variance**2


def windows(x: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping windows of `length` samples (a shorter x is one window): [window, time, channel]."""
    count = max(1, x.shape[0] // length)
    size = min(length, x.shape[0])
    return x[: count * size].reshape(count, size, x.shape[1])


def welch_psd(x: np.ndarray, fs: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD with each segment's mean removed: frequencies [freq], power [freq, channel]."""
    return signal.welch(x, fs=fs, nperseg=nperseg, detrend="constant", axis=0)


def median_frequency(freqs: np.ndarray, psd: np.ndarray) -> np.ndarray:
    """Frequency below which half the power lies: [channel] from psd [freq, channel]."""
    cumulative = np.cumsum(psd, axis=0)
    index = (cumulative >= 0.5 * cumulative[-1]).argmax(axis=0)
    return freqs[index]


def band_share(freqs: np.ndarray, psd: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Share of power with frequency < high (or > low): [channel]."""
    mask = np.ones_like(freqs, dtype=bool)
    if high is not None:
        mask &= freqs < high
    if low is not None:
        mask &= freqs > low
    return psd[mask].sum(axis=0) / psd.sum(axis=0)


def rms_envelope(x: np.ndarray, length: int) -> np.ndarray:
    """RMS over non-overlapping windows of `length` samples: [window, channel]."""
    return np.sqrt((windows(x, length) ** 2).mean(axis=1))


def peak_lag(a: np.ndarray, b: np.ndarray, max_lag: int = MAX_LAG) -> tuple[np.ndarray, np.ndarray]:
    """Lag k (|k| ≤ max_lag) maximising corr(a[t], b[t+k]) and that r, for each column.
    a, b: [time, pair]. Returns lag [pair] (positive: b lags a) and r [pair]."""
    n = a.shape[0]
    lags = np.arange(-max_lag, max_lag + 1)
    r = np.empty((len(lags), a.shape[1]))
    for i, k in enumerate(lags):
        x = a[max(0, -k): n - max(0, k)]
        y = b[max(0, k): n - max(0, -k)]
        x = x - x.mean(axis=0)
        y = y - y.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r[i] = (x * y).sum(axis=0) / np.sqrt((x**2).sum(axis=0) * (y**2).sum(axis=0))
    best = np.nanargmax(np.nan_to_num(r, nan=-np.inf), axis=0)
    return lags[best], r[best, np.arange(a.shape[1])]


def rms_ratio(x: np.ndarray) -> float:
    """Channel RMS max ÷ min. x: [time, channel]."""
    rms = np.sqrt((x**2).mean(axis=0))
    return float(rms.max() / rms.min())


# ---- the report ----

def electrode_groups(recording: Recording) -> tuple[str, list[ElectrodeGroup]]:
    """The sEMG modality and its electrode groups (see the module docstring)."""
    modality = next((m for m in EMG_MODALITIES if m in recording.signals), None)
    if modality is None:
        raise DataFormatError(recording.sources[0], f"holds no sEMG modality ({', '.join(EMG_MODALITIES)})")
    grids = recording.grids.get(modality)
    if not grids:
        n = recording.n_channels(modality)
        return modality, [ElectrodeGroup("ring", np.arange(n), ring_distance(n), None, np.empty((0, 2), int))]
    groups = []
    for grid in grids:
        rows, cols = grid.shape
        index = np.arange(rows * cols).reshape(rows, cols)
        bipolar = np.stack([index[:-1].ravel(), index[1:].ravel()], axis=1)  # row r → r+1, along a column
        b_index = np.arange((rows - 1) * cols).reshape(rows - 1, cols)
        fibre = np.stack([b_index[:-1].ravel(), b_index[1:].ravel()], axis=1)
        groups.append(ElectrodeGroup(grid.name, np.asarray(grid.channels), grid_distance(grid.shape), bipolar, fibre))
    return modality, groups


def _nanmean(values) -> float | None:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _group_statistics(raw: list[np.ndarray], passed: list[np.ndarray], group: ElectrodeGroup, fs: float) -> dict:
    """All statistics of one group. raw, passed: per contraction [time, channel], mean removed / band-passed."""
    stats: dict[str, float | None] = {}
    steady = np.concatenate(passed)
    for prefix, x in (("corr", steady), ("car_corr", common_average(steady))):
        for d, r in correlation_by_distance(x, group.distance).items():
            stats[f"{prefix}_d{d}"] = r
    stats["pcs_90"], stats["pcs_95"] = components_for_variance(steady)

    bipolar = [x[:, group.bipolar[:, 1]] - x[:, group.bipolar[:, 0]] for x in raw] if group.bipolar is not None else raw
    k_window = round(KURTOSIS_WINDOW_S * fs)

    def kurt(xs: list[np.ndarray]) -> float:
        return float(np.nanmedian(np.concatenate([pearson_kurtosis(windows(x, k_window), axis=1).ravel() for x in xs])))

    stats["kurtosis_mono"] = kurt(raw) if group.bipolar is not None else None
    stats["kurtosis_bipolar"] = kurt(bipolar)

    # ≈ 4 Hz bins; contractions shorter than one Welch segment are left out (if all are, one shorter segment)
    nperseg = min(2 ** round(math.log2(fs / 4)), max(len(x) for x in raw))
    usable = [x for x in raw if len(x) >= nperseg]
    weights = np.array([len(x) for x in usable], dtype=float)
    psds = [welch_psd(x, fs, nperseg) for x in usable]
    freqs = psds[0][0]
    psd = np.tensordot(weights / weights.sum(), np.stack([p for _, p in psds]), axes=1)
    stats["median_frequency_hz"] = float(np.median(median_frequency(freqs, psd)))
    stats["power_below_20hz"] = 100 * float(np.median(band_share(freqs, psd, high=BANDPASS_HZ[0])))
    stats["power_above_450hz"] = 100 * float(np.median(band_share(freqs, psd, low=BANDPASS_HZ[1])))

    e_window = round(ENVELOPE_WINDOW_S * fs)
    neighbours = np.argwhere(np.triu(np.isclose(group.distance, 1)))
    corr, cv, shared = [], [], []
    for x in raw:
        envelope = rms_envelope(x, e_window)  # [window, channel]
        if envelope.shape[0] < 3:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(envelope, rowvar=False)
            channel_cv = envelope.std(axis=0) / envelope.mean(axis=0)
            mean_envelope = envelope.mean(axis=1)
            corr.append(np.nanmean(r[neighbours[:, 0], neighbours[:, 1]]))
            cv.append(np.nanmean(channel_cv))
            shared.append(mean_envelope.std() / mean_envelope.mean() / np.nanmean(channel_cv))
    stats["envelope_corr"], stats["envelope_cv"], stats["envelope_shared"] = _nanmean(corr), _nanmean(cv), _nanmean(shared)

    if group.bipolar is not None and len(group.fibre_pairs):
        lags, peaks, lengths = [], [], []
        for b in bipolar:
            if len(b) > 4 * MAX_LAG:
                lag, r = peak_lag(b[:, group.fibre_pairs[:, 0]], b[:, group.fibre_pairs[:, 1]])
                lags.append(lag), peaks.append(r), lengths.append(len(b))
        if lags:
            stats["delay_samples"] = float(np.median(np.abs(np.concatenate(lags))))
            stats["delay_signed"] = float(np.median(np.concatenate(lags)))
            stats["delay_r"] = float(np.nanmean(np.concatenate(peaks)))
    stats.setdefault("delay_samples", None), stats.setdefault("delay_signed", None), stats.setdefault("delay_r", None)
    stats["rms_ratio"] = rms_ratio(np.concatenate(raw))
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in stats.items()}


def measure(recording: Recording, path: str = "") -> RealismReport:
    """Every statistic of one subject's recording (see the module docstring)."""
    intervals = steady_intervals(recording)
    if not intervals:
        raise DataFormatError(recording.sources[0], "has no gesture repetitions (every sample is rest)")
    modality, groups = electrode_groups(recording)
    passed_recording = filter_recording(recording, FilterConfig(bandpass_hz=BANDPASS_HZ))
    emg = recording.signals[modality].astype(np.float64)
    emg_passed = passed_recording.signals[modality].astype(np.float64)
    fs = recording.sampling_rate
    per_group = {}
    for group in groups:
        raw = [emg[a:b][:, group.channels] for a, b in intervals]
        raw = [x - x.mean(axis=0) for x in raw]
        passed = [emg_passed[a:b][:, group.channels] for a, b in intervals]
        per_group[group.name] = _group_statistics(raw, passed, group, fs)
    values = {}
    for name in next(iter(per_group.values())):
        numbers = [g[name] for g in per_group.values()]
        if name.startswith("pcs_"):  # the worst grid: the acceptance is an upper bound
            present = [n for n in numbers if n is not None]
            values[name] = float(max(present)) if present else None
        else:
            values[name] = _nanmean(numbers)
    return RealismReport(path, recording.dataset, recording.subject, fs, len(intervals),
                         sum(b - a for a, b in intervals) / fs, values, per_group,
                         "ring" if groups[0].bipolar is None else "grid")


def measure_folder(path: Path, subject: int = 1, dataset: str | None = None) -> RealismReport:
    """Load one subject from a data folder (layout detected from file names unless `dataset`) and measure it."""
    path = Path(path)
    dataset, spec, folder, found = locate(path, dataset)
    if subject not in found:
        raise DataFormatError(path, f"has no {dataset} recording of subject {subject} "
                                    f"(subjects found: {', '.join(map(str, found)) or 'none'})")
    recording = spec.load(path if path.is_file() else folder, subject, (1, 2, 3))
    return measure(recording, str(path))
