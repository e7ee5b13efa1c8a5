"""`run_ablation`: the table's columns, the three modes, agreement with the engine, and the CLS
control on a trained checkpoint: with every edge into or out of CLS masked in every shared layer the
CLS head sees only the CLS embedding, so its logits are the same for every window and accuracy falls
to the rate of the one class it predicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from isoprobe.engine.ablate import COLUMNS, AblationConfig, run_ablation
from isoprobe.engine.grid import Condition, InterventionEngine, build_conditions
from isoprobe.engine.stats import condition_row
from isoprobe.errors import ConfigError
from isoprobe.training.checkpoint import load_checkpoint
from isoprobe.training.run import checkpoint_data


@pytest.fixture(scope="module")
def split(db2):
    test = db2.splits["test"]
    index = np.arange(0, len(test), 3)  # 44 windows, every class
    return {name: np.asarray(x[index]) for name, x in test.x.items()}, test.y[index]


def run(model, split, reference=None, **options):
    windows, labels = split
    return run_ablation(model, windows, labels, AblationConfig(**({"bootstrap": 50} | options)), reference=reference)


def test_columns_and_types(hier, split):
    table = run(hier, split, layers="2", pathway="cross")
    assert isinstance(table, pd.DataFrame) and tuple(table.columns) == COLUMNS
    row = table.iloc[0]
    assert (row.layers, row.pathway, row.heads, row.intervention) == ("L2", "cross", "all", "mask")
    assert row.n == len(split[1])
    assert 0 <= row.accuracy <= 1 and 0 <= row.base_accuracy <= 1
    assert row["drop"] == pytest.approx(row.base_accuracy - row.accuracy)
    assert row.drop_ci_low <= row["drop"] <= row.drop_ci_high
    assert 0 < row.p_value <= 1 and row.kl >= 0


def test_single_mode_gives_each_layer_then_all_together(hier, split):
    table = run(hier, split, layers="all", pathway="cross,uni", heads="1")
    assert list(table.layers) == ["L1", "L1", "L2", "L2", "L3", "L3", "L1-L3", "L1-L3"]
    assert list(table.pathway) == ["cross", "uni"] * 4
    assert set(table.heads) == {"1"}


def test_cumulative_and_joint_modes(hier, split):
    cumulative = run(hier, split, layers="1-3", pathway="cls", mode="cumulative")
    assert list(cumulative.layers) == ["L1", "L1-L2", "L1-L3"]
    joint = run(hier, split, layers="1,3", pathway="uni", mode="joint")
    assert list(joint.layers) == ["L1,L3"]
    single = run(hier, split, layers="2", pathway="uni", mode="single")
    assert list(single.layers) == ["L2"]  # one layer: no separate "all together" row


def test_modes_against_build_conditions():
    assert build_conditions("single", (2, 0), ["cross"]) == [
        Condition((0,), "cross"), Condition((2,), "cross"), Condition((0, 2), "cross")]
    assert [c.layers for c in build_conditions("cumulative", (0, 1, 2), ["uni"])] == [(0,), (0, 1), (0, 1, 2)]
    assert [c.layers for c in build_conditions("joint", (0, 1, 2), ["uni", "cls"])] == [(0, 1, 2)] * 2
    with pytest.raises(ConfigError, match="--mode"):
        build_conditions("sequential", (0,), ["uni"])
    with pytest.raises(ConfigError, match="--intervention"):
        build_conditions("single", (0,), ["uni"], intervention="zero")


def test_rows_equal_the_statistics_of_the_engines_logits(hier, split):
    windows, labels = split
    table = run(hier, split, layers="1-2", pathway="uni,cls", mode="joint", bootstrap=80, seed=3)
    engine = InterventionEngine(hier)
    inputs = [torch.as_tensor(windows[name]) for name in hier.modality_names]
    conditions = [Condition((0, 1), "uni"), Condition((0, 1), "cls")]
    with torch.no_grad():
        base = hier(*inputs)
    for row, logits in zip(table.itertuples(), engine.run_naive(inputs, conditions)):
        expected = condition_row(base, logits, torch.as_tensor(labels).long(), 80, 3)
        for key, value in expected.items():
            assert getattr(row, key) == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_batching_does_not_change_the_masking_rows(hier, split):
    whole = run(hier, split, layers="all", pathway="cross,cls", batch_size=512)
    pieces = run(hier, split, layers="all", pathway="cross,cls", batch_size=7)
    pd.testing.assert_frame_equal(whole, pieces, atol=1e-6, rtol=0)


def test_mean_and_resample_run_through_the_table(hier, split, db2):
    mean = run(hier, split, layers="1", pathway="cross", intervention="mean",
               reference={k: np.asarray(v) for k, v in db2.splits["train"].x.items()})
    assert list(mean.intervention) == ["mean"] and mean.kl.iloc[0] > 0
    resample = run(hier, split, layers="1", pathway="cross", intervention="resample")
    assert list(resample.intervention) == ["resample"] and resample.kl.iloc[0] > 0
    assert resample.kl.iloc[0] != pytest.approx(mean.kl.iloc[0])


@pytest.mark.parametrize("option, value", [("batch_size", 0), ("batch_size", -2), ("bootstrap", -1)])
def test_config_refuses_impossible_counts(option, value):
    with pytest.raises(ConfigError, match=option.replace("_", "-")):
        AblationConfig(**{option: value})


def test_no_windows_is_refused(hier, split):
    windows, labels = split
    empty = {name: x[:0] for name, x in windows.items()}
    with pytest.raises(ConfigError, match="no windows"):
        run_ablation(hier, empty, labels[:0], AblationConfig(bootstrap=10))


# --- the CLS control on a trained checkpoint -----------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint_model(trained):
    loaded = load_checkpoint(trained)
    return loaded.build_model(), checkpoint_data(loaded).splits["test"]


def test_isolating_cls_makes_the_logits_input_independent(checkpoint_model):
    model, test = checkpoint_model
    engine = InterventionEngine(model)
    condition = Condition(tuple(range(engine.n_layers)), "cls")
    first = [torch.as_tensor(np.asarray(test.x[name][:20])) for name in model.modality_names]
    second = [torch.as_tensor(np.asarray(test.x[name][-20:])) for name in model.modality_names]
    clean_1, (logits_1,) = engine.run_grid(first, [condition])
    clean_2, (logits_2,) = engine.run_grid(second, [condition])
    logits = torch.cat([logits_1, logits_2])
    torch.testing.assert_close(logits, logits[:1].expand_as(logits), atol=1e-5, rtol=0)
    assert (clean_1 - clean_1[:1]).abs().max() > 1e-2  # the clean model does look at its input
    # masking one layer fewer leaves a path from the windows to CLS
    (partial,) = engine.run_naive(first, [Condition(tuple(range(engine.n_layers - 1)), "cls")])
    assert (partial - partial[:1]).abs().max() > 1e-3


def test_isolating_cls_drops_accuracy_to_the_predicted_class_rate(checkpoint_model):
    model, test = checkpoint_model
    labels = np.asarray(test.y)
    table = run_ablation(model, {k: np.asarray(v) for k, v in test.x.items()}, labels,
                         AblationConfig(layers="all", pathway="cls", mode="joint", bootstrap=100, batch_size=50))
    row = table.iloc[0]
    counts = np.bincount(labels)
    majority = counts.max() / counts.sum()
    assert counts.min() == counts.max()  # the synthetic test split is balanced: every constant guess scores the majority rate
    assert row.accuracy == pytest.approx(majority)
    assert row.base_accuracy > majority + 0.2
    assert row["drop"] == pytest.approx(row.base_accuracy - majority)
    assert row.p_value < 1e-3
