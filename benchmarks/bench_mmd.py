"""MMD² permutation-test benchmark: `isoprobe.diagnostics.mmd.mmd_test` against a plain loop over the
same permutations.

Project target: "MMD² with 1,000 permutations between two samples of 2,000 vectors of width 64: time
on two CPU cores, and on a GPU when one is lent, against a plain loop over permutations in the same
run".

Data (seeded, no shift, so that the p-values fall in between and their equality is a real check):
clean and intervened representations of 2,000 windows of width 64 that share a window effect
(x = c + e, y = c + e', c standard normal, e and e' normal with SD 0.5), 20 windows per segment (100
segments). Three settings, each in float64 (the default):

  unpaired         x against an independent sample y' = c' + e' (pooled-label permutations, 4,000 units);
  paired           y[i] the counterpart of x[i], each pair swapped with probability ½ (2,000 units);
  paired-clusters  the same with all pairs of a segment swapped together (100 units).

On the same data in the same run:

  (a) vectorised  `mmd_test(x, y, 1000, seed=0, …)`: the median-heuristic bandwidth (1,000 pooled
                  points), the pooled kernel once, the permutations as chunked quadratic forms;
  (b) reference   the same bandwidth and kernel (`median_bandwidth`, `rbf_kernel`), the same
                  permutations (`permutation_assignments`), and for each permutation the statistic
                  recomputed by indexing the kernel matrix: the sums of K[x, x], K[y, y], K[x, y]
                  (paired: x and y indexed in the order of the pairs, and K[x, y] without its
                  diagonal, each pair's own term, which the paired U-statistic leaves out).

The two must give the same p-value exactly and the same statistic to 1e-9 relative. The vectorised
test is run once untimed (warm-up), then timed `--repeats` times around the reference's
`--reference-repeats` runs (default 1: at full size one run is 1,000 permutations, minutes on two
cores), medians reported; the ratio vectorised / reference is the number to track. The CPU settings
run pinned to two cores (torch two threads, numpy's BLAS too where threadpoolctl is installed); on
CUDA each timing is synchronised.

    python benchmarks/bench_mmd.py                    # CPU (2 cores), and CUDA when a GPU is there
    python benchmarks/bench_mmd.py --device cpu --quick
    python benchmarks/bench_mmd.py --device cuda --json mmd.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import on_cores  # noqa: E402

from isoprobe.diagnostics.mmd import (TIE_RTOL, median_bandwidth, mmd_test, permutation_assignments,  # noqa: E402
                                      rbf_kernel)

WINDOWS, WIDTH, PERMUTATIONS, SEGMENT = 2000, 64, 1000, 20
QUICK_WINDOWS, QUICK_PERMUTATIONS = 400, 200
CORES = 2
SCHEMES = {"unpaired": (False, False), "paired": (True, False), "paired-clusters": (True, True)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data(windows: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """x, its paired counterpart y, an independent sample y' (all [window, d_model]), segments [window]."""
    rng = np.random.default_rng(0)
    common, other = rng.normal(size=(windows, WIDTH)), rng.normal(size=(windows, WIDTH))
    x, y, independent = (c + 0.5 * rng.normal(size=common.shape) for c in (common, common, other))
    clusters = np.arange(windows) // SEGMENT
    return (*(torch.tensor(z, device=device) for z in (x, y, independent)), clusters)


def vectorised(x, y, permutations: int, paired: bool, clusters) -> tuple[float, float]:
    result = mmd_test(x, y, permutations, seed=0, paired=paired, clusters=clusters)
    return result.mmd2, result.p_value


