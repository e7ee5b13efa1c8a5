"""Attribution patching (`ablate --approx`) against the exact grid, same checkpoint, same windows.

The grid: every shared layer × {uni, cross, cls} × every head, one head per condition (for the
README's demo model 5 × 3 × 4 = 60 mask conditions). On the checkpoint's test split, in one run:

  (a) approx  `estimate_masking`: one forward and one backward pass per batch for all conditions;
  (b) exact   `InterventionEngine.run_grid` over the same conditions (the shared-prefix grid).

Timed interleaved (approx exact, exact approx, …) after a warm-up, median of the repeats; the ratio
approx / exact is the number to track (target ≤ 0.1). Agreement of the per-condition mean changes of
the true-class logit margin: Spearman ρ, mean |error|, share of equal signs, over all conditions and
over the linear-regime ones (no touched row losing more than 90% of its attention).

    python benchmarks/bench_approx.py --checkpoint runs/demo/checkpoint.pt
    python benchmarks/bench_approx.py --checkpoint runs/demo/checkpoint.pt --device cuda --json approx.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from isoprobe.analysis import load_analysis
from isoprobe.data.batches import window_batches
from isoprobe.engine.attribution_patching import SATURATING, agreement, estimate_masking, masked_mass
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.engine.stats import logit_margin

PATHWAYS = ("uni", "cross", "cls")


def grid(engine: InterventionEngine) -> list[Condition]:
    return [Condition((layer,), pathway, (head,)) for layer in range(engine.n_layers) for pathway in PATHWAYS
            for head in range(engine.n_heads)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/demo/checkpoint.pt"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    analysis = load_analysis(args.checkpoint, device=args.device, needs_attention=True)
    device = torch.device(args.device)
    model, test = analysis.model, analysis.windows
    engine = InterventionEngine(model)
    conditions = grid(engine)
    names = tuple(model.modality_names)
    batches = [[x.to(device) for x in inputs] for inputs in window_batches(test.x, names, args.batch, device)]
    targets = torch.as_tensor(test.y).long().to(device).split(args.batch)

    def approx():
        return [estimate_masking(engine, inputs, conditions, target) for inputs, target in zip(batches, targets)]

    def exact():
        with torch.no_grad():
            return [engine.run_grid(inputs, conditions) for inputs in batches]

    def timed(method) -> float:
        sync(device)
        start = time.perf_counter()
        method()
        sync(device)
        return time.perf_counter() - start

    estimates, runs = approx(), exact()  # also the warm-up
    estimate = torch.cat([e.estimates for e in estimates]).double().mean(0).cpu().numpy()
    exact_change = np.array([torch.cat([logit_margin(r.logits[c].float(), t) - logit_margin(r.clean.float(), t)
                                        for r, t in zip(runs, targets)]).double().mean().item()
                             for c in range(len(conditions))])
    held = {}
    for batch in estimates:
        for layer, value in batch.held.items():
            held[layer] = held.get(layer, 0) + value.cpu()
    _, largest = masked_mass(engine, conditions, held, len(test))
    linear = (largest <= SATURATING).numpy()

    seconds = {"approx": [], "exact": []}
    for repeat in range(args.repeats):
        order = ("approx", "exact") if repeat % 2 == 0 else ("exact", "approx")
        for name in order:
            seconds[name].append(timed(approx if name == "approx" else exact))
    ms = {name: 1000 * statistics.median(times) for name, times in seconds.items()}
    result = {
        "checkpoint": str(args.checkpoint), "device": args.device, "windows": len(test), "conditions": len(conditions),
        "batch": args.batch, "repeats": args.repeats, "ms": ms, "ratio": ms["approx"] / ms["exact"],
        "paired_ratio": statistics.median(a / e for a, e in zip(seconds["approx"], seconds["exact"])),
        "all": agreement(estimate, exact_change), "linear": agreement(estimate[linear], exact_change[linear]),
        "linear_conditions": int(linear.sum()),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
                   + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""),
    }
    print(f"{result['machine']}; {len(test)} windows, {len(conditions)} conditions (every layer × uni, cross, cls × every head)")
    print("| setting | approx ms | exact ms | approx / exact | paired | Spearman ρ (all) | mean abs error | same sign "
          "| Spearman ρ (linear) | linear conditions |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.device}, batch {args.batch} | {ms['approx']:,.0f} | {ms['exact']:,.0f} | **{result['ratio']:.3f}** | "
          f"{result['paired_ratio']:.3f} | {result['all']['spearman']:.2f} | {result['all']['mean_abs_error']:.3f} | "
          f"{result['all']['sign_agreement']:.0%} | {result['linear']['spearman']:.2f} | {result['linear_conditions']} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
