"""EMAP benchmark: sampled EMAP (K = 32 partners) on a DB2-sized test split with the hierarchical
transformer, against the naive loop that runs every evaluation through the whole model.

Data: the synthetic generator in the DB2 layout (preset redundant, 1 subject, 17 gestures × 6
repetitions, 5 s movement + 3 s rest, seed 0), 200 ms windows with a 100 ms stride, rest dropped: the
test split (repetitions 2 and 5) holds 17 × 2 × 49 = 1,666 windows in 34 segments.

Model: the hierarchical transformer sized from those data as bench_train's DB2 model (sEMG 12 ch and
ACC 36 ch, 20 ms patches -> 10 + 10 tokens plus CLS, d_model 64, 4 heads, d_mlp 128, one encoder
layer per modality, five shared layers), seeded random weights, eval mode (the weights do not change
the cost).

  (a) fast   `emap_projection(..., reuse_encodings=True)`: each window embedded and encoded once, then
             the shared stage and the heads per evaluation on mixed encodings;
  (b) naive  `reuse_encodings=False`: every evaluation through the whole model (embedding, modality
             encoders, shared stage, heads) on inputs gathered from the windows.

Sampled EMAP with two modalities costs 3·K evaluations per window (K for each conditional and K for
the window's grand mean): 159,936 at N = 1,666. The naive loop is too slow to run in full on a CPU, so
both paths are timed on a subset of the windows (every 8th: 209 windows, the same K: 3·K evaluations
per window as on the full split), interleaved, median of the repeats; the naive time of the full
split is that time × (full evaluations / subset evaluations), an extrapolation (the cost is linear in
the evaluations; the fast path's one-off encoding is a small share of it). The fast path is also
timed on the full split. CPU runs use one torch thread unless --threads says otherwise. Before
timing, the two paths must agree on the subset (max |difference| of the EMAP logits ≤ 1e-5 ×
max(1, max |logit|)).

What to expect: the shared stage (five layers over 21 tokens) is most of the model's work, and it is
what every evaluation must run; the fast path saves the embedding and the modality encoders (one
layer over 10 tokens each) and the gathering of raw 400-sample inputs, so its ratio is bounded by
the shared stage's share of a forward, not by the number of pairs.

    python benchmarks/bench_emap.py
    python benchmarks/bench_emap.py --device cuda --json emap.json
    python benchmarks/bench_emap.py --quick          # a smoke test: 3 gestures, K = 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from isoprobe.attribution.emap import EmapConfig, emap_projection
from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.data.synth import SynthConfig, generate
from isoprobe.models import build_model
from isoprobe.models.sizing import model_config_for

GESTURES, PARTNERS, SUBSET_STEP = 17, 32, 8
MODEL = dict(d_model=64, n_heads=4, d_mlp=128, dropout=0.1, n_encoder_layers=1, n_layers=5)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(function, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    function()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--partners", type=int, default=PARTNERS)
    parser.add_argument("--batch-size", type=int, default=None, help="evaluations per forward (default 512 CPU, 4096 CUDA)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: on the shared 2-core VM "
                        "two threads contend with other work and make small matmuls several times slower)")
    parser.add_argument("--quick", action="store_true", help="3 gestures, K = 4, one repeat (a smoke test)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the synthetic data (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    gestures, partners = (3, 4) if args.quick else (GESTURES, args.partners)
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    batch_size = args.batch_size or (4096 if args.device.startswith("cuda") else 512)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="isoprobe-bench-emap-")) / f"db2-{gestures}-gestures"
    if not (workdir / "isoprobe-synth.json").is_file():
        generate(SynthConfig(preset="redundant", subjects=1, gestures=gestures, seconds_per_repetition=5.0,
                             rest_seconds=3.0), workdir)
    data = prepare(DataConfig(root=str(workdir)), cache_dir=None)
    test = data.splits["test"]
    torch.manual_seed(0)
    model = build_model(model_config_for(data, "hierarchical", **MODEL)).to(args.device).eval()
    subset = test.take(np.arange(0, len(test), SUBSET_STEP))
    config = EmapConfig(partners=partners, exact_below=0, batch_size=batch_size, bootstrap=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}; "
          f"{len(test):,} test windows in {len(np.unique(test.segment))} segments, subset {len(subset)}; K = {partners}",
          flush=True)

    # agreement first (and a warm-up)
    fast = emap_projection(model, subset, config, args.device)
    naive = emap_projection(model, subset, config, args.device, reuse_encodings=False)
    difference = float((fast.additive - naive.additive).abs().max())
    tolerance = 1e-5 * max(1.0, float(naive.additive.abs().max()))
    if difference > tolerance:
        raise SystemExit(f"fast and naive EMAP differ by {difference:.3g} (> {tolerance:.3g})")

    times = {"fast_subset": [], "naive_subset": [], "fast_full": []}
    full = None
    for _ in range(repeats):
        times["fast_subset"].append(timed(lambda: emap_projection(model, subset, config, args.device), args.device))
        times["naive_subset"].append(timed(lambda: emap_projection(model, subset, config, args.device,
                                                                    reuse_encodings=False), args.device))

        def run_full():
            nonlocal full
            full = emap_projection(model, test, config, args.device)

        times["fast_full"].append(timed(run_full, args.device))
    median = {key: statistics.median(values) for key, values in times.items()}
    scale = full.evaluations / fast.evaluations
    naive_full = median["naive_subset"] * scale
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}",
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "device": args.device,
        "windows": len(test), "subset_windows": len(subset), "partners": partners, "batch_size": batch_size,
        "evaluations": full.evaluations, "subset_evaluations": fast.evaluations, "max_difference": difference,
        "seconds": median, "naive_full_extrapolated_s": naive_full, "ratio_fast_naive_subset":
        median["fast_subset"] / median["naive_subset"], "ratio_fast_full_naive_extrapolated": median["fast_full"] / naive_full,
        "evaluations_per_s_fast": full.evaluations / median["fast_full"],
        "evaluations_per_s_naive": fast.evaluations / median["naive_subset"], "repeats": repeats,
    }
    print(f"""
| path | windows | evaluations | seconds | evaluations/s |
| --- | ---: | ---: | ---: | ---: |
| fast (encode once, shared stage per pair), subset | {len(subset):,} | {fast.evaluations:,} | {median['fast_subset']:.2f} | {fast.evaluations / median['fast_subset']:,.0f} |
| naive (whole model per pair), subset | {len(subset):,} | {fast.evaluations:,} | {median['naive_subset']:.2f} | {fast.evaluations / median['naive_subset']:,.0f} |
| fast, full test split | {len(test):,} | {full.evaluations:,} | {median['fast_full']:.2f} | {results['evaluations_per_s_fast']:,.0f} |
| naive, full test split (extrapolated ×{scale:.2f} from the subset) | {len(test):,} | {full.evaluations:,} | {naive_full:.1f} | — |

fast / naive on the subset: **{results['ratio_fast_naive_subset']:.3f}**; fast full / naive extrapolated: \
{results['ratio_fast_full_naive_extrapolated']:.3f}; max |fast − naive| on the subset {difference:.1e}; \
median of {repeats} interleaved repeats""")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
