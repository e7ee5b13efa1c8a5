"""Intervention-engine benchmark, in two parts (`--part grid|stats|all`, default all).

Part 1 (grid): a full IsoNet grid by `run_grid` (shared prefix) against a naive loop.

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
at the intervened layers (counted: Σ over conditions of their number of layers; conditions null by
construction run in neither, both return the clean logits) and the fused
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

Part 2 (stats): the statistics of a grid, `isoprobe.engine.stats.grid_statistics`, against the
project's target: "the statistics of a grid of 18 conditions over 10,000 windows with 1,000
bootstrap resamples take at most a second on two cores (vectorised)". Inputs are seeded random
logits: clean [10000, 17] and 18 rows of [draw, 10000, 17] with 1 draw (mask, mean) or 3 (resample);
the targets are laid out as a test split is, each of the 17 classes in contiguous segments (its
repetitions) of unequal length: 2 per class (34 segments, a DB2 test split) or 18 (306 segments).
Correctness is made to depend on the segment, as it does for overlapping windows. The call is the
one `run_ablation` makes with its default configuration: 1,000 bootstrap resamples, 9,999
sign-flip patterns, seed 0.

The reference, in the same run, is the plain way to get the drop CIs: a Python loop over the 1,000
resamples, each drawing segments with replacement within each class (np.random; Rao & Wu's rescaled
bootstrap) and computing each row's drop with numpy on the weighted windows, then drop ± t × SD. It
draws other random numbers, so before timing the two must agree in distribution: the same point drops
(≤ 1e-12), and each drop-CI endpoint within 5 Monte Carlo SDs of the reference's (about 0.33 bootstrap
SDs of the row's drop; see STATS_TOLERANCE_MC_SD). As a negative control, a bootstrap of
windows instead of segments must fall outside that tolerance. Timed interleaved after the check,
median of the repeats, with the process pinned to two CPUs (torch two threads; numpy's BLAS too
where threadpoolctl is installed). Reported: vectorised and reference seconds, their ratio (the
reference computes the drop CIs alone, the vectorised call everything, so the ratio understates the
speed-up) and pass/fail against the 1-second target.

    python benchmarks/bench_engine.py                    # both parts: CPU, and CUDA settings when a GPU is there
    python benchmarks/bench_engine.py --device cpu --quick
    python benchmarks/bench_engine.py --part stats
    python benchmarks/bench_engine.py --json engine.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

try:  # optional: limits numpy's BLAS threads for the two-core statistics target
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import assert_no_active_hooks, model_config  # noqa: E402

import isoprobe.models.components.attention as attention_module  # noqa: E402
from isoprobe.engine.grid import Condition, GridRun, InterventionEngine, build_conditions  # noqa: E402
from isoprobe.engine.stats import Segments, grid_statistics  # noqa: E402
from scipy.stats import t as scipy_t  # noqa: E402
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


def work_ratio(conds: list[Condition], n_layers: int, runs=lambda condition: True) -> dict:
    """Shared-layer evaluations of each method: grid = clean pass + the layers from each condition's
    first intervened layer up; naive = (1 + conditions) full passes. Conditions null by construction
    (`runs` false: the last layer's uni and cross on the hierarchical model, every cross on the mmt)
    run in neither: both return the clean logits, run_naive after one clean pass of its own."""
    ran = [c for c in conds if runs(c)]
    passes = 1 + len(ran) + (len(ran) < len(conds))
    grid = n_layers + sum(n_layers - min(c.layers) for c in ran)
    naive = n_layers * passes
    return {"grid_blocks": grid, "naive_blocks": naive, "grid_embeds": 1, "naive_embeds": passes,
            "explicit_blocks": sum(len(c.layers) for c in ran), "null_conditions": len(conds) - len(ran),
            "ratio": grid / naive}


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
    def grid(self) -> GridRun:
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
        (clean_g, conds_g), (clean_n, conds_n) = (outputs["grid"].clean, outputs["grid"].logits), outputs["naive"]
        difference = max([float((clean_g - clean_n).float().abs().max())]
                         + [float((a - b).float().abs().max()) for a, b in zip(conds_g, conds_n)])
        effect = max(float((a - clean_g).float().abs().max()) for a in conds_g)
        expected = work_ratio(self.conditions, self.engine.n_layers, self.engine.runs)["explicit_blocks"]
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
        work = work_ratio(conds, n, self.engine.runs)
        explicit, ran = work["explicit_blocks"], len(conds) - work["null_conditions"]
        grid_fused = work["grid_blocks"] - explicit
        naive_fused = work["naive_blocks"] - explicit
        ms["predicted grid"] = (ms["embed"] + grid_fused * ms["block fused"] + explicit * ms["block explicit"]
                                + (1 + ran) * ms["heads"])
        ms["predicted naive"] = work["naive_embeds"] * (ms["embed"] + ms["heads"]) + naive_fused * ms["block fused"] \
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
    work = work_ratio(runner.conditions, runner.engine.n_layers, runner.engine.runs)
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
    null = ", ".join(dict.fromkeys(f"{r['arch']} {r['work'].get('null_conditions', 0)}" for r in results))
    lines += ["", f"{results[0]['conditions']} mask conditions (5 single layers and all layers × uni, cross) plus the "
              f"clean forward; null by construction, so run by neither method (clean logits returned): {null}. "
              "windows/s: windows through the whole grid per second. work: shared-layer evaluations "
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

# --- part 2: the statistics of a grid ------------------------------------------------------------

STATS_WINDOWS, STATS_CLASSES, STATS_ROWS = 10_000, 17, 18
STATS_BOOTSTRAP, STATS_PERMUTATIONS, STATS_LEVEL, STATS_SEED = 1000, 9999, 0.95, 0
STATS_TARGET_S, STATS_CORES = 1.0, 2
# Two intervals drop ± t·SD from independent sets of B resamples differ by Monte Carlo error alone: the
# SD of B draws has a relative SD of about 1/sqrt(2(B − 1)) (normal approximation; a drop is a mean over
# ≥ 34 segments), so an endpoint differs by t·σ·sqrt(2/(2(B − 1))) ≈ 0.07 σ for t ≈ 2.1, B = 1000 (σ: the
# bootstrap SD of the row's drop). Five of those SDs fail by chance with probability ~6e-7 per endpoint,
# while a bootstrap of windows instead of segments lands well outside (the negative control).
STATS_TOLERANCE_MC_SD = 5.0


def stats_tolerance_sd(bootstrap: int = STATS_BOOTSTRAP, level: float = STATS_LEVEL, degrees_of_freedom: int = 17) -> float:
    """Tolerance on a CI endpoint, in bootstrap SDs of the row's drop (see STATS_TOLERANCE_MC_SD)."""
    return STATS_TOLERANCE_MC_SD * scipy_t.ppf((1 + level) / 2, degrees_of_freedom) / math.sqrt(bootstrap - 1)


@dataclass(frozen=True)
class StatsSetting:
    repetitions: int  # segments per class: 2 as in a DB2 test split (repetitions 2 and 5); 18 for ~300 segments
    draws: int  # logits per row: 1 (mask, mean) or 3 (resample)

    @property
    def segments(self) -> int:
        return STATS_CLASSES * self.repetitions

    @property
    def name(self) -> str:
        return f"{self.segments} segments × {self.draws} draw{'s' if self.draws > 1 else ''}"


STATS_SETTINGS = tuple(StatsSetting(repetitions, draws) for repetitions in (2, 18) for draws in (1, 3))


def stats_inputs(setting: StatsSetting, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, np.ndarray]:
    """Seeded random (base [window, class], intervened per row [draw, window, class], target [window],
    segments [window]) laid out like a test split: per class, `repetitions` contiguous segments of
    unequal length (±25 %), numbered (class, repetition) in sorted order as `WindowSet.segment` does.

    Correctness depends on the segment, as it does for the overlapping windows of one repetition: each
    segment has a difficulty (the true-class logit of the clean model) and each row hits each segment
    with its own strength. Without that a bootstrap of windows would give the same intervals as the
    cluster bootstrap, and the check could not tell them apart."""
    rng = np.random.default_rng(seed)
    n, n_classes, n_segments = STATS_WINDOWS, STATS_CLASSES, setting.segments
    lengths = rng.uniform(0.75, 1.25, n_segments)
    ends = np.round(np.cumsum(lengths) / lengths.sum() * n).astype(int)
    segments = np.repeat(np.arange(n_segments), np.diff(ends, prepend=0))  # [window], class-major
    target = segments // setting.repetitions
    true_class = np.eye(n_classes)[target]  # [window, class]
    difficulty = rng.normal(size=n_segments)[segments]  # [window]
    base = rng.normal(size=(n, n_classes)) + true_class * (1.5 + difficulty)[:, None]
    strength = np.linspace(0.0, 2.0, STATS_ROWS)  # [row]: the first row only adds noise
    hit = np.exp(0.5 * rng.normal(size=(n_segments, STATS_ROWS)))[segments]  # [window, row]
    intervened = [base - true_class * (strength[r] * hit[:, r])[:, None]
                  + 0.5 * rng.normal(size=(setting.draws, n, n_classes)) for r in range(STATS_ROWS)]
    return (torch.from_numpy(base).float(), [torch.from_numpy(x).float() for x in intervened],
            torch.from_numpy(target), segments)


def vectorised_statistics(base: torch.Tensor, intervened: list[torch.Tensor], target: torch.Tensor,
                          segments: np.ndarray, permutations: int = STATS_PERMUTATIONS) -> list[dict]:
    return grid_statistics(base, intervened, target, Segments.of(segments, target.numpy()), bootstrap=STATS_BOOTSTRAP,
                           permutations=permutations, seed=STATS_SEED, level=STATS_LEVEL)


def reference_drops(base: torch.Tensor, intervened: list[torch.Tensor], target: torch.Tensor, segments: np.ndarray,
                    bootstrap: int = STATS_BOOTSTRAP, seed: int = STATS_SEED, level: float = STATS_LEVEL) -> dict:
    """The drop of each row and its interval, the plain way: a Python loop over the resamples, each
    drawing, within every class of n segments, n − 1 of them with replacement (np.random, another
    stream than `grid_statistics`: other draws, the same distribution), weighting each drawn segment
    n/(n − 1) (Rao & Wu's rescaled bootstrap), and computing each row's drop with numpy from the
    weighted windows; the interval is drop ± t_{segments − classes} × the resamples' SD. A row's
    correctness per window is the mean over its draws. Returns drop, low, high [row] and the resampled
    drops [resample, row]."""
    rng = np.random.default_rng(seed)
    target = target.numpy()
    base_correct = (base.numpy().argmax(axis=1) == target).astype(np.float64)  # [window]
    correct = np.stack([(x.numpy().argmax(axis=-1) == target).mean(axis=0) for x in intervened], axis=1)  # [window, row]
    ids = np.unique(segments)
    members = {s: np.flatnonzero(segments == s) for s in ids}  # windows of each segment
    classes = {}
    for s in ids:
        classes.setdefault(int(target[members[s][0]]), []).append(s)
    samples = np.empty((bootstrap, len(intervened)))
    for b in range(bootstrap):
        weight = np.zeros(len(target))
        for group in classes.values():
            for s in rng.choice(group, size=len(group) - 1, replace=True):
                weight[members[s]] += len(group) / (len(group) - 1)
        samples[b] = (weight @ base_correct - weight @ correct) / weight.sum()
    drop = base_correct.mean() - correct.mean(axis=0)
    half = scipy_t.ppf((1 + level) / 2, len(ids) - len(classes)) * samples.std(axis=0, ddof=1)
    return {"drop": drop, "low": drop - half, "high": drop + half, "samples": samples}


def ci_deviation(rows: list[dict], reference: dict) -> float:
    """Largest |difference| of a drop-CI endpoint from the reference's, in bootstrap SDs of that row's drop."""
    endpoints = np.array([[r["drop_ci_low"] for r in rows], [r["drop_ci_high"] for r in rows]])  # [2, row]
    difference = np.abs(endpoints - np.stack([reference["low"], reference["high"]]))
    sd = reference["samples"].std(axis=0, ddof=1)  # [row]
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.where(difference == 0, 0.0, difference / sd).max())


