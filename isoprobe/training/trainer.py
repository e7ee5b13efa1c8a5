"""Training as the IsoNet paper does it: dual-head loss λ(t)·L_CLS + (1 − λ(t))·L_avg, AdamW with
warm-up and cosine decay, model selection on validation repetitions, exact CPU repeatability and
resumable runs (DESIGN §1, §3, §6)."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from isoprobe.atomic import write_text_atomic
from isoprobe.data.pipeline import PreparedData
from isoprobe.engine.grid import attached
from isoprobe.errors import ConfigError, DataFormatError
from isoprobe.provenance import provenance
from isoprobe.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from isoprobe.training.metrics import evaluate, predict_logits
from isoprobe.training.dropout import PathwayDropout
from isoprobe.training.schedule import head_weight, lr_factor

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT, LAST, METRICS, PROVENANCE = "checkpoint.pt", "last.pt", "metrics.jsonl", "provenance.json"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    head_switch_fraction: float = 0.375  # λ reaches 1 here: 750 of 2000 epochs in the paper
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # autocast on CUDA only
    save_every: int = 1  # epochs between last.pt snapshots
    gain_jitter: float = 0.3  # augmentation: each training window's channels scaled by exp(N(0, σ²)); 0 turns it off
    # (pathway, rate) pairs, 0 < rate < 1: edges dropped per window and shared layer in training
    # (isoprobe.training.dropout); rate 1 is the model's `removed_pathways` instead
    pathway_dropout: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError("epochs", self.epochs, "train for at least one epoch")
        if self.batch_size < 1:
            raise ConfigError("batch_size", self.batch_size, "must be positive")
        if self.device not in DEVICES:
            raise ConfigError("device", self.device, f"choose one of {', '.join(DEVICES)}")
        if not 0.0 <= self.gain_jitter < 2.0:
            raise ConfigError("gain_jitter", self.gain_jitter, "a log-normal σ in [0, 2); 0 turns the augmentation off")
        if not 0.0 <= self.head_switch_fraction <= 1.0:
            raise ConfigError("head_switch_fraction", self.head_switch_fraction, "a fraction of training in [0, 1]")
        object.__setattr__(self, "pathway_dropout", tuple((str(p), float(r)) for p, r in self.pathway_dropout))
        for pathway, rate in self.pathway_dropout:
            if not 0.0 <= rate < 1.0:
                raise ConfigError("pathway_dropout", f"{pathway}:{rate:g}", "a training dropout rate lies in [0, 1); "
                                  "rate 1 removes the pathway from the model (removed_pathways)")

    def resolve_device(self) -> torch.device:
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device", "cuda", "no CUDA device is available here; use --device cpu or auto")
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    test: dict = field(default_factory=dict)


def _tensors(data: PreparedData, split: str, device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
    windows = data.splits[split]
    x = [torch.as_tensor(np.asarray(windows.x[g.name]), device=device) for g in data.groups]
    return x, torch.as_tensor(windows.y, device=device)


def jitter_gain(windows: torch.Tensor, sigma: float) -> torch.Tensor:
    """Scale each window's channels by a random log-normal gain: [batch, time, channel] -> same.

    Repetitions differ mostly in effort and electrode contact, i.e. per-channel gain; with a handful
    of repetitions a model otherwise learns to recognise the repetition instead of the gesture."""
    gain = torch.exp(sigma * torch.randn(windows.shape[0], 1, windows.shape[2], device=windows.device))
    return windows * gain


def dual_head_loss(heads: dict[str, torch.Tensor], target: torch.Tensor, weight: float) -> tuple[torch.Tensor, dict]:
    """λ·CE(CLS head) + (1 − λ)·CE(average head); a single-head model trains on its one head. The parts
    are detached 0-d tensors: reading them with .item() every step would make the CPU wait for the GPU."""
    main = F.cross_entropy(heads["main"].float(), target)
    if "avg" not in heads:
        return main, {"loss_main": main.detach()}
    avg = F.cross_entropy(heads["avg"].float(), target)
    return weight * main + (1.0 - weight) * avg, {"loss_main": main.detach(), "loss_avg": avg.detach()}


def _snapshot(model, data, config, history, best: _Best, extra=None, provenance=None) -> Checkpoint:
    return Checkpoint(
        model_config=model.config,
        state_dict=best.state,
        data_config=data.config,
        zscore=data.zscore,
        class_labels=data.class_labels,
        class_names=data.class_names,
        train_config=asdict(config),
        history=history,
        synth=data.synth,
        metrics={"best_epoch": best.epoch, "validation_accuracy": best.accuracy},
        extra=extra or {},
        provenance=provenance or {},
    )


def _changed_options(last: Checkpoint, config: TrainConfig, model: torch.nn.Module, data: PreparedData) -> list[str]:
    """What differs between the run that wrote last.pt and this one. Training, model and data options all
    count: weights resumed into another model or onto other windows would not continue the same run.
    The data folder alone may move."""

    def short(value) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    pairs = (
        ("training", last.train_config, asdict(config)),
        ("model", last.model_config.to_dict(), model.config.to_dict()),
        ("data", {**last.data_config.to_dict(), "root": None}, {**data.config.to_dict(), "root": None}),
    )
    return [f"{what} {key}: {short(old.get(key))} in {LAST}, {short(new.get(key))} now"
            for what, old, new in pairs for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


@dataclass
class _Optimisation:
    """What a resumed run restores besides the weights: the optimiser and its schedule, and every random
    stream the run draws from (shuffling, pathway dropout, gain jitter's torch generator)."""

    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    shuffle: torch.Generator
    dropout: PathwayDropout | None
    steps_per_epoch: int

    @classmethod
    def start(cls, model: torch.nn.Module, config: TrainConfig, n_train: int) -> _Optimisation:
        steps_per_epoch = math.ceil(n_train / config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        warmup = max(1, int(config.warmup_fraction * total_steps))
        optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: lr_factor(step, total_steps, warmup))
        shuffle = torch.Generator().manual_seed(config.seed)
        dropout = PathwayDropout(model, config.pathway_dropout, config.seed) if config.pathway_dropout else None
        return cls(optimiser, scheduler, shuffle, dropout, steps_per_epoch)

    def state(self, device: torch.device) -> dict:
        return {"optimiser": self.optimiser.state_dict(), "scheduler": self.scheduler.state_dict(),
                "shuffle_rng": self.shuffle.get_state(), "torch_rng": torch.get_rng_state(),
                "dropout_rng": self.dropout.generator.get_state() if self.dropout else None,
                "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None}

    def restore(self, state: dict, device: torch.device) -> None:
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.shuffle.set_state(state["shuffle_rng"])
        if self.dropout is not None and state.get("dropout_rng") is not None:
            self.dropout.generator.set_state(state["dropout_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])


@dataclass
class _Best:
    """The weights of the best validation epoch so far (epoch 0, accuracy −1 before any)."""

    state: dict
    epoch: int = 0
    accuracy: float = -1.0


def train(
    model: torch.nn.Module,
    data: PreparedData,
    config: TrainConfig,
    out: Path,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    command: Sequence[str] | None = None,
) -> TrainResult:
    """Train `model` on `data`, writing `out/checkpoint.pt` (best validation epoch), `out/last.pt`
    (for --resume) and `out/metrics.jsonl`. `stop_after` ends the run after that many epochs, as
    if interrupted (last.pt stays; no final checkpoint). What made the run (isoprobe.provenance, with the
    `command` that ran it) goes into `out/provenance.json` and every checkpoint."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = config.resolve_device()
    made_by = provenance(data=data, device=device, seeds={"seed": config.seed}, command=command,
                         recipe={"train_config": asdict(config), "model_config": model.config.to_dict()})
    write_text_atomic(out / PROVENANCE, json.dumps(made_by, indent=2))
    torch.manual_seed(config.seed)
    model.to(device)
    train_x, train_y = _tensors(data, "train", device)
    loop = _Optimisation.start(model, config, len(train_y))
    history: list[dict] = []
    best, start_epoch = _Best(copy.deepcopy(model.state_dict())), 0
    if resume and (out / LAST).is_file():
        history, best, start_epoch = _resume(out / LAST, model, data, config, loop, device)

    bar = _progress(config.epochs, start_epoch, progress)
    for epoch in range(start_epoch, config.epochs):
        if stop_after is not None and epoch >= stop_after:
            break
        started = time.perf_counter()
        weight = head_weight(epoch, config.epochs, config.head_switch_fraction)
        fitted = _train_epoch(model, loop, train_x, train_y, weight, config, device)
        val_accuracy, val_loss = _validate(model, data, device)
        record = {"epoch": epoch + 1, "lambda": weight, "lr": loop.scheduler.get_last_lr()[0], **fitted,
                  "val_accuracy": val_accuracy, "val_loss": val_loss, "seconds": time.perf_counter() - started}
        history.append(record)
        if val_accuracy > best.accuracy:  # first best wins ties: earlier, simpler models
            best = _Best({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, epoch + 1, val_accuracy)
        _write_metrics(out / METRICS, history)
        if (epoch + 1) % config.save_every == 0 or epoch + 1 == config.epochs:
            trainer_state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                             **loop.state(device), "epoch": epoch + 1, "best_epoch": best.epoch, "best_val": best.accuracy}
            save_checkpoint(out / LAST, _snapshot(model, data, config, history, best, {"trainer": trainer_state}, made_by))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lam=f"{weight:.2f}", acc=f"{record['train_accuracy']:.3f}",
                            val=f"{val_accuracy:.3f}")
    if bar is not None:
        bar.close()

    checkpoint = _snapshot(model, data, config, history, best, provenance=made_by)
    result = TrainResult(checkpoint, history, best.epoch)
    if stop_after is not None and len(history) < config.epochs:
        return result
    model.load_state_dict(best.state)
    _test(model, data, device, result)
    save_checkpoint(out / CHECKPOINT, checkpoint)
    return result


def _resume(path: Path, model: torch.nn.Module, data: PreparedData, config: TrainConfig, loop: _Optimisation,
            device: torch.device) -> tuple[list[dict], _Best, int]:
    """Restore the run that wrote `path` (last.pt) into `model` and `loop`, refusing one with other options:
    (history so far, best epoch so far, epochs done)."""
    last = load_checkpoint(path)
    state = last.extra.get("trainer")
    if not state:
        raise DataFormatError(path, "holds no training state to resume from (was it copied from a checkpoint.pt?); "
                              "start afresh in another --out folder", "extra")
    changed = _changed_options(last, config, model, data)
    if changed:
        raise DataFormatError(path, f"was written by a run with other options ({'; '.join(changed[:4])}"
                              f"{' …' if len(changed) > 4 else ''}); resume with the same options or start afresh in "
                              "another --out folder", "train_config" if changed[0].startswith("training") else None)
    model.load_state_dict(state["model"])
    loop.restore(state, device)
    log.info("resuming %s after epoch %d", path, state["epoch"])
    return last.history, _Best(last.state_dict, state["best_epoch"], state["best_val"]), state["epoch"]


def _train_epoch(model: torch.nn.Module, loop: _Optimisation, train_x: list[torch.Tensor], train_y: torch.Tensor,
                 weight: float, config: TrainConfig, device: torch.device) -> dict:
    """One pass over the training windows in a fresh shuffled order: the mean losses per window (loss,
    loss_main, loss_avg) and the training accuracy."""
    model.train()
    n_train = len(train_y)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and config.bf16)
    order = torch.randperm(n_train, generator=loop.shuffle).to(device)
    # Accumulated on the device in float64 (the same arithmetic as Python floats), read once per epoch.
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), dtype=torch.long, device=device)
    for step in range(loop.steps_per_epoch):
        index = order[step * config.batch_size : (step + 1) * config.batch_size]
        target = train_y[index]
        inputs = [x[index] for x in train_x]
        if config.gain_jitter > 0:
            inputs = [jitter_gain(x, config.gain_jitter) for x in inputs]
        with autocast, attached(model, loop.dropout.hooks(len(index), device) if loop.dropout else []):
            heads = model.forward_heads(*inputs)
        loss, parts = dual_head_loss(heads, target, weight)
        loop.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimiser.step()
        loop.scheduler.step()
        for key, value in {"loss": loss.detach(), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value.double() * len(index)
        correct += (heads["main"].argmax(-1) == target).sum()
    return {**{key: float(value) / n_train for key, value in sums.items()}, "train_accuracy": int(correct) / n_train}


def _validate(model: torch.nn.Module, data: PreparedData, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the validation repetitions."""
    split = data.splits["validation"]
    logits = predict_logits(model, split, tuple(g.name for g in data.groups), device=device)
    accuracy = evaluate(logits.argmax(-1).numpy(), split.y, data.n_classes).accuracy
    return accuracy, float(F.cross_entropy(logits, torch.as_tensor(split.y)).item())


def _test(model: torch.nn.Module, data: PreparedData, device: torch.device, result: TrainResult) -> None:
    """The selected model's test metrics, into the result and its checkpoint."""
    split = data.splits["test"]
    logits = predict_logits(model, split, tuple(g.name for g in data.groups), device=device)
    test = evaluate(logits.argmax(-1).numpy(), split.y, data.n_classes)
    result.test = test.to_dict(data.class_names)
    result.checkpoint.metrics.update(test_accuracy=test.accuracy, test_balanced_accuracy=test.balanced_accuracy)


def _write_metrics(path: Path, history: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in history))


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="training", unit="epoch", leave=True, dynamic_ncols=True)
