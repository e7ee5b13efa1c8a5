"""Data-layer benchmark: a full-size NinaPro-DB2-like subject (≈4.7 million samples × 48 columns).

Times each stage cold (load .mat files, window, normalise) and the whole `prepare` cold and from the
memory-mapped cache, and compares vectorised windowing against a per-window Python loop measured
in the same run. Ratios are the numbers to track; seconds depend on the machine.

    python benchmarks/bench_data.py               # full size (needs ~6 GB disk, ~8 GB RAM)
    python benchmarks/bench_data.py --scale 0.1   # quick check
    python benchmarks/bench_data.py --generation  # only the generator: a full DB2 and a full HD-sEMG subject

The generation times are the synthetic generator's (`isoprobe data synth`): one full-size DB2 subject
(49 gestures × 6 repetitions, 5 s + 3 s rest, three v5 files) and one HD-sEMG 65 subject (65 gestures ×
5 repetitions, 5 s + 5 s rest, 128 + 5 channels at 2,048 Hz, one v7.3 file), written to disk.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from isoprobe.data import ninapro
from isoprobe.data.normalise import ZScore
from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.data.synth import SynthConfig, generate
from isoprobe.data.windows import WindowConfig, cut, window_starts


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def best_of(repeats: int, function, *args) -> float:
    return min(timed(function, *args)[1] for _ in range(repeats))


def naive_windows(values: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Reference: one Python iteration per window."""
    out = np.empty((len(starts), window, values.shape[1]), dtype=values.dtype)
    for i, start in enumerate(starts):
        out[i] = values[start : start + window]
    return out


def generation_times(workdir: Path, scale: float) -> dict[str, float]:
    """Seconds to generate and write one full-size subject of each layout (`scale` × the gestures)."""
    configs = {
        "ninapro-db2": SynthConfig(preset="redundant", subjects=1, gestures=max(3, round(49 * scale)),
                                   seconds_per_repetition=5.0, rest_seconds=3.0),
        "hdsemg65": SynthConfig(layout="hdsemg65", preset="redundant", subjects=1, gestures=max(2, round(65 * scale)),
                                seconds_per_repetition=5.0, rest_seconds=5.0),
    }
    times = {}
    for layout, config in configs.items():
        folder = workdir / f"generate-{layout}"
        shutil.rmtree(folder, ignore_errors=True)
        _, times[f"generate_{layout}_s"] = timed(generate, config, folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"generated {layout}: {config.n_gestures} gestures, {size / 1e9:.2f} GB in {times[f'generate_{layout}_s']:.1f} s")
        shutil.rmtree(folder, ignore_errors=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full 49-gesture protocol")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the data (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--generation", action="store_true", help="time only the synthetic generator")
    args = parser.parse_args()

    if args.generation:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="isoprobe-bench-"))
        results = generation_times(workdir, args.scale)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        return

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="isoprobe-bench-"))
    data, cache = workdir / "data", workdir / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    gestures = max(3, int(round(49 * args.scale)))
    # DB2 protocol: 5 s movements, 3 s rest, 6 repetitions, 49 gestures over three exercises.
    synth = SynthConfig(preset="redundant", subjects=1, gestures=gestures, seconds_per_repetition=5.0, rest_seconds=3.0)
    if not (data / "isoprobe-synth.json").is_file():
        _, t_synth = timed(generate, synth, data)
        print(f"synthesised {gestures} gestures in {t_synth:.1f} s")

    recording, t_load = timed(ninapro.load_subject, data, 1)
    n_samples, n_columns = recording.n_samples, sum(v.shape[1] for v in recording.signals.values())
    window_config = WindowConfig()
    window, stride = window_config.samples(recording.sampling_rate)
    starts, t_starts = timed(window_starts, recording, window, stride, False)
    windows = {}
    t_cut = 0.0
    for name, values in recording.signals.items():
        windows[name], elapsed = timed(cut, values, starts, window)
        t_cut += elapsed
    subset = starts[: min(len(starts), 2000)]
    t_naive = best_of(3, naive_windows, recording.signals["acc"], subset, window)
    t_vector = best_of(3, cut, recording.signals["acc"], subset, window)
    stats, t_fit = timed(ZScore.fit, windows)
    _, t_apply = timed(stats.apply, windows)
    del windows, recording

    config = DataConfig(root=str(data), modalities="emg,acc")
    cold, t_cold = timed(prepare, config, cache_dir=cache)
    warm, t_warm = timed(prepare, config, cache_dir=cache)
    assert not cold.cache_hit and warm.cache_hit
    for split in cold.splits:
        for name in cold.splits[split].x:
            assert np.array_equal(cold.splits[split].x[name], warm.splits[split].x[name])

    results = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}",
        "samples": n_samples, "columns": n_columns, "windows": int(len(starts)),
        "load_s": t_load, "window_s": t_starts + t_cut, "normalise_s": t_fit + t_apply,
        "prepare_cold_s": t_cold, "prepare_cached_s": t_warm,
        "cached_over_cold": t_warm / t_cold,
        "vectorised_over_naive_windowing": t_vector / t_naive,
    }
    for key, value in results.items():
        print(f"{key:34s} {value:.4g}" if isinstance(value, float) else f"{key:34s} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