def stats_check(setting: StatsSetting, inputs: tuple, rows: list[dict], reference: dict) -> dict:
    """The same point drops (to rounding), CI endpoints within the tolerance of the reference's, and a
    negative control: the vectorised statistics with each window its own segment (a bootstrap of
    windows) must fail that tolerance."""
    base, intervened, target, segments = inputs
    name, tolerance = setting.name, stats_tolerance_sd(degrees_of_freedom=setting.segments - STATS_CLASSES)
    drop_difference = float(np.abs(np.array([r["drop"] for r in rows]) - reference["drop"]).max())
    deviation = ci_deviation(rows, reference)
    windows = vectorised_statistics(base, intervened, target, np.arange(len(target)), permutations=0)  # window = segment
    control = ci_deviation(windows, reference)
    assert len(rows) == STATS_ROWS and all(r["segments"] == setting.segments and r["draws"] == setting.draws for r in rows), \
        f"{name}: wrong rows, segments or draws"
    assert drop_difference <= 1e-12, f"{name}: drops differ from the reference by {drop_difference:.3g}"
    assert deviation <= tolerance, f"{name}: a drop-CI endpoint is {deviation:.2f} σ from the reference's (tolerance {tolerance:.2f} σ)"
    assert control > tolerance, f"{name}: a window bootstrap is only {control:.2f} σ from the reference: the check has no power here"
    return {"max_drop_difference": drop_difference, "max_ci_deviation_sd": deviation, "tolerance_sd": tolerance,
            "window_bootstrap_deviation_sd": control, "mean_ci_width": float(np.mean(reference["high"] - reference["low"]))}


