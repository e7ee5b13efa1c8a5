"""Surface EMG from motor units (issue 12): the synthetic generator's sEMG model.

A muscle region holds a few dozen motor units. Each gesture sets every region's activation; the
region's excitation (activation × the repetition's effort × a slowly fluctuating common drive)
recruits a unit once it passes the unit's threshold and drives its firing rate from 8 Hz up to
its peak (25–35 Hz), with physiological inter-spike variability. Every discharge sends an action
potential to every electrode:

- a *propagating* part: a biphasic wave travelling along the fibres (the grid's row axis), so it
  reaches row r a conduction delay later than row r−1 (4–5.5 m/s over 8 mm: 3–4 samples), with
  an amplitude that falls off over 2–4 electrode spacings across the fibres;
- a *standing* part (fibre-end and far-field potentials): monophasic, spatially broader and
  simultaneous on every row, so it vanishes in a bipolar derivation along the fibres.

Unit amplitudes follow the size principle (100-fold from the first-recruited to the last, with
lognormal scatter), so a few large units dominate each electrode and the signal is super-Gaussian
as real sEMG is at moderate force. On top: a common-mode signal shared by all electrodes of a
grid, 50 Hz mains, independent amplifier noise (about 7% of a moderate contraction's RMS) and the
amplifier's 10–500 Hz band. NinaPro DB2's 12 sensors are bipolar: the standing part and the common
mode cancel in them, and each sees the units under it and, more weakly, its neighbours' (crosstalk).

The unit pool is drawn once per subject; spike trains per block of the protocol. Everything is
vectorised over samples, units and channels: the discharges are one sparse [time, unit] matrix,
and the waveforms, conduction delays, noise and amplifier band are applied as spectra, with one
inverse FFT per block. The constants below were tuned against `isoprobe data realism` (its
targets and sources are in `isoprobe/data/realism.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import fft, signal, sparse

from isoprobe.data.synth.signals import Segment, activation, slow_noise

MIN_RATE_HZ = 8.0
PEAK_RATE_HZ = (25.0, 35.0)
RATE_RISE = 0.8  # excitation above threshold at which a unit reaches its peak rate
ISI_JITTER = 0.12  # spike-time jitter as a fraction of the inter-spike interval
RATE_STEP = 8  # samples per step of the firing-rate integration (4 ms at 2 kHz)
UNITS_PER_REGION = 24
RECRUITMENT_SKEW = 0.5  # > 0: thresholds crowd at low excitation
SIZE_RANGE = 100.0  # amplitude of the last-recruited unit ÷ the first's (the size principle)
SIZE_JITTER = 0.7  # lognormal σ of a unit's amplitude about the size principle: a few large units dominate
DRIVE_CV = 0.09  # slow common-drive fluctuation shared by all units of a subject (≤ 1.5 Hz)
REGION_DRIVE_CV = 0.03  # and each region's own
WAVE_WIDTH_S = 2.8e-3  # Hermite–Rodriguez λ of the action potentials
STANDING_FRACTION = 0.8  # standing-part amplitude relative to the propagating part's
STANDING_WIDTH = 1.0  # its duration relative to the propagating wave's
STANDING_SPREAD = 1.5  # its spatial decay across the fibres relative to the propagating part's
ELECTRODE_SPACING_M = 8e-3
CROSSTALK_SPREAD = (0.5, 0.9)  # DB2: decay of a unit's amplitude around the forearm, in sensor spacings
REFERENCE_EXCITATION = 0.5
NOISE_FRACTION = 0.07  # amplifier noise, relative to the RMS of a contraction at REFERENCE_EXCITATION
COMMON_MODE_FRACTION = 0.15
COMMON_MODE_CUTOFF_HZ = 40.0
MAINS_FRACTION = 0.03
AMPLIFIER_BAND_HZ = (10.0, 500.0)


@dataclass(frozen=True)
class MotorUnitPool:
    """The motor units under one electrode layout and how each reaches every channel.

    region:     [unit] int, the muscle region whose activation drives the unit
    threshold:  [unit] excitation at which the unit is recruited (0–1)
    peak_rate:  [unit] Hz
    weights:    [unit, channel] amplitude of the propagating part at each channel
    standing_weights: [unit, channel] amplitude of the standing part (zeros for bipolar sensors)
    onset:      [unit] int, samples from a discharge to the propagating wave's arrival at row 0
    row_delay:  [channel] samples by which the propagating wave reaches this channel after row 0
                (fractional: applied as a phase shift)
    propagating, standing: [length] unit-energy waveforms, centred
    grids:      [channel] int, the grid (common-mode group) of each channel; -1: bipolar, no common mode
    scale:      normalisation: every region at REFERENCE_EXCITATION gives a mean square of 1 per channel
    """

    region: np.ndarray
    threshold: np.ndarray
    peak_rate: np.ndarray
    weights: np.ndarray
    standing_weights: np.ndarray
    onset: np.ndarray
    row_delay: np.ndarray
    propagating: np.ndarray
    standing: np.ndarray
    grids: np.ndarray
    n_regions: int
    scale: float = 1.0

    @property
    def n_units(self) -> int:
        return len(self.region)

    @property
    def n_channels(self) -> int:
        return self.weights.shape[1]


def hermite_rodriguez(order: int, width_s: float, fs: float) -> np.ndarray:
    """Hermite–Rodriguez action-potential shape of `order` (0 monophasic, 1 biphasic, 2 triphasic),
    width λ, sampled over ±4λ and scaled to unit energy: [length]."""
    half = int(np.ceil(4 * width_s * fs))
    t = np.arange(-half, half + 1) / fs / width_s
    shape = {0: np.ones_like(t), 1: t, 2: 1 - 2 * t**2}[order] * np.exp(-(t**2))
    return shape / np.sqrt((shape**2).sum())


def _recruitment(rng: np.random.Generator, n_units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (many small low-threshold units, few large late ones), sizes growing with threshold
    (the size principle) and peak rates, in random unit order: each [unit]."""
    rank = rng.random(n_units)
    threshold = 0.02 + 0.7 * (np.exp(RECRUITMENT_SKEW * rank) - 1) / (np.exp(RECRUITMENT_SKEW) - 1)
    size = np.exp(np.log(SIZE_RANGE) * rank) * rng.lognormal(0.0, SIZE_JITTER, n_units)
    return threshold, size, rng.uniform(*PEAK_RATE_HZ, n_units)


