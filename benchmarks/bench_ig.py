"""Integrated-gradients benchmark: time and peak memory of `isoprobe.attribution.ig.attribute`.

Project target: "IG over 2,000 windows with 50 steps: time and peak memory (bounded by the internal
batch, not by the number of windows); on a GPU when one is lent".

Model: the DB2-shaped hierarchical transformer of bench_train (`model_config()`: sEMG 12 ch and
ACC 36 ch, 400-sample windows -> 10 + 10 tokens plus CLS, d_model 64, 4 heads, one encoder layer per
modality, five shared layers), seeded random weights, eval mode. Windows: seeded standard-normal
inputs (z-scored data), random labels among the 49 classes, 20 windows per segment. `attribute`
runs with method ig, 50 steps (captum Gauss-Legendre), the zero baseline, the true class, 1,000
bootstrap resamples, over 500, 1,000 and 2,000 windows. --quick is a smoke test (IG costs steps ×
windows forward and backward evaluations, 100,000 for the target, long on a CPU): 16, 32 and 64
windows in outer batches of 16, so the sizes still span 1, 2 and 4 outer batches under the same
internal batch.

Each size runs in a fresh subprocess, so one size's allocations cannot hide another's peak:

- CPU: peak memory is the growth of the process's maximum resident set (resource.getrusage
  ru_maxrss) from just before `attribute` (model built, all windows already in memory) to just after;
  tracemalloc would not see torch's allocator. It includes one-time costs (lazy library
  initialisation), the same at every size.
- CUDA: torch.cuda.max_memory_allocated during `attribute` minus what was allocated before (the
  model); the windows stay on the host and go to the device batch by batch.

Memory is bounded when the peak stays flat as the number of windows grows: the report gives each
size's peak relative to the smallest size's ("flat" when the largest is within 25 % or 32 MiB of the
smallest). Seconds include the summary statistics; windows/s = windows / seconds. The table's mean
|δ| and relative δ (Σ|δ| / Σ|f(x) − f(b)|) show that the 50 steps converge on this model.

    python benchmarks/bench_ig.py                        # CPU, and CUDA when a GPU is there
    python benchmarks/bench_ig.py --quick --device cpu
    python benchmarks/bench_ig.py --device cuda --json ig.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import N_CLASSES, WINDOW, model_config  # noqa: E402

from isoprobe.attribution.ig import IGConfig, attribute  # noqa: E402
from isoprobe.data.pipeline import WindowSet  # noqa: E402
from isoprobe.models import build_model  # noqa: E402

SIZES, QUICK_SIZES = (500, 1000, 2000), (16, 32, 64)
QUICK_BATCH = 16
STEPS = 50
WINDOWS_PER_SEGMENT = 20
DEFAULT_BATCHES = {"cpu": (64, 512), "cuda": (256, 4096)}  # (batch_size, internal_batch_size)
FLAT_RATIO, FLAT_MIB = 1.25, 32.0


def random_windows(n: int, seed: int = 0) -> WindowSet:
    """n DB2-shaped windows: emg [n, 400, 12], acc [n, 400, 36] float32, labels, 20 windows per segment."""
    rng = np.random.default_rng(seed)
    channels = {g.name: len(g.channels) for g in model_config().groups}
    x = {name: rng.standard_normal((n, WINDOW, c), dtype=np.float32) for name, c in channels.items()}
    y = rng.integers(0, N_CLASSES, n)
    segment = np.arange(n) // WINDOWS_PER_SEGMENT
    return WindowSet(x, y, label=segment, repetition=np.zeros(n, dtype=np.int64), start=np.arange(n) * WINDOW)


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(n: int, device: str, steps: int, batch_size: int, internal: int) -> dict:
    """One size, measured in this (fresh) process."""
    torch.manual_seed(0)
    model = build_model(model_config()).to(device).eval()
    windows = random_windows(n)
    config = IGConfig(method="ig", steps=steps, batch_size=batch_size, internal_batch_size=internal)
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    rss_before = maxrss_mib()
    start = time.perf_counter()
    result = attribute(model, windows, config, device=device)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20 if cuda else maxrss_mib() - rss_before
    rows = result.table.set_index(["part", "quantity"]).estimate
    return {"windows": n, "device": device, "steps": steps, "batch_size": batch_size, "internal_batch_size": internal,
            "seconds": seconds, "windows_per_s": n / seconds, "peak_mib": peak,
            "peak_measure": "cuda max_memory_allocated" if cuda else "ru_maxrss growth",
            "maxrss_before_mib": rss_before, "input_mib": sum(x.nbytes for x in windows.x.values()) / 2**20,
            "mean_abs_delta": float(rows["all", "abs_delta"]), "relative_delta": float(rows["all", "relative_delta"]),
            "shares": {part: float(rows[part, "share"]) for part in model.modality_names}}


def run_size(n: int, device: str, steps: int, batch_size: int, internal: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--device", device, "--steps", str(steps),
               "--batch-size", str(batch_size), "--internal-batch-size", str(internal)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"size {n} on {device} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def flat(results: list[dict]) -> bool:
    smallest, largest = results[0]["peak_mib"], max(r["peak_mib"] for r in results)
    return largest <= max(FLAT_RATIO * smallest, smallest + FLAT_MIB)


def markdown(device: str, results: list[dict]) -> str:
    first = results[0]
    lines = [f"**{device}**: ig, {first['steps']} steps, batch_size {first['batch_size']}, internal_batch_size "
             f"{first['internal_batch_size']}; peak = {first['peak_measure']}",
             "",
             "| windows | seconds | windows/s | peak MiB | peak / smallest | inputs MiB | mean abs δ | relative δ |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['windows']:,} | {r['seconds']:.1f} | {r['windows_per_s']:.1f} | {r['peak_mib']:.0f} | "
                     f"{r['peak_mib'] / first['peak_mib']:.2f} | {r['input_mib']:.0f} | {r['mean_abs_delta']:.1e} | "
                     f"{r['relative_delta']:.1e} |")
    lines += ["", f"peak memory {'flat' if flat(results) else '**NOT flat**'} as the windows grow "
              f"(largest within {FLAT_RATIO:.2f}× or {FLAT_MIB:.0f} MiB of the smallest)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="cpu, cuda, or auto: CPU, and CUDA when available")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} instead of {SIZES}, outer batches of {QUICK_BATCH} (a smoke test)")
    parser.add_argument("--steps", type=int, default=STEPS, help="integration steps (default 50, the target's)")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per outer batch (default 64 CPU, 256 CUDA; 16 with --quick)")
    parser.add_argument("--internal-batch-size", type=int, default=None,
                        help="model evaluations per pass (default 512 CPU, 4096 CUDA)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # one size, in a subprocess
    args = parser.parse_args()

    if args.child is not None:
        defaults = DEFAULT_BATCHES[args.device]
        print(json.dumps(child(args.child, args.device, args.steps, args.batch_size or defaults[0],
                               args.internal_batch_size or defaults[1])))
        return
    devices = ["cpu"] if args.device in ("cpu", "auto") else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available here")
        devices.append("cuda")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""), flush=True)
    document = {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
                           f"python {platform.python_version()}", "torch": torch.__version__,
                "cpu_threads": torch.get_num_threads(), "quick": args.quick, "results": {}}
    tables = []
    for device in devices:
        batch_size = args.batch_size or (QUICK_BATCH if args.quick else DEFAULT_BATCHES[device][0])
        internal = args.internal_batch_size or DEFAULT_BATCHES[device][1]
        results = []
        for n in (QUICK_SIZES if args.quick else SIZES):
            results.append(run_size(n, device, args.steps, batch_size, internal))
            r = results[-1]
            print(f"{device} {n:,} windows: {r['seconds']:.1f} s, {r['windows_per_s']:.1f} windows/s, "
                  f"peak {r['peak_mib']:.0f} MiB", flush=True)
        document["results"][device] = {"flat": flat(results), "sizes": results}
        tables.append(markdown(device, results))
    print()
    print("\n\n".join(tables))
    if args.json:
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