@contextlib.contextmanager
def on_cores(n: int):
    """The target is set on two cores: the process pinned to n of its CPUs (Linux), torch limited to n
    threads and, where threadpoolctl is installed, numpy's BLAS too; all restored afterwards. Without
    threadpoolctl a BLAS pool started with more threads shares the n cores. Yields the CPUs in use."""
    threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with contextlib.ExitStack() as stack:
        if threadpool_limits is not None:
            stack.enter_context(threadpool_limits(limits=n))
        try:
            if affinity is not None and len(affinity) > n:
                os.sched_setaffinity(0, sorted(affinity)[:n])
            torch.set_num_threads(min(n, threads))
            yield len(os.sched_getaffinity(0)) if affinity is not None else os.cpu_count()
        finally:
            torch.set_num_threads(threads)
            if affinity is not None:
                os.sched_setaffinity(0, affinity)


def bench_stats_setting(setting: StatsSetting, repeats: int) -> dict:
    inputs = stats_inputs(setting)
    methods = {"vectorised": lambda: vectorised_statistics(*inputs), "reference": lambda: reference_drops(*inputs)}
    checks = stats_check(setting, inputs, methods["vectorised"](), methods["reference"]())  # also the warm-up
    seconds: dict[str, list[float]] = {"vectorised": [], "reference": []}
    for repeat in range(repeats):
        for method in (("vectorised", "reference") if repeat % 2 == 0 else ("reference", "vectorised")):
            start = time.perf_counter()
            methods[method]()
            seconds[method].append(time.perf_counter() - start)
    result = {"setting": setting.name, "windows": STATS_WINDOWS, "classes": STATS_CLASSES, "rows": STATS_ROWS,
              "draws": setting.draws, "segments": setting.segments, "bootstrap": STATS_BOOTSTRAP,
              "permutations": STATS_PERMUTATIONS, "repeats": repeats, **checks}
    for method, times in seconds.items():
        median = statistics.median(times)
        result[method] = {"s": median, "best_s": min(times), "spread": (max(times) - min(times)) / median, "seconds": times}
    result["ratio"] = result["vectorised"]["s"] / result["reference"]["s"]
    result["paired_ratio"] = statistics.median(v / r for v, r in zip(seconds["vectorised"], seconds["reference"]))
    result["target_s"] = STATS_TARGET_S
    result["passed"] = result["vectorised"]["s"] <= STATS_TARGET_S
    return result


