"""The dual-head weight λ(t) and the learning-rate schedule: exact values, and what a real run records
and optimises (DESIGN §1: L(t) = λ(t)·L_CLS + (1 − λ(t))·L_avg, only the CLS head by epoch 750 of 2000)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from isoprobe.training.schedule import head_weight, lr_factor
from isoprobe.training.trainer import TrainConfig, dual_head_loss, train

from tests.training.conftest import tiny_model


@pytest.mark.parametrize("epoch, expected", [(0, 0.0), (150, 0.2), (375, 0.5), (600, 0.8), (749, 749 / 750),
                                             (750, 1.0), (751, 1.0), (1999, 1.0)])
def test_head_weight_paper_schedule(epoch, expected):
    assert head_weight(epoch, 2000) == expected
    assert head_weight(epoch, 2000, 0.375) == expected


def test_head_weight_is_linear_then_flat():
    values = [head_weight(e, 40, 0.5) for e in range(40)]
    assert values[:20] == [e / 20 for e in range(20)]
    assert values[20:] == [1.0] * 20
    assert all(b >= a for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("epochs", [1, 7, 2000])
def test_head_weight_switch_zero_trains_cls_head_only(epochs):
    assert [head_weight(e, epochs, 0.0) for e in range(epochs)] == [1.0] * epochs


def test_head_weight_switch_one_never_reaches_one_inside_training():
    assert head_weight(9, 10, 1.0) == pytest.approx(0.9)
    assert head_weight(10, 10, 1.0) == 1.0


def test_lr_factor_warmup_then_cosine():
    total, warmup = 110, 10
    assert [lr_factor(s, total, warmup) for s in range(warmup)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lr_factor(warmup, total, warmup) == 1.0
    assert lr_factor(60, total, warmup) == pytest.approx(0.5)  # half-way through the decay: cos(π/2) = 0
    assert lr_factor(35, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(total, total, warmup) == pytest.approx(0.0)
    assert lr_factor(total + 50, total, warmup) == pytest.approx(0.0)  # stays at the floor past the end
    assert lr_factor(60, total, warmup, floor=0.1) == pytest.approx(0.55)
    assert lr_factor(total, total, warmup, floor=0.1) == pytest.approx(0.1)
    decay = [lr_factor(s, total, warmup) for s in range(warmup, total + 1)]
    assert all(b <= a for a, b in zip(decay, decay[1:]))


def test_dual_head_loss_matches_cross_entropy_by_hand():
    generator = torch.Generator().manual_seed(0)
    heads = {"main": torch.randn(8, 5, generator=generator), "avg": torch.randn(8, 5, generator=generator)}
    target = torch.randint(0, 5, (8,), generator=generator)
    main, avg = F.cross_entropy(heads["main"], target), F.cross_entropy(heads["avg"], target)
    loss, parts = dual_head_loss(heads, target, 0.3)
    assert loss.item() == pytest.approx(0.3 * main.item() + 0.7 * avg.item())
    assert parts == pytest.approx({"loss_main": main.item(), "loss_avg": avg.item()})
    single, parts = dual_head_loss({"main": heads["main"]}, target, 0.3)  # one head: its loss, whatever λ
    assert single.item() == pytest.approx(main.item()) and set(parts) == {"loss_main"}


def test_run_records_lambda_loss_and_lr_per_epoch(hierarchical_run):
    lines = (hierarchical_run.out / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    config, data = hierarchical_run.config, hierarchical_run.data
    assert [r["epoch"] for r in records] == list(range(1, config.epochs + 1))
    assert [r["lambda"] for r in records] == [head_weight(e, config.epochs, config.head_switch_fraction)
                                              for e in range(config.epochs)]
    assert [r["lambda"] for r in records] == [0.0, 0.5, 1.0, 1.0]
    for r in records:
        # the hierarchical model has two heads; the logged loss is the one optimised
        assert r["loss"] == pytest.approx(r["lambda"] * r["loss_main"] + (1 - r["lambda"]) * r["loss_avg"], rel=1e-6)
    assert records[0]["loss"] == pytest.approx(records[0]["loss_avg"]) != pytest.approx(records[0]["loss_main"])
    # lr after each epoch: the schedule evaluated at the number of optimiser steps taken so far
    steps = math.ceil(len(data.splits["train"]) / config.batch_size)
    warmup = max(1, int(config.warmup_fraction * steps * config.epochs))
    for r in records:
        assert r["lr"] == pytest.approx(config.lr * lr_factor(r["epoch"] * steps, steps * config.epochs, warmup))
    assert records[-1]["lr"] == pytest.approx(0.0)
    assert hierarchical_run.result.history == records


def test_lambda_zero_leaves_cls_head_untouched(db2_data, tmp_path):
    """At λ = 0 only the average head learns: without weight decay the CLS head keeps its initial weights."""
    model = tiny_model(db2_data)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=2, head_switch_fraction=0.5, weight_decay=0.0, device="cpu")
    train(model, db2_data, config, tmp_path, progress=False, stop_after=1)
    state = model.state_dict()
    assert torch.equal(state["head_cls.weight"], initial["head_cls.weight"])
    assert torch.equal(state["head_cls.bias"], initial["head_cls.bias"])
    assert not torch.equal(state["head_avg.weight"], initial["head_avg.weight"])
    # the shared stage learns through the average head
    assert not torch.equal(state["blocks.0.attn.qkv.weight"], initial["blocks.0.attn.qkv.weight"])
