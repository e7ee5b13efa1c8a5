"""Schedules: the dual-head weight λ(t) of IsoNet and the learning rate (warm-up, cosine decay)."""

from __future__ import annotations

import math


def head_weight(epoch: int, epochs: int, switch_fraction: float = 0.375) -> float:
    """λ at (0-based) `epoch`: the weight of the CLS-head loss in λ·L_CLS + (1 − λ)·L_avg.

    Rises linearly from 0 at the first epoch to 1 at `switch_fraction × epochs` and stays 1 after;
    the paper's 750 of 2000 epochs is the default 0.375 (DESIGN §1)."""
    switch = switch_fraction * epochs
    if switch <= 0:
        return 1.0
    return min(1.0, epoch / switch)


def lr_factor(step: int, total_steps: int, warmup_steps: int, floor: float = 0.0) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to `floor`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