def bench_stats(repeats: int) -> dict:
    with on_cores(STATS_CORES) as cores:
        threads = torch.get_num_threads()
        print(f"statistics on {cores} CPU{'s' if cores > 1 else ''}, torch {threads} threads, "
              f"BLAS threads {'limited' if threadpool_limits is not None else 'not limited (no threadpoolctl)'}", flush=True)
        results = []
        for setting in STATS_SETTINGS:
            result = bench_stats_setting(setting, repeats)
            results.append(result)
            print(f"statistics {setting.name}: vectorised {result['vectorised']['s']:.3f} s, reference "
                  f"{result['reference']['s']:.3f} s, ratio {result['ratio']:.3f} (paired {result['paired_ratio']:.3f}), "
                  f"{'pass' if result['passed'] else 'FAIL'} (target {STATS_TARGET_S:g} s), CI endpoints within "
                  f"{result['max_ci_deviation_sd']:.2f} σ (window bootstrap {result['window_bootstrap_deviation_sd']:.2f} σ)",
                  flush=True)
    return {"cores": cores, "torch_threads": threads, "blas_threads_limited": threadpool_limits is not None,
            "target_s": STATS_TARGET_S,
            "target": "the statistics of a grid of 18 conditions over 10,000 windows with 1,000 bootstrap resamples "
                      "take at most a second on two cores", "results": results}