def reference(x, y, permutations: int, paired: bool, clusters) -> tuple[float, float]:
    """A plain loop: each permutation's statistic from three indexed blocks of the kernel matrix."""
    n, m = len(x), len(y)
    pooled = torch.cat([x, y])
    k0 = rbf_kernel(pooled, median_bandwidth(pooled, seed=0)).fill_diagonal_(0)

    def statistic(first: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The statistic of the rows in `first` against the rest (unpaired: MMD²_u; paired: the
        U-statistic over pairs), and its terms' magnitude (the tie scale)."""
        if paired:  # pair i's two rows, pair by pair: the x–y block's diagonal holds each pair's own term
            pairs = np.arange(n)
            ix, iy = np.where(first[:n], pairs, pairs + n), np.where(first[:n], pairs + n, pairs)
        else:
            ix, iy = np.flatnonzero(first), np.flatnonzero(~first)
        ix, iy = torch.as_tensor(ix, device=k0.device), torch.as_tensor(iy, device=k0.device)
        rows_x, rows_y = k0[ix], k0[iy]
        block = rows_x[:, iy]
        xx = rows_x[:, ix].sum() / (n * (n - 1))
        yy = rows_y[:, iy].sum() / (m * (m - 1))
        xy = 2 * ((block.sum() - block.diagonal().sum()) / (n * (n - 1)) if paired else block.sum() / (n * m))
        return xx + yy - xy, xx + yy + xy

    observed, scale = statistic(np.arange(n + m) < n)
    threshold = observed - TIE_RTOL[k0.dtype] * scale
    hits = torch.zeros((), dtype=torch.int64, device=k0.device)
    for row in permutation_assignments(n, m, permutations, seed=0, paired=paired, clusters=clusters):
        hits += statistic(row)[0] >= threshold
    return float(observed), (int(hits) + 1) / (permutations + 1)


def timed(method, device: torch.device) -> tuple[tuple[float, float], float]:
    sync(device)
    start = time.perf_counter()
    out = method()
    sync(device)
    return out, time.perf_counter() - start


def bench_scheme(scheme: str, x, y, clusters, permutations: int, repeats: int, reference_repeats: int,
                 device: torch.device) -> dict:
    paired, clustered = SCHEMES[scheme]
    args = (x, y, permutations, paired, clusters if clustered else None)
    fast = vectorised(*args)  # warm-up
    seconds: dict[str, list[float]] = {"vectorised": [], "reference": []}
    schedule = ["vectorised"] * repeats
    for k in range(reference_repeats):  # spread the reference runs among the vectorised ones
        schedule.insert(round((k + 0.5) * repeats / reference_repeats) + k, "reference")
    for method in schedule:
        out, spent = timed(lambda: (vectorised if method == "vectorised" else reference)(*args), device)
        seconds[method].append(spent)
        if out[1] != fast[1] or abs(out[0] - fast[0]) > 1e-9 * abs(fast[0]):
            raise AssertionError(f"{scheme}: vectorised (MMD² {fast[0]!r}, p {fast[1]!r}) and {method} "
                                 f"(MMD² {out[0]!r}, p {out[1]!r}) disagree")
    units = len(np.unique(clusters)) if clustered else len(x) if paired else len(x) + len(y)
    result = {"scheme": scheme, "device": device.type, "n": len(x), "m": len(y), "width": x.shape[1],
              "permutations": permutations, "units": units, "mmd2": fast[0], "p_value": fast[1],
              "p_values_equal": True, "repeats": repeats, "reference_repeats": reference_repeats}
    for method, times in seconds.items():
        result[method] = {"s": statistics.median(times), "seconds": times}
    result["ratio"] = result["vectorised"]["s"] / result["reference"]["s"]
    return result


def run_device(device: torch.device, windows: int, permutations: int, repeats: int,
               reference_repeats: int) -> list[dict]:
    with on_cores(CORES) if device.type == "cpu" else contextlib.nullcontext(None) as cores:
        where = f"{cores} CPU cores, torch {torch.get_num_threads()} threads" if device.type == "cpu" \
            else torch.cuda.get_device_name(device)
        print(f"{device.type}: {where}", flush=True)
        x, y, independent, clusters = data(windows, device)
        results = []
        for scheme, (paired, _) in SCHEMES.items():
            result = bench_scheme(scheme, x, y if paired else independent, clusters, permutations, repeats,
                                  reference_repeats, device)
            result["where"] = where
            results.append(result)
            print(f"  {scheme}: vectorised {result['vectorised']['s']:.3f} s, reference {result['reference']['s']:.3f} s, "
                  f"ratio {result['ratio']:.4f}; MMD² {result['mmd2']:.3e}, p {result['p_value']:.4f} (equal)", flush=True)
        return results


def markdown(results: list[dict]) -> str:
    lines = ["| device | scheme | n = m | width | permutations | units | vectorised s | reference s | "
             "vectorised / reference | p-value (equal) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['where']} | {r['scheme']} | {r['n']:,} | {r['width']} | {r['permutations']:,} | "
                     f"{r['units']:,} | {r['vectorised']['s']:.3f} | {r['reference']['s']:.3f} | **{r['ratio']:.4f}** | "
                     f"{r['p_value']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="cpu: two CPU cores only; cuda: the GPU only; auto: CPU, and CUDA when available")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs of the vectorised test (default 5; 3 with --quick)")
    parser.add_argument("--reference-repeats", type=int, default=1, help="timed runs of the reference loop")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke test: {QUICK_WINDOWS} windows per sample, {QUICK_PERMUTATIONS} permutations")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    windows, permutations = (QUICK_WINDOWS, QUICK_PERMUTATIONS) if args.quick else (WINDOWS, PERMUTATIONS)
    repeats = args.repeats or (3 if args.quick else 5)
    if repeats < 1 or args.reference_repeats < 1:
        parser.error("--repeats and --reference-repeats need at least 1")
    print(f"torch {torch.__version__}, numpy {np.__version__}; {windows} windows per sample, width {WIDTH}, "
          f"{permutations} permutations, float64")
    results = []
    for name in devices[args.device]:
        results += run_device(torch.device(name), windows, permutations, repeats, args.reference_repeats)
    print()
    print(markdown(results))
    if args.json:
        machine = f"{platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}"
        document = {"machine": machine, "torch": torch.__version__, "numpy": np.__version__, "quick": args.quick,
                    "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "target": "MMD² with 1,000 permutations between two samples of 2,000 vectors of width 64, on two "
                              "CPU cores and on a GPU, against a plain loop over permutations",
                    "results": results}
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
