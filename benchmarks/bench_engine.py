"""Intervention-engine benchmark: a full IsoNet grid by `run_grid` (shared prefix) against a naive loop.

The grid is the paper's: each of the five shared layers alone and all five together, masking the
`uni` and the `cross` pathway -> 12 `mask` conditions (`build_conditions("single", range(5),
["uni", "cross"])`). On the same windows in the same run it is evaluated

  (a) grid   `InterventionEngine.run_grid`: one clean forward, its residual stream kept, and each
             condition restarted from the residual at its first intervened layer (the embedding,
             the modality encoders and the layers below are shared);
  (b) naive  one clean forward `model(*inputs)` plus `run_naive`: one full `run_with_hooks` per
             condition.

Before timing, the two must give the same logits (clean and every condition; max |difference|
≤ 1e-5 in fp32, 1e-2 under bf16 autocast, where the same kernels are expected to give 0 as well),
no hook may stay attached afterwards, and both must take the explicit-scores attention path exactly
at the intervened layers (counted: Σ over conditions of their number of layers) and the fused
`scaled_dot_product_attention` path everywhere else. Timed interleaved (grid naive, naive grid, …)
after a warm-up (the check, plus one run of each without --quick), median of the repeats; the ratio
grid / naive is the number to track (CPU target ≤ 0.6). "work" is the same ratio counted in
shared-layer evaluations (embedding and heads aside): what the prefix sharing saves if every block
cost the same; the shared embedding and modality encoders take the measured ratio below it.

Model: the DB2-shaped hierarchical transformer of bench_train (21 tokens, d_model 64, 4 heads, one
encoder layer per modality, five shared layers), seeded random weights, eval mode, random inputs.
The multimodal transformer (mmt, same groups and width, five layers, block-diagonal attention) is
reported for reference: it has no modality encoders, so less of its forward is shared.

A second table times the stages on their own, once per repeat (embedding with the modality
encoders, a shared block on the fused path, the same block with the `uni` mask hook on the explicit
path, the heads), and the grid and naive times they predict: a measured time well above its
prediction is overhead of the engine rather than cost of the model.

Settings: CPU fp32 (batch 512, torch's default thread count); with CUDA also batch 4096 fp32
(default matmul precision, TF32 off) and bf16 autocast, synchronised around each timing.

    python benchmarks/bench_engine.py                    # CPU, and CUDA settings when a GPU is there
    python benchmarks/bench_engine.py --device cpu --quick
    python benchmarks/bench_engine.py --json engine.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import assert_no_active_hooks, model_config  # noqa: E402

import isoprobe.models.components.attention as attention_module  # noqa: E402
from isoprobe.engine.grid import Condition, InterventionEngine, build_conditions  # noqa: E402
from isoprobe.models import MMTConfig, build_model  # noqa: E402

LAYERS = range(5)
PATHWAYS = ("uni", "cross")
TOLERANCE = {False: 1e-5, True: 1e-2}  # fp32, bf16 autocast


@dataclass(frozen=True)
class Setting:
    name: str
    arch: str
    device: str
    batch: int
    bf16: bool = False


def build(arch: str, seed: int = 0) -> torch.nn.Module:
    config = model_config()
    if arch == "mmt":
        config = MMTConfig(groups=config.groups, n_classes=config.n_classes, sampling_rate=config.sampling_rate,
                           token=config.token, d_model=config.d_model, n_heads=config.n_heads, d_mlp=config.d_mlp,
                           dropout=config.dropout, n_layers=len(LAYERS))
    torch.manual_seed(seed)
    return build_model(config).eval()


def conditions() -> list[Condition]:
    return build_conditions("single", LAYERS, list(PATHWAYS))


def work_ratio(conds: list[Condition], n_layers: int) -> dict:
    """Shared-layer evaluations of each method: grid = clean pass + the layers from each condition's
    first intervened layer up; naive = (1 + conditions) full passes."""
    grid = n_layers + sum(n_layers - min(c.layers) for c in conds)
    naive = n_layers * (1 + len(conds))
    return {"grid_blocks": grid, "naive_blocks": naive, "grid_embeds": 1, "naive_embeds": 1 + len(conds),
            "explicit_blocks": sum(len(c.layers) for c in conds), "ratio": grid / naive}


@contextlib.contextmanager
def count_explicit():
    """Counts the attention calls that take the explicit-scores path (they call `safe_softmax`)."""
    original, calls = attention_module.safe_softmax, [0]

    def counted(scores):
        calls[0] += 1
        return original(scores)

    attention_module.safe_softmax = counted
    try:
        yield calls
    finally:
        attention_module.safe_softmax = original


class Runner:
    """A model, its engine, the grid and fixed random windows on the device."""

    def __init__(self, setting: Setting):
        self.setting = setting
        self.device = torch.device(setting.device)
        self.model = build(setting.arch).to(self.device)
        self.engine = InterventionEngine(self.model)
        self.conditions = conditions()
        generator = torch.Generator().manual_seed(1)
        self.inputs = [torch.randn(setting.batch, g.window, len(g.channels), generator=generator).to(self.device)
                       for g in self.model.config.groups]
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if setting.bf16 else contextlib.nullcontext

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def grid(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with self.autocast():
            return self.engine.run_grid(self.inputs, self.conditions)

    @torch.no_grad()
    def naive(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with self.autocast():
            return self.model(*self.inputs), self.engine.run_naive(self.inputs, self.conditions)

    def timed(self, method: str) -> float:
        self.sync()
        start = time.perf_counter()
        getattr(self, method)()
        self.sync()
        return time.perf_counter() - start

    def check(self) -> dict:
        """Same logits, no hook left behind, explicit attention exactly at the intervened layers."""
        explicit = {}
        outputs = {}
        for method in ("grid", "naive"):
            with count_explicit() as calls:
                outputs[method] = getattr(self, method)()
            explicit[method] = calls[0]
            assert_no_active_hooks(self.model)
        (clean_g, conds_g), (clean_n, conds_n) = outputs["grid"], outputs["naive"]
        difference = max([float((clean_g - clean_n).float().abs().max())]
                         + [float((a - b).float().abs().max()) for a, b in zip(conds_g, conds_n)])
        effect = max(float((a - clean_g).float().abs().max()) for a in conds_g)
        expected = work_ratio(self.conditions, self.engine.n_layers)["explicit_blocks"]
        name = self.setting.name
        assert len(conds_g) == len(conds_n) == len(self.conditions), f"{name}: wrong number of conditions"
        assert difference <= TOLERANCE[self.setting.bf16], f"{name}: grid and naive logits differ by {difference:.3g}"
        assert effect > 0, f"{name}: no condition changed the logits"
        assert explicit == {"grid": expected, "naive": expected}, \
            f"{name}: explicit-scores attention calls {explicit}, expected {expected} each (hooks left on a layer?)"
        return {"max_logit_difference": difference, "max_condition_effect": effect, "explicit_attention_calls": explicit}

    @torch.no_grad()
    def stage_round(self) -> dict[str, float]:
        """Seconds of each stage alone, once: the embedding, shared block 2 on the fused path, the same
        block with the `uni` mask hook (explicit path), the heads."""
        model, layer = self.model, 1
        with self.autocast():
            x = model.embed_stage(*self.inputs)
            parts = {"embed": lambda: model.embed_stage(*self.inputs), "block fused": lambda: model.block_stage(layer, x),
                     "block explicit": lambda: model.block_stage(layer, x), "heads": lambda: model.heads_stage(x)}
            times = {}
            for name, part in parts.items():
                # the mask hook is attached outside the timing: the grid pays for attaching once per condition
                hooks = self.engine.hooks(Condition((layer,), "uni")) if name == "block explicit" else []
                with model.hooks(fwd_hooks=hooks):
                    self.sync()
                    start = time.perf_counter()
                    part()
                    self.sync()
                    times[name] = time.perf_counter() - start
        assert_no_active_hooks(model)
        return times

    def stages(self, rounds: list[dict[str, float]]) -> dict:
        """Median ms of each stage over the rounds, and the grid and naive times they predict."""
        ms = {name: 1000 * statistics.median(r[name] for r in rounds) for name in rounds[0]}
        n, conds = self.engine.n_layers, self.conditions
        explicit = sum(len(c.layers) for c in conds)
        grid_fused = work_ratio(conds, n)["grid_blocks"] - explicit
        naive_fused = n * (1 + len(conds)) - explicit
        ms["predicted grid"] = (ms["embed"] + grid_fused * ms["block fused"] + explicit * ms["block explicit"]
                                + (1 + len(conds)) * ms["heads"])
        ms["predicted naive"] = (1 + len(conds)) * (ms["embed"] + ms["heads"]) + naive_fused * ms["block fused"] \
            + explicit * ms["block explicit"]
        return ms


def bench_setting(setting: Setting, repeats: int, warmup: int = 1) -> dict:
    if setting.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    runner = Runner(setting)
    checks = runner.check()  # runs both methods once: a first warm-up
    warmup_s = {method: sum(runner.timed(method) for _ in range(warmup)) for method in ("grid", "naive")}
    runner.stage_round()  # warm-up of the stage timings
    seconds: dict[str, list[float]] = {"grid": [], "naive": []}
    rounds = []
    for repeat in range(repeats):
        order = ("grid", "naive") if repeat % 2 == 0 else ("naive", "grid")
        for method in order:
            seconds[method].append(runner.timed(method))
        rounds.append(runner.stage_round())  # sampled in the same period as the two methods
    work = work_ratio(runner.conditions, runner.engine.n_layers)
    result = {"setting": setting.name, "arch": setting.arch, "device": setting.device, "batch": setting.batch,
              "bf16": setting.bf16, "conditions": len(runner.conditions), "repeats": repeats, "work": work, **checks}
    for method, times in seconds.items():
        median = statistics.median(times)
        result[method] = {"ms": 1000 * median, "best_ms": 1000 * min(times),
                          "spread": (max(times) - min(times)) / median, "warmup_s": warmup_s[method], "seconds": times,
                          "windows_per_s": setting.batch / median}
    result["ratio"] = result["grid"]["ms"] / result["naive"]["ms"]
    result["paired_ratio"] = statistics.median(g / n for g, n in zip(seconds["grid"], seconds["naive"]))
    result["stages_ms"] = runner.stages(rounds)
    if setting.device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def settings_for(device: str, batch: int | None, quick: bool) -> list[Setting]:
    settings = []
    if device in ("cpu", "auto"):
        cpu_batch = batch or (256 if quick else 512)
        settings += [Setting("cpu fp32", arch, "cpu", cpu_batch) for arch in ("hierarchical", "mmt")]
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available here")
        cuda_batch = batch or 4096
        for arch in ("hierarchical", "mmt"):
            settings += [Setting("cuda fp32", arch, "cuda", cuda_batch),
                         Setting("cuda bf16 autocast", arch, "cuda", cuda_batch, bf16=True)]
    return settings


def markdown(results: list[dict]) -> str:
    lines = [
        "| model | setting | batch | grid ms | naive ms | grid windows/s | naive windows/s | max \\|Δ logit\\| "
        "| work | grid / naive | paired |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        g, n = r["grid"], r["naive"]
        lines.append(f"| {r['arch']} | {r['setting']} | {r['batch']} | {g['ms']:,.1f} | {n['ms']:,.1f} | "
                     f"{g['windows_per_s']:,.0f} | {n['windows_per_s']:,.0f} | {r['max_logit_difference']:.1e} | "
                     f"{r['work']['ratio']:.2f} | **{r['ratio']:.2f}** | {r['paired_ratio']:.2f} |")
    lines += ["", f"{results[0]['conditions']} mask conditions (5 single layers and all layers × uni, cross) plus the "
              "clean forward; windows/s: windows through the whole grid per second. work: shared-layer evaluations "
              f"grid / naive ({results[0]['work']['grid_blocks']} / {results[0]['work']['naive_blocks']}). grid / naive: ratio of the median times; paired: median over repeats of the "
              "ratio of the two back-to-back timings."]
    staged = [r for r in results if r.get("stages_ms")]
    if staged:
        lines += ["", "| model | setting | embed ms | block fused ms | block explicit ms | heads ms | predicted grid ms "
                  "| predicted naive ms | predicted ratio |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in staged:
            s = r["stages_ms"]
            lines.append(f"| {r['arch']} | {r['setting']} | {s['embed']:.2f} | {s['block fused']:.2f} | "
                         f"{s['block explicit']:.2f} | {s['heads']:.2f} | {s['predicted grid']:.1f} | "
                         f"{s['predicted naive']:.1f} | {s['predicted grid'] / s['predicted naive']:.2f} |")
        lines += ["", "Stages timed alone, once per repeat between the two methods (median); predicted: their sum "
                  "over what each method evaluates (explicit blocks at the intervened layers, fused ones elsewhere, "
                  "heads once per condition and for the clean pass)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="cpu: the CPU settings only; cuda: the CUDA settings only; auto: CPU, and CUDA when available")
    parser.add_argument("--batch", type=int, default=None,
                        help="windows per grid (default: 512 on CPU, 256 with --quick; 4096 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per method, median reported (default: hierarchical 11 and mmt 7 on CPU, "
                             "15 on CUDA, 3 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="smaller batch, fewer repeats (a smoke test, < 30 s on CPU)")
    args = parser.parse_args()

    settings = settings_for(args.device, args.batch, args.quick)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print(f"grid: {', '.join(f'{c.layer_label} {c.pathway}' for c in conditions())}")
    results = []
    for setting in settings:
        on_cpu = setting.device == "cpu"
        default = 3 if args.quick else (11 if setting.arch == "hierarchical" else 7) if on_cpu else 15
        result = bench_setting(setting, args.repeats or default, warmup=0 if args.quick else 1)
        results.append(result)
        print(f"{setting.arch} {setting.name}: grid {result['grid']['ms']:,.1f} ms, naive {result['naive']['ms']:,.1f} ms, "
              f"ratio {result['ratio']:.3f} (paired {result['paired_ratio']:.3f}), "
              f"max |logit difference| {result['max_logit_difference']:.1e}", flush=True)

    print()
    print(markdown(results))
    if args.json:
        machine = f"{platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}"
        document = {"machine": machine, "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                    "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "grid": [f"{c.layer_label} {c.pathway}" for c in conditions()], "results": results}
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
