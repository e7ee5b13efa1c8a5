"""Windows, filters, z-scores, the prepare pipeline, its cache and tokens (DESIGN §2.4).

Each numerical step is checked against an independent reference written here: naive Python loops
for windows and tokens, scipy applied segment by segment for the filters, float64 numpy for z-scores.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import signal

import isoprobe.data.pipeline as pipeline
from isoprobe.data import cache, ninapro, windows as windows_module
from isoprobe.data.cache import cache_key, load_or_build
from isoprobe.data.datasets import DATASETS
from isoprobe.data.filters import EMG_MODALITIES, FilterConfig, filter_recording
from isoprobe.data.modalities import ModalityGroup
from isoprobe.data.normalise import ZScore
from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.data.recording import Grid, Recording
from isoprobe.data.tokens import TokenConfig, patchify, token_modalities
from isoprobe.data.windows import WindowConfig, cut, split_repetitions, window_starts
from isoprobe.errors import ConfigError, DataFormatError

# ---------------------------------------------------------------------------------------------
# Hand-built recordings and naive references
# ---------------------------------------------------------------------------------------------

# (length, label, repetition) runs. Segment 0 is samples 0–59, segment 1 is 60–96. Offsets:
#   0–5 rest | 6–19 label 3 rep 1 | 20–29 label 3 rep 2 (repetition changes, label does not)
#   30–34 rest | 35–46 label 4 rep 1 | 47–59 label 5 rep 1 || 60–70 label 5 rep 1 (same run across the
#   file join) | 71–77 rest | 78–92 label 4 rep 2 | 93–96 rest
TOY_RUNS = [(6, 0, 0), (14, 3, 1), (10, 3, 2), (5, 0, 0), (12, 4, 1), (13, 5, 1),
            (11, 5, 1), (7, 0, 0), (15, 4, 2), (4, 0, 0)]
TOY_JOIN = 60


def make_recording(runs, segment_starts=(0,), fs: float = 1000.0, channels: int = 3) -> Recording:
    labels = np.concatenate([np.full(n, label, dtype=np.int32) for n, label, _ in runs])
    reps = np.concatenate([np.full(n, rep, dtype=np.int32) for n, _, rep in runs])
    n = len(labels)
    # Every sample distinct, so a window cut at the wrong place cannot match by accident.
    emg = (np.arange(n)[:, None] * 10 + np.arange(channels)[None, :]).astype(np.float32)
    acc = -emg[:, :2] - 0.5
    k = len(segment_starts)
    return Recording(
        dataset="ninapro-db2", subject=1, sampling_rate=fs, signals={"emg": emg, "acc": acc},
        labels=labels, repetitions=reps, sources=tuple(Path(f"f{i}.mat") for i in range(k)),
        exercises=tuple(range(1, k + 1)), segment_starts=tuple(segment_starts),
    )


def toy_recording(joined: bool = True) -> Recording:
    return make_recording(TOY_RUNS, (0, TOY_JOIN) if joined else (0,))


def naive_starts(labels, reps, segment_starts, window: int, stride: int, keep_rest: bool) -> list[int]:
    """Every window start, checked one by one: label, repetition and file constant; rest optional."""
    n = len(labels)
    segment = [sum(1 for s in segment_starts if s <= t) for t in range(n)]
    kept = []
    for start in range(0, n - window + 1, stride):
        span = range(start, start + window)
        if len({int(labels[t]) for t in span}) != 1:
            continue
        if len({int(reps[t]) for t in span}) != 1:
            continue
        if len({segment[t] for t in span}) != 1:
            continue
        if labels[start] == 0 and not keep_rest:
            continue
        kept.append(start)
    return kept


def random_recording(seed: int) -> Recording:
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(int(rng.integers(8, 20))):
        label = int(rng.choice([0, 0, 1, 2, 7]))
        runs.append((int(rng.integers(1, 30)), label, 0 if label == 0 else int(rng.integers(1, 4))))
    n = sum(r[0] for r in runs)
    joins = sorted(set(rng.integers(1, n, size=int(rng.integers(0, 4))).tolist()))
    return make_recording(runs, (0, *joins))


# ---------------------------------------------------------------------------------------------
# window_starts and cut
# ---------------------------------------------------------------------------------------------


def test_window_starts_known_answer_on_the_toy_recording():
    # Worked out by hand from the run table above (window 10, stride 1, rest dropped).
    expected = [*range(6, 11), 20, *range(35, 38), *range(47, 51), 60, 61, *range(78, 84)]
    starts = window_starts(toy_recording(), 10, 1, keep_rest=False)
    assert starts.dtype == np.int64
    assert starts.tolist() == expected


def test_window_across_the_file_join_is_dropped_only_because_of_the_join():
    # Label 5 rep 1 runs from 47 to 70 without interruption, but samples 60+ come from another file.
    joined = window_starts(toy_recording(joined=True), 10, 1, keep_rest=False).tolist()
    single = window_starts(toy_recording(joined=False), 10, 1, keep_rest=False).tolist()
    straddling = [s for s in range(51, 60)]  # windows that would include samples on both sides of 60
    assert set(straddling) <= set(single)
    assert not set(straddling) & set(joined)
    assert set(single) - set(joined) == set(straddling)


def test_window_across_a_repetition_change_with_the_same_label_is_dropped():
    starts = window_starts(toy_recording(), 10, 1, keep_rest=False).tolist()
    # Label 3 spans 6–29, repetition changes at 20: starts 11–19 would straddle it.
    assert not set(range(11, 20)) & set(starts)
    assert 10 in starts and 20 in starts


def test_keep_rest_adds_exactly_the_rest_windows():
    recording = toy_recording()
    dropped = window_starts(recording, 4, 1, keep_rest=False).tolist()
    kept = window_starts(recording, 4, 1, keep_rest=True).tolist()
    rest = sorted(set(kept) - set(dropped))
    assert rest == [0, 1, 2, 30, 31, 71, 72, 73, 74, 93]
    assert set(dropped) <= set(kept)
    assert all(recording.labels[s] == 0 for s in rest)
    assert all(recording.labels[s] != 0 for s in dropped)


@pytest.mark.parametrize("window,stride", [(1, 1), (4, 1), (5, 3), (10, 2), (7, 7), (13, 4), (200, 1)])
@pytest.mark.parametrize("keep_rest", [False, True])
def test_window_starts_match_the_naive_loop_on_the_toy(window, stride, keep_rest):
    recording = toy_recording()
    expected = naive_starts(recording.labels, recording.repetitions, recording.segment_starts, window, stride, keep_rest)
    assert window_starts(recording, window, stride, keep_rest).tolist() == expected


@pytest.mark.parametrize("seed", range(12))
def test_window_starts_match_the_naive_loop_on_random_recordings(seed):
    recording = random_recording(seed)
    rng = np.random.default_rng(100 + seed)
    for _ in range(4):
        window, stride, keep_rest = int(rng.integers(1, 25)), int(rng.integers(1, 9)), bool(rng.integers(2))
        expected = naive_starts(recording.labels, recording.repetitions, recording.segment_starts,
                                window, stride, keep_rest)
        got = window_starts(recording, window, stride, keep_rest).tolist()
        assert got == expected, (seed, window, stride, keep_rest)


def test_cut_matches_slicing_and_fills_a_preallocated_array(monkeypatch):
    monkeypatch.setattr(windows_module, "_CHUNK", 4)  # several chunks even for a handful of windows
    recording = toy_recording()
    starts = window_starts(recording, 5, 1, keep_rest=True)
    assert len(starts) > 3 * 4
    for name, values in recording.signals.items():
        expected = np.stack([values[s : s + 5] for s in starts])
        returned = cut(values, starts, 5)
        assert returned.shape == (len(starts), 5, values.shape[1]) and returned.dtype == values.dtype
        np.testing.assert_array_equal(returned, expected)
        out = np.full((len(starts), 5, values.shape[1]), np.nan, dtype=np.float32)
        assert cut(values, starts, 5, out=out) is out
        np.testing.assert_array_equal(out, returned)


def test_cut_into_a_memory_mapped_file(tmp_path):
    recording = toy_recording()
    starts = window_starts(recording, 6, 2, keep_rest=False)
    values = recording.signals["emg"]
    out = np.lib.format.open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.float32, shape=(len(starts), 6, 3))
    cut(values, starts, 6, out=out)
    out.flush()
    del out
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), cut(values, starts, 6))


def test_window_labels_are_constant_inside_each_cut_window():
    recording = random_recording(3)
    starts = window_starts(recording, 6, 1, keep_rest=True)
    label_windows = cut(recording.labels[:, None], starts, 6)[..., 0]
    assert (label_windows == label_windows[:, :1]).all()


# ---------------------------------------------------------------------------------------------
# split_repetitions and WindowConfig
# ---------------------------------------------------------------------------------------------


def test_split_repetitions_rest_takes_the_previous_repetition_and_leading_rest_the_first():
    reps = np.array([0, 0, 1, 1, 0, 0, 2, 2, 2, 0, 3, 0, 0])
    before = reps.copy()
    assert split_repetitions(reps).tolist() == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3]
    np.testing.assert_array_equal(reps, before)  # the input is not modified


def test_split_repetitions_matches_a_loop_and_handles_all_rest():
    rng = np.random.default_rng(0)
    reps = np.repeat(rng.choice([0, 1, 2, 3, 4, 5, 6], size=40), rng.integers(1, 6, size=40))
    reps[:3] = 0
    reps[3] = 1  # the first repetition in time is also the lowest, as in every real recording
    first = 1
    expected, current = [], first
    for r in reps:
        current = r if r > 0 else current
        expected.append(current)
    assert split_repetitions(reps).tolist() == expected
    assert split_repetitions(np.zeros(5, dtype=int)).tolist() == [0] * 5


def test_window_config_samples_at_2000_and_2048_hz():
    config = WindowConfig()  # 200 ms windows, 100 ms stride
    assert config.samples(2000.0) == (400, 200)
    assert config.samples(2048.0) == (410, 205)  # 409.6 and 204.8 samples, rounded
    assert WindowConfig(window_ms=0.1, stride_ms=0.1).samples(2000.0) == (1, 1)  # never zero samples


@pytest.mark.parametrize("kwargs,option", [({"window_ms": 0}, "window_ms"), ({"window_ms": -5}, "window_ms"),
                                           ({"stride_ms": 0}, "stride_ms")])
def test_window_config_rejects_bad_lengths(kwargs, option):
    with pytest.raises(ConfigError) as info:
        WindowConfig(**kwargs)
    assert info.value.option == option and option in str(info.value)


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------

FS = 2000.0
N_FILTER = 8000  # 4 s; amplitudes are measured on the middle 2 s, away from edge transients
MIDDLE = slice(2000, 6000)


def sine(freq: float, n: int = N_FILTER, fs: float = FS) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / fs)


def signal_recording(emg: np.ndarray, acc: np.ndarray, segment_starts=(0,), fs: float = FS) -> Recording:
    n = len(emg)
    k = len(segment_starts)
    return Recording(
        dataset="ninapro-db2", subject=1, sampling_rate=fs,
        signals={"emg": emg.astype(np.float32), "acc": acc.astype(np.float32)},
        labels=np.ones(n, dtype=np.int32), repetitions=np.ones(n, dtype=np.int32),
        sources=tuple(Path(f"f{i}.mat") for i in range(k)), exercises=tuple(range(1, k + 1)),
        segment_starts=tuple(segment_starts),
    )


def gain(filtered: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean(filtered[MIDDLE] ** 2) / np.mean(reference[MIDDLE] ** 2)))


def reference_sections(fs: float, bandpass=None, notch=None) -> np.ndarray:
    """The filter chain built here from scipy: 4th-order Butterworth band-pass (2 poles per edge) and notch."""
    parts = []
    if bandpass:
        parts.append(signal.butter(2, bandpass, btype="bandpass", fs=fs, output="sos"))
    if notch:
        parts.append(signal.tf2sos(*signal.iirnotch(notch, 30.0, fs=fs)))
    return np.vstack(parts)


def test_bandpass_attenuates_out_of_band_sines_and_passes_100_hz():
    emg = np.stack([sine(5), sine(100), sine(800), sine(20), sine(450)], axis=1)
    recording = signal_recording(emg, emg[:, :2])
    out = filter_recording(recording, FilterConfig(bandpass_hz=(20, 450))).signals["emg"]
    assert gain(out[:, 0], emg[:, 0]) < 0.01  # 5 Hz: over 40 dB down
    assert abs(gain(out[:, 1], emg[:, 1]) - 1) < 0.01  # 100 Hz passes
    assert gain(out[:, 2], emg[:, 2]) < 0.02  # 800 Hz: over 34 dB down
    # Butterworth corners are -3 dB per pass; forward-backward filtering squares that to a gain of 1/2.
    assert gain(out[:, 3], emg[:, 3]) == pytest.approx(0.5, abs=0.01)
    assert gain(out[:, 4], emg[:, 4]) == pytest.approx(0.5, abs=0.01)


def test_notch_removes_mains_and_keeps_100_hz():
    emg = np.stack([sine(50), sine(100)], axis=1)
    out = filter_recording(signal_recording(emg, emg), FilterConfig(notch_hz=50)).signals["emg"]
    assert gain(out[:, 0], emg[:, 0]) < 0.01
    assert gain(out[:, 1], emg[:, 1]) > 0.99


def test_only_emg_modalities_are_filtered_and_the_input_is_not_changed():
    assert set(EMG_MODALITIES) == {"emg", "hdsemg"}
    rng = np.random.default_rng(0)
    emg = rng.normal(size=(N_FILTER, 2)) + sine(5)[:, None]
    acc = sine(5)[:, None] * np.ones((1, 3))  # slow content that a band-pass would remove
    recording = signal_recording(emg, acc)
    emg_before, acc_before = recording.signals["emg"].copy(), recording.signals["acc"].copy()
    filtered = filter_recording(recording, FilterConfig(bandpass_hz=(20, 450), notch_hz=50))
    np.testing.assert_array_equal(filtered.signals["acc"], acc_before)
    assert not np.allclose(filtered.signals["emg"], emg_before, atol=0.1)
    assert filtered.signals["emg"].dtype == np.float32 and filtered.signals["emg"].shape == emg.shape
    np.testing.assert_array_equal(recording.signals["emg"], emg_before)  # a copy, not in place
    np.testing.assert_array_equal(filtered.labels, recording.labels)
    # An inactive configuration leaves the recording as it is.
    assert filter_recording(recording, FilterConfig()) is recording


def test_hdsemg_is_filtered_and_force_is_not():
    emg = np.stack([sine(5), sine(100)], axis=1)
    recording = Recording(
        dataset="hdsemg65", subject=1, sampling_rate=2048.0,
        signals={"hdsemg": emg.astype(np.float32), "force": emg.astype(np.float32)},
        labels=np.ones(N_FILTER, dtype=np.int32), repetitions=np.ones(N_FILTER, dtype=np.int32),
        sources=(Path("s1.mat"),), exercises=(1,),
    )
    filtered = filter_recording(recording, FilterConfig(bandpass_hz=(20, 450)))
    assert gain(filtered.signals["hdsemg"][:, 0], emg[:, 0]) < 0.01
    np.testing.assert_array_equal(filtered.signals["force"], recording.signals["force"])


def test_filter_is_zero_phase():
    x = sine(100)
    config = FilterConfig(bandpass_hz=(20, 450), notch_hz=50)
    y = filter_recording(signal_recording(x[:, None], x[:, None]), config).signals["emg"][:, 0].astype(np.float64)
    lags = np.arange(-9, 10)  # within half a period of 100 Hz
    xcorr = [np.dot(y[MIDDLE], x[MIDDLE.start - lag : MIDDLE.stop - lag]) for lag in lags]
    assert lags[int(np.argmax(xcorr))] == 0
    # In phase to within float32 precision; a causal pass of the same filter shifts 100 Hz by a few degrees
    # (correlation about 0.999), which this bound rejects.
    assert np.corrcoef(y[MIDDLE], x[MIDDLE])[0, 1] > 0.99999
    causal = signal.sosfilt(config.sections(FS), x)
    assert np.corrcoef(causal[MIDDLE], x[MIDDLE])[0, 1] < 0.9999
    # Broadband: white noise filtered forward-backward peaks at lag 0 against its input.
    noise = np.random.default_rng(1).normal(size=N_FILTER)
    z = filter_recording(signal_recording(noise[:, None], noise[:, None]), config).signals["emg"][:, 0]
    xcorr = [np.dot(z[MIDDLE], noise[MIDDLE.start - lag : MIDDLE.stop - lag]) for lag in lags]
    assert lags[int(np.argmax(xcorr))] == 0


def test_filtering_never_crosses_a_file_join():
    rng = np.random.default_rng(2)
    join = 3000
    emg = rng.normal(size=(N_FILTER, 2))
    emg[:join] += 5.0  # a step at the join: filtering across it would smear it into both files
    emg += 0.3 * sine(50)[:, None]
    emg = emg.astype(np.float32)
    recording = signal_recording(emg, emg[:, :1], segment_starts=(0, join))
    filtered = filter_recording(recording, FilterConfig(bandpass_hz=(20, 450), notch_hz=50)).signals["emg"]
    sos = reference_sections(FS, bandpass=[20, 450], notch=50)
    expected = np.concatenate([signal.sosfiltfilt(sos, emg[:join], axis=0),
                               signal.sosfiltfilt(sos, emg[join:], axis=0)])
    np.testing.assert_allclose(filtered, expected, rtol=1e-5, atol=1e-5)
    across = signal.sosfiltfilt(sos, emg, axis=0)
    assert np.abs(across - expected)[join - 20 : join + 20].max() > 0.05  # the reference can tell them apart


def test_filter_sections_match_an_independent_scipy_chain():
    for fs in (2000.0, 2048.0):
        got = FilterConfig(bandpass_hz=(20, 450), notch_hz=50).sections(fs)
        want = reference_sections(fs, bandpass=[20, 450], notch=50)
        # Compare frequency responses (the section layout is not the point).
        _, h_got = signal.sosfreqz(got, worN=512, fs=fs)
        _, h_want = signal.sosfreqz(want, worN=512, fs=fs)
        np.testing.assert_allclose(h_got, h_want, atol=1e-9)
        # A 4th-order band-pass: 4 poles in all.
        assert np.count_nonzero(signal.sosfreqz(got[:2])[1]) and len(signal.sos2zpk(got[:2])[1]) == 4


@pytest.mark.parametrize("kwargs,option", [
    ({"bandpass_hz": (450, 20)}, "bandpass_hz"),
    ({"bandpass_hz": (0, 450)}, "bandpass_hz"),
    ({"bandpass_hz": (-20, 450)}, "bandpass_hz"),
    ({"bandpass_hz": (20,)}, "bandpass_hz"),
    ({"bandpass_hz": (20, 450, 600)}, "bandpass_hz"),
    ({"notch_hz": 0}, "notch_hz"),
    ({"notch_hz": -50}, "notch_hz"),
    ({"notch_hz": 50, "notch_quality": 0}, "notch_quality"),
])
def test_filter_config_rejects_bad_options(kwargs, option):
    with pytest.raises(ConfigError) as info:
        FilterConfig(**kwargs)
    assert info.value.option == option and option in str(info.value)


@pytest.mark.parametrize("kwargs,option", [({"bandpass_hz": (20, 1000)}, "bandpass_hz"), ({"notch_hz": 1200}, "notch_hz")])
def test_filter_edges_above_nyquist_raise_config_errors(kwargs, option):
    recording = signal_recording(sine(100)[:, None], sine(100)[:, None])
    with pytest.raises(ConfigError) as info:
        filter_recording(recording, FilterConfig(**kwargs))
    assert info.value.option == option and "Nyquist" in str(info.value)


# ---------------------------------------------------------------------------------------------
# ZScore
# ---------------------------------------------------------------------------------------------


def test_zscore_fit_matches_float64_numpy_and_normalises_train_only():
    rng = np.random.default_rng(0)
    train = rng.normal([1.0, 5.0, -2.0], [0.5, 2.0, 3.0], size=(20, 30, 3)).astype(np.float32)
    test = rng.normal([2.0, 4.0, 0.0], [1.0, 1.0, 1.0], size=(7, 30, 3)).astype(np.float32)
    dead = np.full((20, 30, 2), 3.0, dtype=np.float32)
    z = ZScore.fit({"a": train, "dead": dead})
    flat = train.astype(np.float64).reshape(-1, 3)
    # Tolerances far below anything that matters for normalisation, far above float64 round-off of a
    # streamed computation, and far below the 1/(2N) ≈ 1e-3 that a ddof=1 std would be off by.
    np.testing.assert_allclose(z.mean["a"], flat.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(z.std["a"], flat.std(axis=0), rtol=1e-7)  # population std (ddof 0)
    assert z.mean["a"].dtype == np.float64 and z.std["a"].dtype == np.float64

    normal_train, = z.apply({"a": train}).values()
    assert normal_train.dtype == np.float32 and normal_train.shape == train.shape
    np.testing.assert_allclose(normal_train.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(normal_train.reshape(-1, 3).std(axis=0), 1, rtol=1e-4)
    normal_test, = z.apply({"a": test}).values()
    np.testing.assert_allclose(normal_test, (test - flat.mean(0)) / flat.std(0), rtol=1e-4, atol=1e-5)
    assert np.abs(normal_test.reshape(-1, 3).mean(axis=0)).max() > 0.1

    # A dead channel is centred, not turned into inf/nan.
    normal_dead, = z.apply({"dead": dead}).values()
    assert np.isfinite(normal_dead).all() and (normal_dead == 0).all()


def test_zscore_dict_round_trip_through_json():
    rng = np.random.default_rng(1)
    z = ZScore.fit({"emg": rng.normal(size=(4, 10, 12)).astype(np.float32), "acc": rng.normal(size=(4, 10, 3)).astype(np.float32)})
    data = json.loads(json.dumps(z.to_dict()))
    back = ZScore.from_dict(data)
    assert set(back.mean) == set(z.mean) == set(back.std)
    for name in z.mean:
        np.testing.assert_array_equal(back.mean[name], z.mean[name])
        np.testing.assert_array_equal(back.std[name], z.std[name])
        assert back.mean[name].dtype == np.float64
    # to_dict hands out copies: editing them does not change the statistics.
    data = z.to_dict()
    data["mean"]["emg"][0] = 1e9
    assert z.mean["emg"][0] != 1e9


# ---------------------------------------------------------------------------------------------
# prepare(): splits, classes, channel groups
# ---------------------------------------------------------------------------------------------


def capture_cached(monkeypatch) -> list:
    """Record every CachedArrays that prepare() obtains, to look at the raw (un-normalised) windows."""
    seen = []

    def spy(*args, **kwargs):
        result = load_or_build(*args, **kwargs)
        seen.append(result)
        return result

    monkeypatch.setattr(pipeline, "load_or_build", spy)
    return seen


def test_prepare_db2_splits_by_repetition(db2_redundant):
    prepared = prepare(DataConfig(root=str(db2_redundant)), cache_dir=None)
    assert sorted(prepared.splits) == ["test", "train", "validation"]
    assert set(prepared.splits["train"].repetition.tolist()) == {1, 3, 4}
    assert set(prepared.splits["validation"].repetition.tolist()) == {6}
    assert set(prepared.splits["test"].repetition.tolist()) == {2, 5}
    assert prepared.sampling_rate == 2000.0
    for split in prepared.splits.values():
        assert split.x["emg"].shape == (len(split), 400, 12)
        assert split.x["acc"].shape == (len(split), 400, 36)
        assert split.x["emg"].dtype == np.float32
        assert len(split.y) == len(split.label) == len(split.repetition) > 0
        assert (split.label != 0).all()  # rest dropped by default


def test_prepare_class_indices_map_to_labels(db2_redundant):
    prepared = prepare(DataConfig(root=str(db2_redundant)), cache_dir=None)
    labels = prepared.class_labels
    assert list(labels) == sorted(labels) and 0 not in labels
    assert prepared.n_classes == len(labels) == 6
    # The fixture spreads 6 gestures over DB2's three exercises, keeping DB2's global label numbers.
    assert labels == (1, 2, 18, 19, 41, 42)
    assert prepared.class_names == ("E1-01", "E1-02", "E2-18", "E2-19", "E3-41", "E3-42")
    for split in prepared.splits.values():
        assert split.y.dtype == np.int64
        np.testing.assert_array_equal(np.asarray(labels)[split.y], split.label)
        assert set(split.y.tolist()) == set(range(6))  # every class in every split


def test_prepare_keep_rest_gives_a_rest_class(db2_redundant):
    prepared = prepare(DataConfig(root=str(db2_redundant), window=WindowConfig(keep_rest=True)), cache_dir=None)
    assert prepared.class_labels[0] == 0 and prepared.class_names[0] == "rest"
    for split in prepared.splits.values():
        assert (split.label == 0).any()
        np.testing.assert_array_equal(np.asarray(prepared.class_labels)[split.y], split.label)


def test_zscore_in_prepare_is_fitted_on_training_windows_only(db2_redundant, tmp_path, monkeypatch):
    seen = capture_cached(monkeypatch)
    prepared = prepare(DataConfig(root=str(db2_redundant)), cache_dir=tmp_path / "c")
    raw_emg = np.asarray(seen[0].arrays["signal_emg"], dtype=np.float64)
    repetition = np.asarray(seen[0].arrays["repetition"])
    train = np.isin(repetition, [1, 3, 4])
    flat_train = raw_emg[train].reshape(-1, 12)
    np.testing.assert_allclose(prepared.zscore.mean["emg"], flat_train.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(prepared.zscore.std["emg"], flat_train.std(axis=0), rtol=1e-7)
    # Statistics from all windows are measurably different, so the check above can fail.
    flat_all = raw_emg.reshape(-1, 12)
    assert np.abs(flat_all.std(axis=0) / flat_train.std(axis=0) - 1).max() > 1e-4

    for name in ("emg", "acc"):
        x_train = prepared.splits["train"].x[name].reshape(-1, prepared.splits["train"].x[name].shape[-1])
        np.testing.assert_allclose(x_train.mean(axis=0, dtype=np.float64), 0, atol=1e-4)
        np.testing.assert_allclose(x_train.std(axis=0, dtype=np.float64), 1, rtol=1e-3)
    x_test = prepared.splits["test"].x["emg"].reshape(-1, 12).astype(np.float64)
    assert np.abs(x_test.mean(axis=0)).max() > 1e-3 or np.abs(x_test.std(axis=0) - 1).max() > 1e-3
    # The normalised test windows are exactly the raw ones with the training statistics applied.
    test = np.isin(repetition, [2, 5])
    expected = (raw_emg[test] - flat_train.mean(axis=0)) / flat_train.std(axis=0)
    np.testing.assert_allclose(prepared.splits["test"].x["emg"], expected, rtol=1e-4, atol=1e-4)


def test_channel_groups_are_slices_of_the_whole_modality(db2_redundant):
    whole = prepare(DataConfig(root=str(db2_redundant), modalities="emg"), cache_dir=None)
    halves = prepare(DataConfig(root=str(db2_redundant), modalities="emg[0:6],emg[6:12]"), cache_dir=None)
    picked = prepare(DataConfig(root=str(db2_redundant), modalities="emg[::5],acc[0,3,35]"), cache_dir=None)
    assert [g.name for g in halves.groups] == ["emg[0:6]", "emg[6:12]"]
    assert [g.channels for g in halves.groups] == [tuple(range(6)), tuple(range(6, 12))]
    assert [g.channels for g in picked.groups] == [(0, 5, 10), (0, 3, 35)]
    both = prepare(DataConfig(root=str(db2_redundant), modalities="emg,acc"), cache_dir=None)
    for split in ("train", "validation", "test"):
        x = whole.splits[split].x["emg"]
        np.testing.assert_allclose(halves.splits[split].x["emg[0:6]"], x[:, :, 0:6], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(halves.splits[split].x["emg[6:12]"], x[:, :, 6:12], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(picked.splits[split].x["emg[::5]"], x[:, :, [0, 5, 10]], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(picked.splits[split].x["acc[0,3,35]"],
                                   both.splits[split].x["acc"][:, :, [0, 3, 35]], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(halves.splits[split].label, whole.splits[split].label)
    np.testing.assert_allclose(halves.zscore.mean["emg[6:12]"], whole.zscore.mean["emg"][6:12], rtol=1e-9)
    np.testing.assert_allclose(halves.zscore.std["emg[0:6]"], whole.zscore.std["emg"][0:6], rtol=1e-9)


def test_prepare_hdsemg_channel_selection_and_window_length(hd_redundant):
    prepared = prepare(DataConfig(root=str(hd_redundant), dataset="hdsemg65", modalities="hdsemg[::4],force"),
                       cache_dir=None)
    assert prepared.sampling_rate == 2048.0
    assert [g.name for g in prepared.groups] == ["hdsemg[::4]", "force"]
    assert prepared.groups[0].channels == tuple(range(0, 128, 4))
    for split in prepared.splits.values():
        assert split.x["hdsemg[::4]"].shape[1:] == (410, 32)
        assert split.x["force"].shape[1] == 410
    # HD-sEMG standard split: train 1,3,5 with the last (5) held out for validation; test 2,4.
    assert set(prepared.splits["train"].repetition.tolist()) == {1, 3}
    assert set(prepared.splits["validation"].repetition.tolist()) == {5}
    assert set(prepared.splits["test"].repetition.tolist()) == {2, 4}
    grids = prepared.grids["hdsemg"]
    assert [g.channels for g in grids] == [tuple(range(64)), tuple(range(64, 128))]
    with pytest.raises(ConfigError) as info:
        patchify(prepared.splits["test"].x["hdsemg[::4]"], prepared.groups[0], TokenConfig(patch="grid"), 2048.0, grids)
    assert info.value.option == "patch"


def test_data_config_round_trip_through_json(db2_redundant):
    config = DataConfig(
        root=str(db2_redundant), subject=1, exercises=(1, 3), modalities="emg[0:6],acc",
        window=WindowConfig(window_ms=150, stride_ms=25, keep_rest=True),
        filters=FilterConfig(bandpass_hz=(20, 450), notch_hz=50),
        train_repetitions=(1, 2, 3, 4), test_repetitions=(5, 6), validation_repetitions=(2,),
    )
    back = DataConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    assert isinstance(back.window, WindowConfig) and isinstance(back.filters, FilterConfig)
    assert back.filters.bandpass_hz == (20, 450) and back.exercises == (1, 3)
    assert DataConfig.from_dict(json.loads(json.dumps(DataConfig(root="x").to_dict()))) == DataConfig(root="x")
    with pytest.raises(ConfigError):
        DataConfig.from_dict({**config.to_dict(), "stride": 3})


@pytest.mark.parametrize("kwargs,option", [
    ({"train_repetitions": (1, 2, 3), "test_repetitions": (2, 5)}, "test_repetitions"),
    ({"test_repetitions": (1, 2)}, "test_repetitions"),
    ({"train_repetitions": (1, 3, 4, 6), "test_repetitions": (6,)}, "test_repetitions"),  # validation 6 = test
    ({"validation_repetitions": (2,)}, "validation_repetitions"),
    ({"train_repetitions": (1,)}, "train_repetitions"),  # validation takes the only one
    ({"modalities": "emg,glove"}, "modalities"),
    ({"dataset": "db9"}, "dataset"),
])
def test_data_config_rejects_bad_repetitions(kwargs, option):
    with pytest.raises(ConfigError) as info:
        DataConfig(root="nowhere", **kwargs)
    assert info.value.option == option


def test_prepare_rejects_repetitions_with_no_windows(db2_redundant):
    with pytest.raises(ConfigError) as info:
        prepare(DataConfig(root=str(db2_redundant), exercises=(1,), test_repetitions=(7,)), cache_dir=None)
    assert info.value.option == "test_repetitions"


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def assert_same_prepared(a, b):
    assert a.class_labels == b.class_labels and a.groups == b.groups and a.sampling_rate == b.sampling_rate
    for split in a.splits:
        for name in a.splits[split].x:
            np.testing.assert_array_equal(a.splits[split].x[name], b.splits[split].x[name])
        np.testing.assert_array_equal(a.splits[split].y, b.splits[split].y)
        np.testing.assert_array_equal(a.splits[split].label, b.splits[split].label)
        np.testing.assert_array_equal(a.splits[split].repetition, b.splits[split].repetition)
    for name in a.zscore.mean:
        np.testing.assert_array_equal(a.zscore.mean[name], b.zscore.mean[name])


def test_second_prepare_is_a_cache_hit_that_skips_parsing(db2_redundant, tmp_path, monkeypatch):
    config = DataConfig(root=str(db2_redundant), filters=FilterConfig(bandpass_hz=(20, 450)))
    first = prepare(config, cache_dir=tmp_path / "c")
    assert not first.cache_hit

    def no_parsing(path, *args, **kwargs):
        raise RuntimeError(f"parsed {path}")

    monkeypatch.setattr(ninapro, "read_file", no_parsing)
    with pytest.raises(RuntimeError, match="parsed"):  # the patch does reach the loader
        prepare(config, cache_dir=tmp_path / "elsewhere")
    second = prepare(config, cache_dir=tmp_path / "c")
    assert second.cache_hit
    assert_same_prepared(first, second)
    # Another modality configuration reuses the same entry (all channels are cached).
    third = prepare(replace(config, modalities="emg[0:6]"), cache_dir=tmp_path / "c")
    assert third.cache_hit and third.splits["train"].x["emg[0:6]"].shape[-1] == 6


def test_hdsemg_cache_hit_skips_the_loader(hd_redundant, tmp_path, monkeypatch):
    config = DataConfig(root=str(hd_redundant), dataset="hdsemg65", modalities="hdsemg,force")
    first = prepare(config, cache_dir=tmp_path / "c")

    def no_loading(*args):
        raise RuntimeError("loaded")

    monkeypatch.setitem(DATASETS, "hdsemg65", replace(DATASETS["hdsemg65"], load=no_loading))
    with pytest.raises(RuntimeError, match="loaded"):
        prepare(config, cache_dir=tmp_path / "elsewhere")
    second = prepare(config, cache_dir=tmp_path / "c")
    assert second.cache_hit and not first.cache_hit
    assert_same_prepared(first, second)
    assert second.grids == first.grids  # grid definitions survive the JSON metadata
    assert all(isinstance(g, Grid) and g.shape == (8, 8) for g in second.grids["hdsemg"])


def test_cache_key_depends_on_options_and_source_files(db2_redundant, tmp_path):
    source = tmp_path / "copy" / ninapro.file_name(1, 1)
    source.parent.mkdir()
    shutil.copy2(db2_redundant / "DB2_s1" / ninapro.file_name(1, 1), source)
    options = {"dataset": "ninapro-db2", "window": {"window_ms": 200.0, "stride_ms": 100.0, "keep_rest": False}}
    key = cache_key([source], options)
    assert cache_key([source], json.loads(json.dumps(options))) == key  # deterministic
    assert cache_key([source], {**options, "window": {**options["window"], "stride_ms": 50.0}}) != key
    assert cache_key([source, source], options) != key

    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched
    touched = cache_key([source], options)
    assert touched != key

    with open(source, "r+b") as file:  # same size and mtime, different last byte
        file.seek(-1, os.SEEK_END)
        last = file.read(1)
        file.seek(-1, os.SEEK_END)
        file.write(bytes([last[0] ^ 0xFF]))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache_key([source], options) != touched


def test_changed_options_or_touched_files_miss_the_cache(db2_redundant, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    source = root / ninapro.file_name(1, 1)
    shutil.copy2(db2_redundant / "DB2_s1" / source.name, source)
    cache_dir = tmp_path / "c"
    config = DataConfig(root=str(root), exercises=(1,))
    assert not prepare(config, cache_dir=cache_dir).cache_hit
    assert prepare(config, cache_dir=cache_dir).cache_hit
    strided = replace(config, window=WindowConfig(stride_ms=50))
    assert not prepare(strided, cache_dir=cache_dir).cache_hit
    assert len([p for p in cache_dir.iterdir()]) == 2
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert not prepare(config, cache_dir=cache_dir).cache_hit
    assert len([p for p in cache_dir.iterdir()]) == 3


def test_cached_arrays_are_memory_mapped(db2_redundant, tmp_path, monkeypatch):
    seen = capture_cached(monkeypatch)
    config = DataConfig(root=str(db2_redundant))
    prepare(config, cache_dir=tmp_path / "c")
    hit = prepare(config, cache_dir=tmp_path / "c")
    assert hit.cache_hit and [c.hit for c in seen] == [False, True]
    arrays = seen[1].arrays
    assert {"signal_emg", "signal_acc", "label", "repetition", "start"} <= set(arrays)
    for array in arrays.values():
        assert isinstance(array, np.memmap)
        assert not array.flags.writeable
    assert arrays["signal_emg"].shape[1:] == (400, 12) and arrays["signal_emg"].dtype == np.float32


def test_no_cache_dir_writes_nothing_and_default_uses_the_environment(db2_redundant, tmp_path, monkeypatch):
    seen = capture_cached(monkeypatch)
    environment_cache = Path(os.environ["ISOPROBE_CACHE"])
    before = sorted(tmp_path.rglob("*"))
    prepared = prepare(DataConfig(root=str(db2_redundant), exercises=(1,)), cache_dir=None)
    assert not prepared.cache_hit and len(prepared.splits["train"]) > 0
    assert sorted(tmp_path.rglob("*")) == before
    assert not environment_cache.exists()
    assert not any(isinstance(a, np.memmap) for a in seen[0].arrays.values())
    prepare(DataConfig(root=str(db2_redundant), exercises=(1,)))  # cache_dir="default"
    assert len([p for p in environment_cache.iterdir() if (p / "meta.json").is_file()]) == 1


def test_a_failed_build_leaves_no_partial_entry(db2_redundant, tmp_path):
    cache_dir = tmp_path / "c"
    # 5 s windows are longer than any gesture of the fixture (1.2 s): nothing to cut.
    config = DataConfig(root=str(db2_redundant), exercises=(1,), window=WindowConfig(window_ms=5000))
    with pytest.raises(DataFormatError, match="shorten --window-ms"):
        prepare(config, cache_dir=cache_dir)
    assert list(cache_dir.iterdir()) == []


def test_load_or_build_cleans_up_after_an_exception_and_rebuilds(tmp_path):
    def failing(allocate):
        allocate("a", (3, 2), np.float32)[:] = 1
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        load_or_build(tmp_path, "k", failing)
    assert list(tmp_path.iterdir()) == []

    def working(allocate):
        allocate("a", (3, 2), np.float32)[:] = np.arange(6).reshape(3, 2)
        return {"note": "ok"}

    built = load_or_build(tmp_path, "k", working)
    assert not built.hit and built.meta == {"note": "ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["k"]
    again = load_or_build(tmp_path, "k", failing)  # a hit never calls build
    assert again.hit and again.meta == {"note": "ok"}
    np.testing.assert_array_equal(again.arrays["a"], np.arange(6).reshape(3, 2))
    assert cache.FORMAT_VERSION >= 1


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


def random_windows(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_time_patches_match_a_loop_in_time_major_order():
    windows = random_windows((3, 40, 5))
    group = ModalityGroup("emg", "emg", tuple(range(5)))
    tokens = patchify(windows, group, TokenConfig(patch="time", patch_ms=10), sampling_rate=1000.0)
    assert tokens.shape == (3, 4, 50)
    for b in range(3):
        for p in range(4):
            expected = [windows[b, t, c] for t in range(p * 10, (p + 1) * 10) for c in range(5)]
            np.testing.assert_array_equal(tokens[b, p], expected)
    # Time-major: the first five entries of a token are the five channels at its first time step.
    np.testing.assert_array_equal(tokens[0, 1, :5], windows[0, 10, :])


def test_time_patches_at_the_real_sampling_rates():
    group = ModalityGroup("emg", "emg", (0, 1))
    assert patchify(random_windows((1, 400, 2)), group, TokenConfig(), 2000.0).shape == (1, 10, 80)
    assert patchify(random_windows((1, 410, 2)), group, TokenConfig(), 2048.0).shape == (1, 10, 82)  # 41-sample patches
    with pytest.raises(ConfigError) as info:
        patchify(random_windows((1, 400, 2)), group, TokenConfig(patch_ms=30), 2000.0)
    assert info.value.option == "patch_ms"


def test_channel_patches_are_one_token_per_channel():
    windows = random_windows((2, 16, 6))
    tokens = patchify(windows, ModalityGroup("acc", "acc", tuple(range(6))), TokenConfig(patch="channel"), 2000.0)
    assert tokens.shape == (2, 6, 16)
    for b in range(2):
        for c in range(6):
            np.testing.assert_array_equal(tokens[b, c], windows[b, :, c])


HD_GRIDS = (Grid("flexors", (8, 8), tuple(range(64))), Grid("extensors", (8, 8), tuple(range(64, 128))))


def naive_tiles(windows: np.ndarray, group: ModalityGroup, grids, tile=(4, 4)) -> np.ndarray:
    """Tokens built tile by tile: grid order, then tile rows, then tile columns; content (time, row, col)."""
    rows, cols = tile
    position = {channel: i for i, channel in enumerate(group.channels)}
    tokens = []
    for grid in grids:
        side_r, side_c = grid.shape
        for tr in range(side_r // rows):
            for tc in range(side_c // cols):
                cells = [grid.channels[(tr * rows + r) * side_c + tc * cols + c] for r in range(rows) for c in range(cols)]
                block = windows[:, :, [position[cell] for cell in cells]]  # [batch, time, r*c]
                tokens.append(block.reshape(windows.shape[0], -1))
    return np.stack(tokens, axis=1)


def test_grid_patches_are_tiles_of_each_grid():
    windows = random_windows((2, 6, 128))
    group = ModalityGroup("hdsemg", "hdsemg", tuple(range(128)))
    tokens = patchify(windows, group, TokenConfig(patch="grid", tile=(4, 4)), 2048.0, HD_GRIDS)
    assert tokens.shape == (2, 8, 6 * 16)
    np.testing.assert_array_equal(tokens, naive_tiles(windows, group, HD_GRIDS))
    # Spot check by hand: token 1 is the flexor grid's top-right tile (rows 0–3, columns 4–7).
    top_right = [r * 8 + c for r in range(4) for c in range(4, 8)]
    np.testing.assert_array_equal(tokens[0, 1], windows[0][:, top_right].reshape(-1))
    # Token 6 is the extensor grid's bottom-left tile.
    bottom_left = [64 + r * 8 + c for r in range(4, 8) for c in range(4)]
    np.testing.assert_array_equal(tokens[1, 6], windows[1][:, bottom_left].reshape(-1))


def test_grid_patches_with_other_tiles_and_reordered_channels():
    windows = random_windows((2, 3, 128), seed=1)
    group = ModalityGroup("hdsemg", "hdsemg", tuple(range(128)))
    tokens = patchify(windows, group, TokenConfig(patch="grid", tile=(2, 8)), 2048.0, HD_GRIDS)
    assert tokens.shape == (2, 8, 3 * 16)
    np.testing.assert_array_equal(tokens, naive_tiles(windows, group, HD_GRIDS, tile=(2, 8)))
    # A group holding only the extensor grid, channels listed in reverse order.
    reverse = ModalityGroup("hdsemg[127:63:-1]", "hdsemg", tuple(range(127, 63, -1)))
    sub = windows[:, :, list(reverse.channels)]
    tokens = patchify(sub, reverse, TokenConfig(patch="grid"), 2048.0, HD_GRIDS)
    assert tokens.shape == (2, 4, 3 * 16)
    np.testing.assert_array_equal(tokens, naive_tiles(sub, reverse, HD_GRIDS[1:]))
    np.testing.assert_array_equal(tokens, naive_tiles(windows, group, HD_GRIDS)[:, 4:])


def test_grid_patches_need_whole_grids_and_dividing_tiles():
    windows = random_windows((1, 4, 32))
    strided = ModalityGroup("hdsemg[::4]", "hdsemg", tuple(range(0, 128, 4)))
    with pytest.raises(ConfigError) as info:
        patchify(windows, strided, TokenConfig(patch="grid"), 2048.0, HD_GRIDS)
    assert info.value.option == "patch" and "whole electrode grids" in str(info.value)
    partial = ModalityGroup("hdsemg[0:96]", "hdsemg", tuple(range(96)))
    with pytest.raises(ConfigError):
        patchify(random_windows((1, 4, 96)), partial, TokenConfig(patch="grid"), 2048.0, HD_GRIDS)
    with pytest.raises(ConfigError) as info:
        patchify(random_windows((1, 4, 5)), ModalityGroup("force", "force", tuple(range(5))), TokenConfig(patch="grid"), 2048.0)
    assert info.value.option == "patch"
    whole = ModalityGroup("hdsemg", "hdsemg", tuple(range(128)))
    with pytest.raises(ConfigError) as info:
        patchify(random_windows((1, 4, 128)), whole, TokenConfig(patch="grid", tile=(3, 3)), 2048.0, HD_GRIDS)
    assert info.value.option == "tile"
    with pytest.raises(ConfigError) as info:
        TokenConfig(patch="frequency")
    assert info.value.option == "patch"
    with pytest.raises(ConfigError) as info:
        TokenConfig(patch_ms=0)
    assert info.value.option == "patch_ms"


@pytest.mark.parametrize("config,channels,grids", [
    (TokenConfig(patch="time", patch_ms=4), 5, ()),
    (TokenConfig(patch="channel"), 5, ()),
    (TokenConfig(patch="grid"), 128, HD_GRIDS),
])
def test_patchify_works_on_torch_tensors(config, channels, grids):
    windows = random_windows((2, 8, channels), seed=3)
    group = ModalityGroup("m", "hdsemg", tuple(range(channels)))
    expected = patchify(windows, group, config, 1000.0, grids)
    got = patchify(torch.from_numpy(windows), group, config, 1000.0, grids)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_token_modalities():
    ids = token_modalities([10, 10])
    assert ids.dtype == np.int64
    assert ids.tolist() == [0] + [1] * 10 + [2] * 10
    assert token_modalities([3, 1, 2]).tolist() == [0, 1, 1, 1, 2, 3, 3]
    assert token_modalities([]).tolist() == [0]


def test_tokens_of_prepared_hdsemg_windows(hd_redundant, tmp_path):
    prepared = prepare(DataConfig(root=str(hd_redundant), dataset="hdsemg65", modalities="hdsemg,force"),
                       cache_dir=tmp_path / "c")
    x = prepared.splits["validation"].x
    grid_tokens = patchify(x["hdsemg"], prepared.groups[0], TokenConfig(patch="grid"), 2048.0, prepared.grids["hdsemg"])
    time_tokens = patchify(x["force"], prepared.groups[1], TokenConfig(), 2048.0)
    assert grid_tokens.shape == (len(x["hdsemg"]), 8, 410 * 16)
    assert time_tokens.shape == (len(x["force"]), 10, 41 * x["force"].shape[-1])
    np.testing.assert_array_equal(grid_tokens[:2], naive_tiles(x["hdsemg"][:2], prepared.groups[0], prepared.grids["hdsemg"]))
    ids = token_modalities([grid_tokens.shape[1], time_tokens.shape[1]])
    assert ids.tolist() == [0] + [1] * 8 + [2] * 10


def test_split_repetitions_rest_at_a_file_start_joins_that_files_first_repetition():
    reps = np.array([0, 1, 1, 0, 2, 2, 0, 0, 3, 3, 0, 4])  # second file starts at sample 6
    assert split_repetitions(reps, (0, 6)).tolist() == [1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 4]
    # without the file boundary the leading rest of file two would join repetition 2
    assert split_repetitions(reps)[6] == 2
