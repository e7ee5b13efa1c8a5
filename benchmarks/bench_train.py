"""Training-throughput benchmark: isoprobe's HierarchicalTransformer against a plain-PyTorch twin.

Both models have the same shape (DB2-like: sEMG 12 ch and ACC 36 ch, 400-sample windows cut into
20 ms time patches at 2 kHz -> 10 + 10 tokens plus CLS; d_model 64, 4 heads, d_mlp 128, one encoder
layer per modality, five shared layers, dropout 0.1, CLS and average heads). (a) is built by
`isoprobe.models.build_model`, with its TransformerLens hook points in place and none active;
(b) is written below with nn.Linear / nn.LayerNorm / scaled_dot_product_attention and no hooks.
Before timing, (b) is loaded with (a)'s weights and must compute the same logits, so both do the
same work.

One training step = forward + cross-entropy on the CLS head + backward + AdamW step, on random
input tensors already on the device. The two models are timed interleaved (a b, b a, ...) after a
warm-up and the median of the repeats is reported; the ratio isoprobe/plain is the number to
track, windows/s depend on the machine.

Settings: CPU fp32 eager (batch 256, torch's default thread count); with CUDA also batch 4096
fp32 eager (torch's default matmul precision, TF32 off), bf16 autocast eager and bf16 autocast
torch.compile (the model is compiled, the optimiser step is not; warm-up includes compilation).

    python benchmarks/bench_train.py                  # CPU, and CUDA settings when a GPU is there
    python benchmarks/bench_train.py --device cpu --quick
    python benchmarks/bench_train.py --json train.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from isoprobe.data.tokens import TokenConfig
from isoprobe.models import GroupSpec, HierarchicalConfig, build_model

SAMPLING_RATE = 2000.0
WINDOW = 400  # 200 ms at 2 kHz
N_CLASSES = 49  # NinaPro DB2 exercises B-D, rest dropped


def model_config() -> HierarchicalConfig:
    token = TokenConfig()  # 20 ms time patches
    patch = int(round(token.patch_ms * SAMPLING_RATE / 1000))
    groups = tuple(
        GroupSpec(name, name, tuple(range(channels)), WINDOW, WINDOW // patch, patch * channels)
        for name, channels in (("emg", 12), ("acc", 36))
    )
    return HierarchicalConfig(groups=groups, n_classes=N_CLASSES, sampling_rate=SAMPLING_RATE, token=token,
                              d_model=64, n_heads=4, d_mlp=128, dropout=0.1, n_encoder_layers=1, n_layers=5)


# --- (b) the plain-PyTorch reference ---------------------------------------------------------------


class PlainBlock(nn.Module):
    """Pre-LN transformer block: x + drop(attn(ln1 x)), then + drop(mlp(ln2 x))."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int, dropout: float):
        super().__init__()
        self.n_heads, self.p_attn = n_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.fc_in, self.fc_out = nn.Linear(d_model, d_mlp), nn.Linear(d_mlp, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, pos, d_model = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(batch, pos, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        z = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p_attn if self.training else 0.0)
        x = x + self.drop(self.out(z.transpose(1, 2).reshape(batch, pos, d_model)))
        return x + self.drop(self.fc_out(F.gelu(self.fc_in(self.ln2(x)))))


class PlainHierarchical(nn.Module):
    """The hierarchical transformer without hooks: per-modality patch embedding and encoder, then the
    shared stage over CLS + all tokens, ln_final, CLS head (returned) and average head (computed)."""

    def __init__(self, config: HierarchicalConfig):
        super().__init__()
        d = config.d_model
        self.n_tokens = [g.n_tokens for g in config.groups]
        self.channels = [len(g.channels) for g in config.groups]
        # patch embedding input: the raw patch plus each channel's log power (isoprobe's patch_energy)
        self.project = nn.ModuleList(nn.Linear(g.d_token + len(g.channels), d) for g in config.groups)
        self.pos_embed = nn.Parameter(torch.randn(1 + sum(self.n_tokens), d) * 0.02)
        self.modality_embed = nn.Parameter(torch.randn(len(config.groups) + 1, d) * 0.02)
        self.cls_token = nn.Parameter(torch.randn(d) * 0.02)

        def block() -> PlainBlock:
            return PlainBlock(d, config.n_heads, config.d_mlp, config.dropout)

        self.encoders = nn.ModuleList(nn.Sequential(*(block() for _ in range(config.n_encoder_layers))) for _ in config.groups)
        self.blocks = nn.Sequential(*(block() for _ in range(config.n_layers)))
        self.ln_final = nn.LayerNorm(d)
        self.head_cls, self.head_avg = nn.Linear(d, config.n_classes), nn.Linear(d, config.n_classes)

    def forward_heads(self, *windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = windows[0].shape[0]
        parts = [(self.cls_token + self.pos_embed[0] + self.modality_embed[0]).expand(batch, 1, -1)]
        start = 1
        for index, (w, n) in enumerate(zip(windows, self.n_tokens)):
            tokens = w.reshape(batch, n, -1)  # [batch, (pos time), channel] -> [batch, pos, (time channel)]
            power = w.reshape(batch, n, -1, self.channels[index]).pow(2).mean(dim=2)
            tokens = torch.cat([tokens, torch.log(power + 1e-4)], dim=-1)
            x = self.project[index](tokens) + self.pos_embed[start : start + n] + self.modality_embed[index + 1]
            parts.append(self.encoders[index](x))
            start += n
        x = self.ln_final(self.blocks(torch.cat(parts, dim=1)))
        return self.head_cls(x[:, 0]), self.head_avg(x[:, 1:].mean(dim=1))

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        return self.forward_heads(*windows)[0]

    @torch.no_grad()
    def load_isoprobe(self, model: nn.Module) -> None:
        """Copy the weights of isoprobe's HierarchicalTransformer (GroupedLinear weight [1, in, out])."""

        def linear(dst: nn.Linear, src) -> None:
            dst.weight.copy_(src.weight[0].T)
            dst.bias.copy_(src.bias[0])

        def norm(dst: nn.LayerNorm, src) -> None:
            dst.weight.copy_(src.weight[0])
            dst.bias.copy_(src.bias[0])

        def block(dst: PlainBlock, src) -> None:
            for name in ("ln1", "ln2"):
                norm(getattr(dst, name), getattr(src, name))
            for name, part in (("qkv", src.attn.qkv), ("out", src.attn.out), ("fc_in", src.mlp.fc_in), ("fc_out", src.mlp.fc_out)):
                linear(getattr(dst, name), part)

        for index, group in enumerate(model.config.groups):
            self.project[index].load_state_dict(model.embed.project[group.module_name].state_dict())
            for dst, src in zip(self.encoders[index], model.encoders[group.module_name].blocks):
                block(dst, src)
        self.pos_embed.copy_(model.embed.pos_embed)
        self.modality_embed.copy_(model.embed.modality_embed)
        self.cls_token.copy_(model.embed.cls_token)
        for dst, src in zip(self.blocks, model.blocks):
            block(dst, src)
        norm(self.ln_final, model.ln_final)
        self.head_cls.load_state_dict(model.head_cls.state_dict())
        self.head_avg.load_state_dict(model.head_avg.state_dict())


# --- measurement ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    device: str
    batch: int
    bf16: bool = False
    compile: bool = False


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_pair(config: HierarchicalConfig, seed: int = 0) -> tuple[nn.Module, PlainHierarchical]:
    torch.manual_seed(seed)
    isoprobe_model = build_model(config)
    plain = PlainHierarchical(config)
    plain.load_isoprobe(isoprobe_model)
    return isoprobe_model, plain


def check_same_function(config: HierarchicalConfig) -> float:
    """Largest |logit difference| of the two models with the same weights (eval mode, CPU fp32)."""
    isoprobe_model, plain = build_pair(config)
    isoprobe_model.eval()
    plain.eval()
    generator = torch.Generator().manual_seed(1)
    windows = [torch.randn(8, g.window, len(g.channels), generator=generator) for g in config.groups]
    with torch.no_grad():
        ours, theirs = isoprobe_model.forward_heads(*windows), plain.forward_heads(*windows)
    return max(float((ours["main"] - theirs[0]).abs().max()), float((ours["avg"] - theirs[1]).abs().max()))


def assert_no_active_hooks(model: nn.Module) -> int:
    """Number of HookPoints in `model`; fails if any carries a hook."""
    from isoprobe.models.components.attention import _has_hooks

    hooks = list(model.hook_dict.values())
    assert not any(_has_hooks(h) for h in hooks), "a hook is active"
    return len(hooks)


class Runner:
    """A model, its AdamW optimiser and fixed random inputs on the device; `run(n)` times n steps."""

    def __init__(self, model: nn.Module, config: HierarchicalConfig, setting: Setting):
        self.device = torch.device(setting.device)
        self.batch = setting.batch
        self.model = model.to(self.device).train()
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.01)
        generator = torch.Generator(device=self.device).manual_seed(2)
        self.windows = [torch.randn(setting.batch, g.window, len(g.channels), device=self.device, generator=generator)
                        for g in config.groups]
        self.target = torch.randint(0, config.n_classes, (setting.batch,), device=self.device, generator=generator)
        self.forward = torch.compile(self.model) if setting.compile else self.model
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if setting.bf16 else contextlib.nullcontext
        self.loss = float("nan")

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> torch.Tensor:
        with self.autocast():
            logits = self.forward(*self.windows)
        loss = F.cross_entropy(logits.float(), self.target)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return loss

    def run(self, steps: int) -> float:
        """Seconds for `steps` training steps (device synchronised at both ends)."""
        self.sync()
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.step()
        self.sync()
        elapsed = time.perf_counter() - start
        self.loss = float(loss.detach())
        return elapsed


def bench_setting(config: HierarchicalConfig, setting: Setting, steps: int, repeats: int, warmup: int) -> dict:
    if setting.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    isoprobe_model, plain = build_pair(config)
    runners = {"isoprobe": Runner(isoprobe_model, config, setting), "plain": Runner(plain, config, setting)}
    warmup_s = {}
    for name, runner in runners.items():  # includes torch.compile's compilation in the compiled setting
        warmup_s[name] = runner.run(warmup)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for repeat in range(repeats):
        order = ("isoprobe", "plain") if repeat % 2 == 0 else ("plain", "isoprobe")  # a b, b a, ...
        for name in order:
            seconds[name].append(runners[name].run(steps))
    result = {"setting": setting.name, "device": setting.device, "batch": setting.batch, "bf16": setting.bf16,
              "compile": setting.compile, "steps": steps, "repeats": repeats, "warmup_steps": warmup}
    for name, times in seconds.items():
        median = statistics.median(times)
        result[name] = {
            "windows_per_s": setting.batch * steps / median,
            "ms_per_step": 1000 * median / steps,
            "best_ms_per_step": 1000 * min(times) / steps,
            "spread": (max(times) - min(times)) / median,  # (max - min) / median of the repeats
            "warmup_s": warmup_s[name],
            "final_loss": runners[name].loss,
            "seconds": times,  # per repeat of `steps` steps
        }
    result["ratio"] = result["isoprobe"]["windows_per_s"] / result["plain"]["windows_per_s"]
    # Each repeat times the two models back to back: the median of those paired ratios is less
    # sensitive to a machine whose load drifts during the run.
    result["paired_ratio"] = statistics.median(p / i for i, p in zip(seconds["isoprobe"], seconds["plain"]))
    if setting.device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    for runner in runners.values():
        assert math.isfinite(runner.loss), f"{setting.name}: the loss is not finite"
    return result


def settings_for(device: str, batch: int | None) -> list[Setting]:
    settings = []
    if device in ("cpu", "auto"):
        settings.append(Setting("cpu fp32 eager", "cpu", batch or 256))
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available here")
        cuda_batch = batch or 4096
        settings += [
            Setting("cuda fp32 eager", "cuda", cuda_batch),
            Setting("cuda bf16 autocast eager", "cuda", cuda_batch, bf16=True),
            Setting("cuda bf16 autocast compile", "cuda", cuda_batch, bf16=True, compile=True),
        ]
    return settings


def markdown(results: list[dict]) -> str:
    lines = [
        "| setting | batch | isoprobe windows/s | plain windows/s | isoprobe ms/step | plain ms/step | isoprobe / plain | paired |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        a, b = r["isoprobe"], r["plain"]
        lines.append(f"| {r['setting']} | {r['batch']} | {a['windows_per_s']:,.0f} | {b['windows_per_s']:,.0f} | "
                     f"{a['ms_per_step']:.1f} | {b['ms_per_step']:.1f} | **{r['ratio']:.2f}** | {r['paired_ratio']:.2f} |")
    lines.append("")
    lines.append("isoprobe / plain: ratio of the median windows/s; paired: median over repeats of the ratio of the "
                 "two back-to-back timings.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="cpu: the CPU setting only; cuda: the CUDA settings only; auto: CPU, and CUDA when available")
    parser.add_argument("--batch", type=int, default=None, help="windows per step (default: 256 on CPU, 4096 on CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default: 4 on CPU, 20 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per model, median reported (default: 15 on CPU, 9 on CUDA, 5 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke test, < 30 s on CPU)")
    args = parser.parse_args()

    config = model_config()
    difference = check_same_function(config)
    isoprobe_model, plain = build_pair(config)
    counts = {"isoprobe": n_parameters(isoprobe_model), "plain": n_parameters(plain)}
    n_hooks = assert_no_active_hooks(isoprobe_model)
    print(f"parameters: isoprobe {counts['isoprobe']:,}, plain {counts['plain']:,} "
          f"(plain / isoprobe = {counts['plain'] / counts['isoprobe']:.4f})")
    print(f"isoprobe hook points: {n_hooks}, none active; max |logit difference| with shared weights: {difference:.2e}")
    assert abs(counts["plain"] / counts["isoprobe"] - 1) < 0.03, "the models differ in size"
    assert difference < 1e-4, "the reference does not compute the same function"

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    results = []
    for setting in settings_for(args.device, args.batch):
        on_cpu = setting.device == "cpu"
        default_steps = (1 if args.quick else 4) if on_cpu else (5 if args.quick else 20)
        steps = args.steps or default_steps
        repeats = args.repeats or (5 if args.quick else 15 if on_cpu else 9)
        warmup = 3 if setting.compile or not on_cpu else 2
        result = bench_setting(config, setting, steps, repeats, warmup)
        results.append(result)
        print(f"{setting.name}: isoprobe {result['isoprobe']['windows_per_s']:,.0f} windows/s, "
              f"plain {result['plain']['windows_per_s']:,.0f} windows/s, ratio {result['ratio']:.3f}", flush=True)

    print()
    print(markdown(results))
    if args.json:
        machine = f"{platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}"
        document = {
            "machine": machine, "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "parameters": counts, "hook_points": n_hooks, "max_logit_difference": difference, "results": results,
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