def grid_pool(rng: np.random.Generator, fs: float, n_grids: int = 2, shape: tuple[int, int] = (8, 8),
              regions_per_grid: int = 8, units_per_region: int = UNITS_PER_REGION) -> MotorUnitPool:
    """Monopolar electrode grids over muscles whose fibres run along the grid rows. Channels are
    grid-major, row-major within a grid (the HD-sEMG 65 layout)."""
    rows, cols = shape
    per_grid = rows * cols
    n_regions = n_grids * regions_per_grid
    n_units = n_regions * units_per_region
    region = np.repeat(np.arange(n_regions), units_per_region)
    threshold, size, peak_rate = _recruitment(rng, n_units)
    # region centres tile each grid (a jittered 2 × regions_per_grid/2 layout, in random order); units scatter around them
    slots = np.stack(np.meshgrid(np.arange(2), np.arange(regions_per_grid // 2), indexing="ij"), -1).reshape(-1, 2)
    slot = np.concatenate([rng.permutation(len(slots)) for _ in range(n_grids)])
    centre_r = (slots[slot, 0] + 0.5) * rows / 2 - 0.5 + rng.uniform(-1.0, 1.0, n_regions)
    centre_c = (slots[slot, 1] + 0.5) * cols / (regions_per_grid // 2) - 0.5 + rng.uniform(-0.5, 0.5, n_regions)
    unit_r = centre_r[region] + rng.normal(0, 0.8, n_units)
    unit_c = centre_c[region] + rng.normal(0, 0.8, n_units)
    spread_c = rng.uniform(2.0, 4.0, n_units)[:, None]  # decay across the fibres, in electrode spacings
    spread_r = rng.uniform(3.0, 5.0, n_units)[:, None]  # fibre length under the grid
    r = np.tile(np.repeat(np.arange(rows), cols), n_grids).astype(float)
    c = np.tile(np.tile(np.arange(cols), rows), n_grids).astype(float)
    grids = np.repeat(np.arange(n_grids), per_grid)
    own = (region // regions_per_grid)[:, None] == grids[None]  # a unit reaches its own grid's electrodes only
    across = np.exp(-((c - unit_c[:, None]) ** 2) / (2 * spread_c**2))
    along = np.exp(-((r - unit_r[:, None]) ** 2) / (2 * spread_r**2))
    weights = own * size[:, None] * across * along
    broad = np.exp(-((c - unit_c[:, None]) ** 2) / (2 * (STANDING_SPREAD * spread_c) ** 2))
    standing_weights = own * STANDING_FRACTION * size[:, None] * broad
    # One conduction velocity per grid (4–5.5 m/s); innervation zones above row 0, so waves run towards row 7.
    samples_per_row = ELECTRODE_SPACING_M / rng.uniform(4.0, 5.5, n_grids) * fs
    onset = np.rint(rng.uniform(0.5, 2.5, n_units) * samples_per_row[region // regions_per_grid]).astype(np.int64)
    row_delay = r * samples_per_row[grids]
    propagating = hermite_rodriguez(1, WAVE_WIDTH_S, fs)
    standing = hermite_rodriguez(0, STANDING_WIDTH * WAVE_WIDTH_S, fs)
    pool = MotorUnitPool(region, threshold, peak_rate, weights, standing_weights, onset, row_delay, propagating, standing,
                         grids, n_regions)
    return _normalised(pool, fs)


def ring_pool(rng: np.random.Generator, fs: float, n_sensors: int = 12, n_regions: int = 12,
              units_per_region: int = UNITS_PER_REGION) -> MotorUnitPool:
    """Bipolar sensors around the forearm (NinaPro DB2): each sees the units beneath it and, through
    the tissue, its neighbours' (crosstalk decaying over about one sensor spacing)."""
    n_units = n_regions * units_per_region
    region = np.repeat(np.arange(n_regions), units_per_region)
    threshold, size, peak_rate = _recruitment(rng, n_units)
    # muscles spread evenly around the forearm (angular position in sensor spacings), in random order
    centre = (rng.permutation(n_regions) + rng.uniform(-0.3, 0.3, n_regions)) * n_sensors / n_regions
    position = centre[region] + rng.normal(0, 0.3, n_units)
    spread = rng.uniform(*CROSSTALK_SPREAD, n_units)
    gap = np.abs(np.arange(n_sensors)[None] - position[:, None]) % n_sensors
    gap = np.minimum(gap, n_sensors - gap)
    weights = size[:, None] * np.exp(-(gap**2) / (2 * spread[:, None] ** 2))
    pool = MotorUnitPool(region, threshold, peak_rate, weights, np.zeros_like(weights), np.zeros(n_units, dtype=np.int64),
                         np.zeros(n_sensors), hermite_rodriguez(2, WAVE_WIDTH_S, fs), hermite_rodriguez(0, WAVE_WIDTH_S, fs),
                         np.full(n_sensors, -1), n_regions)
    return _normalised(pool, fs)


def firing_rate(excitation: np.ndarray, threshold: np.ndarray, peak_rate: np.ndarray) -> np.ndarray:
    """Discharge rate in Hz: 0 below threshold, MIN_RATE_HZ at it, rising linearly to the peak rate
    RATE_RISE above it. excitation: [..., unit]; returns the same shape, float32."""
    above = (excitation - threshold).astype(np.float32)
    rate = MIN_RATE_HZ + (peak_rate - MIN_RATE_HZ).astype(np.float32) * np.clip(above / np.float32(RATE_RISE), 0.0, 1.0)
    return np.where(above > 0, rate, np.float32(0.0))


def _normalised(pool: MotorUnitPool, fs: float) -> MotorUnitPool:
    """Set `scale` so that every region at REFERENCE_EXCITATION gives a mean square of 1 per channel
    (mean over channels; rate × waveform energy, the mean square of a train of non-overlapping units)."""
    rate = firing_rate(np.full(pool.n_units, REFERENCE_EXCITATION), pool.threshold, pool.peak_rate)
    power = (rate[:, None] / fs * (pool.weights**2 + pool.standing_weights**2)).sum(axis=0)
    return replace(pool, scale=float(1.0 / np.sqrt(power.mean())))


def spike_trains(rng: np.random.Generator, excitation: np.ndarray, pool: MotorUnitPool, fs: float,
                 step: int = RATE_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Discharges of every unit for excitation [time, region]: (sample index [spike], unit [spike]).

    A unit integrates its rate from a random phase and fires at each whole cycle; each discharge is
    then jittered by ISI_JITTER of the interval, for inter-spike variability of about 15%. The rate
    changes slowly (the excitation is smooth), so it is integrated on a grid of `step` samples
    (≤ 0.15 cycles per step) and each crossing placed within its step by linear interpolation."""
    n_samples = excitation.shape[0]
    coarse = excitation[::step]  # [coarse time, region]
    rate = firing_rate(coarse[:, pool.region], pool.threshold, pool.peak_rate)  # [coarse time, unit]
    phase = np.empty((len(coarse) + 1, pool.n_units), dtype=np.float64)
    phase[0] = rng.random(pool.n_units)
    np.cumsum(rate * (step / fs), axis=0, out=phase[1:])
    phase[1:] += phase[0]
    before, after = phase[:-1], phase[1:]
    steps, units = np.nonzero(np.floor(after) > np.floor(before))
    crossing = np.ceil(before[steps, units])
    fraction = (crossing - before[steps, units]) / (after[steps, units] - before[steps, units])
    interval = fs / np.maximum(rate[steps, units], MIN_RATE_HZ)
    times = (steps + fraction) * step + rng.normal(0.0, ISI_JITTER, len(steps)) * interval
    times = np.rint(times).astype(np.int64)
    keep = (times >= 0) & (times < n_samples)
    order = np.argsort(times[keep], kind="stable")
    return times[keep][order], units[keep][order]


def _centred_spectrum(waveform: np.ndarray, n_fft: int) -> np.ndarray:
    """rfft of a centred waveform with its centre moved to sample 0: [freq] complex."""
    padded = np.zeros(n_fft, dtype=np.float32)
    padded[: len(waveform)] = waveform
    return fft.rfft(np.roll(padded, -(len(waveform) // 2)))


def potentials_spectrum(times: np.ndarray, units: np.ndarray, pool: MotorUnitPool, n_fft: int, fs: float) -> np.ndarray:
    """Spectrum of the summed action potentials at every channel: [freq, channel] complex (rfft, n_fft).

    The discharges are one sparse [time, unit] matrix; times the weights it gives each channel's
    impulse train, which the waveform's spectrum shapes. The propagating part reaches each row a
    `row_delay` later: a phase ramp, exact for fractional delays."""
    rows = times + pool.onset[units]
    trains = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, units)), shape=(n_fft, pool.n_units))
    freqs = fft.rfftfreq(n_fft, 1.0 / fs)
    moving = fft.rfft(np.asarray(trains @ pool.weights.astype(np.float32)), axis=0, workers=-1)
    delays, row = np.unique(pool.row_delay, return_inverse=True)  # one phase ramp per grid row
    ramps = np.exp(-2j * np.pi * freqs[:, None] * (delays[None] / fs)).astype(np.complex64)
    ramps *= _centred_spectrum(pool.propagating, n_fft)[:, None] * np.float32(pool.scale)
    moving *= ramps[:, np.asarray(row).reshape(-1)]
    if pool.standing_weights.any():
        standing = fft.rfft(np.asarray(trains @ pool.standing_weights.astype(np.float32)), axis=0, workers=-1)
        standing *= _centred_spectrum(pool.standing, n_fft)[:, None] * np.float32(pool.scale)
        moving += standing
    return moving


def excitation(rng: np.random.Generator, segments: list[Segment], patterns: dict[tuple[int, int], np.ndarray],
               n_samples: int, fs: float) -> np.ndarray:
    """Each region's excitation: gesture activation ramp × the gesture's region map × the repetition's
    effort × (1 + slow common drive + slow regional drive). Returns [time, region] float32."""
    n_regions = len(next(iter(patterns.values())))
    level = np.zeros((n_samples, n_regions), dtype=np.float32)
    ramp = activation(segments, n_samples, fs)
    for seg in segments:
        if seg.label != 0:
            level[seg.start : seg.stop] = patterns[(seg.label, seg.variant)] * seg.effort
    drive = 1.0 + DRIVE_CV * slow_noise(rng, n_samples, 1, fs, 1.5) + REGION_DRIVE_CV * slow_noise(rng, n_samples, n_regions, fs, 1.5)
    return (ramp[:, None] * level * drive).astype(np.float32)


def semg(rng: np.random.Generator, segments: list[Segment], patterns: dict[tuple[int, int], np.ndarray], pool: MotorUnitPool,
         n_samples: int, fs: float, amplitude_v: float) -> np.ndarray:
    """Surface EMG in volts for one block of the protocol: [time, channel] float32.

    patterns: (label, variant) -> [region] activation map. Potentials, common mode and noise are summed
    as spectra and pass the amplifier's band there: one inverse FFT per block."""
    drive = excitation(rng, segments, patterns, n_samples, fs)
    times, units = spike_trains(rng, drive, pool, fs)
    n_fft = fft.next_fast_len(n_samples + int(pool.onset.max()) + int(np.ceil(pool.row_delay.max())) + len(pool.propagating))
    spectrum = potentials_spectrum(times, units, pool, n_fft, fs)
    n_freqs = spectrum.shape[0]
    freqs = fft.rfftfreq(n_fft, 1.0 / fs)

    def white(width: int) -> np.ndarray:  # the rfft of unit-variance white noise of n_fft samples
        parts = rng.standard_normal((2, n_freqs, width), dtype=np.float32) * np.float32(np.sqrt(n_fft / 2))
        return parts[0] + 1j * parts[1]

    spectrum += np.float32(NOISE_FRACTION) * white(pool.n_channels)
    for g in (g for g in np.unique(pool.grids) if g >= 0):  # a monopolar grid's shared reference picks up common mode
        low = 1.0 / np.sqrt(1.0 + (freqs / COMMON_MODE_CUTOFF_HZ) ** 4)  # 2nd-order low-pass magnitude
        common = white(1)[:, 0] * low / np.sqrt((low**2).mean())
        spectrum[:, pool.grids == g] += (COMMON_MODE_FRACTION * common[:, None]).astype(np.complex64)
    band = signal.butter(2, [AMPLIFIER_BAND_HZ[0], min(AMPLIFIER_BAND_HZ[1], 0.45 * fs)], btype="band", fs=fs, output="sos")
    spectrum *= signal.sosfreqz(band, worN=freqs, fs=fs)[1].astype(np.complex64)[:, None]
    x = fft.irfft(spectrum, n=n_fft, axis=0, workers=-1)[:n_samples]
    # 50 Hz mains: mostly common to a grid's reference; bipolar sensors reject most of it
    t = np.arange(n_samples) / fs
    phase = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.3, pool.n_channels)
    level = MAINS_FRACTION * (1.0 if (pool.grids >= 0).any() else 0.3)
    carrier = np.stack([np.sin(2 * np.pi * 50.0 * t), np.cos(2 * np.pi * 50.0 * t)], axis=1).astype(np.float32)
    x += carrier @ (level * np.stack([np.cos(phase), np.sin(phase)])).astype(np.float32)
    x *= np.float32(amplitude_v)
    return x