def stats_markdown(stats: dict) -> str:
    lines = ["| setting | windows | rows | vectorised s | reference s | vectorised / reference | paired "
             f"| ≤ {STATS_TARGET_S:g} s | CI deviation | window bootstrap |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in stats["results"]:
        lines.append(f"| {r['setting']} | {r['windows']:,} | {r['rows']} | {r['vectorised']['s']:.3f} | "
                     f"{r['reference']['s']:.3f} | **{r['ratio']:.2f}** | {r['paired_ratio']:.2f} | "
                     f"{'pass' if r['passed'] else '**FAIL**'} | {r['max_ci_deviation_sd']:.2f} σ | "
                     f"{r['window_bootstrap_deviation_sd']:.2f} σ |")
    first = stats["results"][0]
    lines += ["", f"`grid_statistics` on {first['classes']} classes, {first['bootstrap']:,} bootstrap resamples of "
              f"segments and a {first['permutations']:,}-pattern sign-flip test, on {stats['cores']} CPU"
              f"{'s' if stats['cores'] > 1 else ''} (target: at most {STATS_TARGET_S:g} s on two cores); median of "
              f"{first['repeats']} repeats interleaved with the reference. reference: a Python loop over the resamples "
              "computing the drop CIs alone, so the ratio understates the speed-up (the vectorised time also covers "
              "the chance-corrected and margin CIs, KL and the p-values). CI deviation: largest |difference| of a "
              "drop-CI endpoint from the reference's, in bootstrap SDs of the row's drop (tolerance "
              f"{first['tolerance_sd']:.2f} σ at 34 segments: 5 Monte Carlo SDs of the difference of two t-interval endpoints "
              "from independent resamples); "
              "window bootstrap: the same for a bootstrap of windows instead of segments, which the check must reject."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("grid", "stats", "all"), default="all",
                        help="grid: run_grid against the naive loop; stats: grid_statistics against its loop reference; "
                             "all: both")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="cpu: the CPU settings only; cuda: the CUDA settings only; auto: CPU, and CUDA when available "
                             "(grid part; the statistics run on the CPU)")
    parser.add_argument("--batch", type=int, default=None,
                        help="windows per grid (default: 512 on CPU, 256 with --quick; 4096 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per method, median reported (default: grid hierarchical 11 and mmt 7 on "
                             "CPU, 15 on CUDA; statistics 7; 3 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, and a smaller grid batch (a smoke test, < 30 s per part on an idle CPU)")
    args = parser.parse_args()

    settings = settings_for(args.device, args.batch, args.quick) if args.part in ("grid", "all") else []
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    if settings:
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
    stats = bench_stats(args.repeats or (3 if args.quick else 7)) if args.part in ("stats", "all") else None

    tables = ([markdown(results)] if results else []) + ([stats_markdown(stats)] if stats else [])
    print()
    print("\n\n".join(tables))
    if args.json:
        machine = f"{platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}"
        document = {"machine": machine, "torch": torch.__version__, "numpy": np.__version__,
                    "cpu_threads": torch.get_num_threads(),
                    "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
        if results:
            document |= {"grid": [f"{c.layer_label} {c.pathway}" for c in conditions()], "results": results}
        if stats:
            document["stats"] = stats
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
