"""`run_ablation` and `ablation_logits`: the table's columns, the three modes, agreement with the
engine and the statistics, donors fixed by the seed alone (not by batch size or window order),
draws, rows null by construction, and the CLS control on a trained checkpoint: with every edge into
or out of CLS masked in every shared layer the CLS head sees only the CLS embedding, so its logits
are the same for every window and accuracy falls to the rate of the one class it predicts."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from isoprobe.analysis import load_analysis
from isoprobe.engine.ablate import COLUMNS, AblationConfig, AblationResult, ablation_logits, run_ablation
from isoprobe.engine.donors import donor_indices
from isoprobe.engine.grid import Condition, InterventionEngine, build_conditions
from isoprobe.engine.stats import Segments, grid_statistics
from isoprobe.errors import ConfigError
from tests.tolerance import FLOAT32, assert_close


@pytest.fixture(scope="module")
def split(db2):
    test = db2.splits["test"]
    return test.take(np.arange(0, len(test), 3))  # 44 windows, every class, 12 segments


def run(model, split, reference=None, **options) -> pd.DataFrame:
    return run_ablation(model, split, AblationConfig(**({"bootstrap": 50} | options)), reference=reference).table


def test_columns_and_types(hier, split):
    result = run_ablation(hier, split, AblationConfig(layers="2", pathway="cross", bootstrap=50))
    assert isinstance(result, AblationResult)
    table = result.to_frame()
    assert isinstance(table, pd.DataFrame) and tuple(table.columns) == COLUMNS
    row = table.iloc[0]
    assert (row.layers, row.pathway, row.heads, row.intervention, row.draws) == ("L2", "cross", "all", "mask", 1)
    assert row.windows == len(split) and row.segments == len(np.unique(split.segment)) == 12
    assert 0 <= row.accuracy <= 1 and 0 <= row.base_accuracy <= 1
    assert row["drop"] == pytest.approx(row.base_accuracy - row.accuracy)
    assert row.drop_ci_low <= row["drop"] <= row.drop_ci_high
    assert 0 < row.p_value <= 1 and row.p_holm == row.p_value  # one row: Holm changes nothing
    assert row.kl >= 0 and not row.null_by_construction
    document = result.to_dict()
    assert document["config"]["layers"] == "2" and len(document["rows"]) == 1
    document["rows"][0]["drop"] = 99  # a copy, not the result's own state
    assert result.table["drop"].iloc[0] != 99


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


def test_a_union_is_one_row_and_a_comma_makes_rows(hier, split):
    table = run(hier, split, layers="1-3", pathway="cross+relay,cross", mode="joint")
    assert list(table.pathway) == ["cross+relay", "cross"]
    assert table.accuracy.iloc[0] != table.accuracy.iloc[1] or table.kl.iloc[0] != table.kl.iloc[1]


def test_modes_against_build_conditions():
    assert build_conditions("single", (2, 0), ["cross"]) == [
        Condition((0,), "cross"), Condition((2,), "cross"), Condition((0, 2), "cross")]
    assert [c.layers for c in build_conditions("cumulative", (0, 1, 2), ["uni"])] == [(0,), (0, 1), (0, 1, 2)]
    assert [c.layers for c in build_conditions("joint", (0, 1, 2), ["uni", "cls"])] == [(0, 1, 2)] * 2
    assert [c.draw for c in build_conditions("joint", (0,), ["uni"], intervention="resample", draws=3)] == [0, 1, 2]
    with pytest.raises(ConfigError, match="^mode"):
        build_conditions("sequential", (0,), ["uni"])
    with pytest.raises(ConfigError, match="^intervention"):
        build_conditions("single", (0,), ["uni"], intervention="zero")
    with pytest.raises(ConfigError, match="^draws"):
        build_conditions("single", (0,), ["uni"], intervention="mask", draws=2)


def test_rows_equal_the_statistics_of_the_engines_logits(hier, split):
    table = run(hier, split, layers="1-2", pathway="uni,cls", mode="joint", bootstrap=80, seed=3)
    engine = InterventionEngine(hier)
    inputs = [torch.as_tensor(split.x[name]) for name in hier.modality_names]
    conditions = [Condition((0, 1), "uni"), Condition((0, 1), "cls")]
    with torch.no_grad():
        base = hier(*inputs)
    logits = [x[None] for x in engine.run_naive(inputs, conditions)]
    expected = grid_statistics(base, logits, torch.as_tensor(split.y), Segments.of_windows(split), 80, 9999, 3)
    for row, values in zip(table.itertuples(), expected):
        for key, value in values.items():
            # float32 logits of two code paths: numbers to 1e-5 · max(1, |value|), the caveat's text exactly
            numeric = isinstance(value, (int, float))
            assert getattr(row, key) == (pytest.approx(value, rel=FLOAT32, abs=FLOAT32, nan_ok=True) if numeric else value), key


@pytest.mark.parametrize("intervention", ["mask", "resample"])
def test_batching_does_not_change_the_rows(hier, split, intervention):
    options = dict(layers="all", pathway="cross,cls", intervention=intervention)
    whole = run(hier, split, batch_size=512, **options)
    pieces = run(hier, split, batch_size=7, **options)
    # other batch sizes sum in another order: float32 rounding, scaled to the values (rtol, atol floor)
    pd.testing.assert_frame_equal(whole, pieces, check_exact=False, atol=FLOAT32, rtol=FLOAT32)


def test_same_seed_same_resample_logits_at_any_batch_size(hier, split):
    """Donors are drawn over the whole set by the seed alone: batch sizes 1, 7, 64 and 4096 give the
    same logits (1: every batch a single window, which is not left unchanged)."""
    config = dict(layers="1-3", pathway="cls,cross", intervention="resample", mode="joint", seed=5)
    results = {size: ablation_logits(hier, split, AblationConfig(batch_size=size, **config)) for size in (1, 7, 64, 4096)}
    reference = results[4096]
    for size, result in results.items():
        assert_close(result.clean, reference.clean)
        for condition in reference.conditions:
            assert_close(result.logits[condition], reference.logits[condition], msg=lambda m: f"batch size {size}: {m}")
    single = results[1].logits[reference.conditions[0]]
    assert ((single - results[1].clean).abs().amax(dim=1) > 1e-4).float().mean() > 0.5  # windows really changed
    other_seed = ablation_logits(hier, split, AblationConfig(batch_size=64, **(config | {"seed": 6})))
    assert (other_seed.logits[reference.conditions[0]] - reference.logits[reference.conditions[0]]).abs().max() > 1e-3


def test_resample_equals_the_engine_with_the_drawn_donors(hier, split):
    """The table's resample logits are the engine run with donor_indices' donors, whatever the batch."""
    config = AblationConfig(layers="2", pathway="cross", intervention="resample", seed=2, donor="other-class", batch_size=9)
    result = ablation_logits(hier, split, config)
    donors = donor_indices(len(split), 2, 0, split.y, split.start, "other-class")
    assert (split.y[donors] != split.y).all()
    inputs = [torch.as_tensor(split.x[name]) for name in hier.modality_names]
    donor_inputs = [x[torch.as_tensor(donors)] for x in inputs]
    (expected,) = InterventionEngine(hier).run_naive(inputs, result.conditions, donors=[donor_inputs])
    assert_close(result.logits[result.conditions[0]], expected)


def test_window_order_does_not_change_resample(hier, split):
    """Donors follow the windows (keyed by their first sample), not their positions."""
    config = AblationConfig(layers="1-2", pathway="cross", intervention="resample", mode="joint", seed=1)
    order = np.random.default_rng(0).permutation(len(split))
    straight = ablation_logits(hier, split, config)
    shuffled = ablation_logits(hier, split.take(order), config)
    condition = straight.conditions[0]
    assert_close(shuffled.logits[condition], straight.logits[condition][order])
    # the same windows in another order: float32 logits may round differently, scaled tolerance
    pd.testing.assert_frame_equal(run_ablation(hier, split, config).table, run_ablation(hier, split.take(order), config).table,
                                  check_exact=False, atol=FLOAT32, rtol=FLOAT32)


def test_draws_make_one_row_with_their_mean_and_spread(hier, split):
    config = dict(layers="1", pathway="cross,cls", intervention="resample", seed=4)
    table = run(hier, split, draws=3, **config)
    assert list(table.pathway) == ["cross", "cls"] and (table.draws == 3).all()
    single = run(hier, split, **config).accuracy  # one draw: draw 0 of seed 4
    grid = ablation_logits(hier, split, AblationConfig(draws=3, **config))
    target = torch.as_tensor(split.y)
    per_draw = [[float((grid.logits[c].argmax(1) == target).double().mean()) for c in grid.conditions if c.row.pathway == p]
                for p in ("cross", "cls")]
    for row, accuracies in zip(table.itertuples(), per_draw):
        assert row.accuracy == pytest.approx(np.mean(accuracies))
        assert row.accuracy_draw_sd == pytest.approx(np.std(accuracies, ddof=1), nan_ok=True)
    np.testing.assert_allclose(single.to_numpy(), [a[0] for a in per_draw])  # draw 0 is the single draw
    assert table.accuracy_draw_sd.notna().all()


def test_mean_and_resample_run_through_the_table(hier, split, db2):
    mean = run(hier, split, layers="1", pathway="cross", intervention="mean", reference=db2.splits["train"])
    assert list(mean.intervention) == ["mean"] and mean.kl.iloc[0] > 0
    resample = run(hier, split, layers="1", pathway="cross", intervention="resample")
    assert list(resample.intervention) == ["resample"] and resample.kl.iloc[0] > 0
    assert resample.kl.iloc[0] != pytest.approx(mean.kl.iloc[0])


def test_rows_null_by_construction_are_marked_and_left_out_of_holm(hier, split):
    """At the last shared layer uni and cross cannot reach the CLS head: marked, no Holm p-value."""
    table = run(hier, split, layers="2-3", pathway="uni,cross,cls,readout")
    null = dict(zip(zip(table.layers, table.pathway), table.null_by_construction))
    assert null == {("L2", "uni"): False, ("L2", "cross"): False, ("L2", "cls"): False, ("L2", "readout"): False,
                    ("L3", "uni"): True, ("L3", "cross"): True, ("L3", "cls"): False, ("L3", "readout"): False,
                    ("L2-L3", "uni"): False, ("L2-L3", "cross"): False, ("L2-L3", "cls"): False,
                    ("L2-L3", "readout"): False}
    marked = table[table.null_by_construction]
    assert marked.p_holm.isna().all() and (marked.accuracy == marked.base_accuracy).all()
    # the engine returns the clean logits for them: no change at all, not float noise
    assert (marked.logit_margin_change == 0).all() and (marked.kl == 0).all() and (marked["drop"] == 0).all()
    assert (table[~table.null_by_construction].kl > 0).all()
    family = table[~table.null_by_construction]
    assert family.p_holm.notna().all() and (family.p_holm >= family.p_value - 1e-12).all()


@pytest.mark.parametrize("intervention", ["mask", "resample"])
def test_cross_on_the_multimodal_transformer_is_null_by_construction(mmt, split, intervention):
    """No cross edge exists in the mmt: every number of a cross row says "no change", exactly."""
    table = run(mmt, split, layers="all", pathway="cross,uni", intervention=intervention)
    cross, uni = table[table.pathway == "cross"], table[table.pathway == "uni"]
    assert cross.null_by_construction.all() and not uni.null_by_construction.any()
    for column in ("drop", "drop_ci_low", "drop_ci_high", "logit_margin_change", "logit_margin_change_ci_low",
                   "logit_margin_change_ci_high", "kl"):
        assert (cross[column] == 0).all(), column
    assert (uni.kl > 1e-3).all()  # the negative control: unimodal edges exist, and they matter


@pytest.mark.parametrize("option, value", [("batch_size", 0), ("batch_size", -2), ("bootstrap", -1), ("draws", 0),
                                           ("permutations", -1), ("intervention", "zero"), ("mode", "sequential"),
                                           ("donor", "same-class"), ("level", 1.5)])
def test_config_refuses_impossible_values_naming_the_field(option, value):
    with pytest.raises(ConfigError, match=f"^{option}"):
        AblationConfig(**{option: value})


def test_draws_need_resample():
    with pytest.raises(ConfigError, match="^draws"):
        AblationConfig(draws=2, intervention="mask")
    assert AblationConfig.from_dict(AblationConfig(draws=2, intervention="resample").to_dict()).draws == 2
    with pytest.raises(ConfigError, match="unknown fields"):
        AblationConfig.from_dict({"layer": "1"})


def test_no_windows_is_refused(hier, split):
    with pytest.raises(ConfigError, match="no windows"):
        run_ablation(hier, split.take(np.arange(0)), AblationConfig(bootstrap=10))


def test_cross_and_relay_masked_everywhere_isolate_emg_from_acc(hier, split, db2):
    """DESIGN §4: with cross+relay masked in every shared layer each modality's token states depend
    on that modality's input alone — every emg token's final state is exactly unchanged when the acc
    input changes, and vice versa — while with cross alone they are not (the CLS relay)."""
    inputs = [torch.as_tensor(split.x[name][:6]) for name in hier.modality_names]
    other = [torch.as_tensor(split.x[name][-6:]) for name in hier.modality_names]
    engine = InterventionEngine(hier)
    final = f"blocks.{engine.n_layers - 1}.hook_resid_post"
    conditions = [Condition(tuple(range(engine.n_layers)), p) for p in ("cross+relay", "cross")]
    ids = hier.token_modalities
    for changed, kept in ((1, 0), (0, 1)):  # change acc, then emg
        mixed = [other[i] if i == changed else inputs[i] for i in range(2)]
        before = engine.run_grid(inputs, conditions, capture=[final]).activations
        after = engine.run_grid(mixed, conditions, capture=[final]).activations
        tokens = ids == kept + 1
        assert torch.equal(before[0][final][:, tokens], after[0][final][:, tokens])
        assert (before[1][final][:, tokens] - after[1][final][:, tokens]).abs().max() > 1e-3


# --- the CLS control on a trained checkpoint -----------------------------------------------------

@pytest.fixture(scope="module")
def analysis(trained):
    return load_analysis(trained)


def test_the_analysis_loader_gives_a_model_ready_to_evaluate(analysis):
    assert not analysis.model.training and analysis.split == "test"
    assert len(analysis.windows) and len(analysis.reference) and len(analysis.windows.segment) == len(analysis.windows)
    assert set(np.unique(analysis.windows.repetition)) == {2, 5}  # DB2's test repetitions


def test_isolating_cls_makes_the_logits_input_independent(analysis):
    model, test = analysis.model, analysis.windows
    engine = InterventionEngine(model)
    condition = Condition(tuple(range(engine.n_layers)), "cls")
    first = [torch.as_tensor(np.asarray(test.x[name][:20])) for name in model.modality_names]
    second = [torch.as_tensor(np.asarray(test.x[name][-20:])) for name in model.modality_names]
    run_1, run_2 = engine.run_grid(first, [condition]), engine.run_grid(second, [condition])
    logits = torch.cat([run_1.logits[0], run_2.logits[0]])
    assert_close(logits, logits[:1].expand_as(logits))
    assert (run_1.clean - run_1.clean[:1]).abs().max() > 1e-2  # the clean model does look at its input
    # masking one layer fewer leaves a path from the windows to CLS
    (partial,) = engine.run_naive(first, [Condition(tuple(range(engine.n_layers - 1)), "cls")])
    assert (partial - partial[:1]).abs().max() > 1e-3


def test_isolating_cls_drops_accuracy_to_the_predicted_class_rate(analysis):
    test = analysis.windows
    table = run_ablation(analysis.model, test, AblationConfig(layers="all", pathway="cls", mode="joint", bootstrap=100,
                                                              batch_size=50)).table
    row = table.iloc[0]
    counts = np.bincount(test.y)
    majority = counts.max() / counts.sum()
    assert counts.min() == counts.max()  # the synthetic test split is balanced: every constant guess scores the majority rate
    assert row.accuracy == pytest.approx(majority) and row.chance == pytest.approx(majority)
    assert row.chance_corrected_drop == pytest.approx(1.0)
    assert row.base_accuracy > majority + 0.2
    assert row["drop"] == pytest.approx(row.base_accuracy - majority)
    # 12 segments (6 classes × 2 test repetitions): the sign-flip test is exact, here recomputed by
    # enumerating all 2^12 sign patterns of the segment totals.
    grid = ablation_logits(analysis.model, test, AblationConfig(layers="all", pathway="cls", mode="joint"))
    target = torch.as_tensor(test.y)
    changed = (grid.clean.argmax(1) == target).double() - (grid.logits[grid.conditions[0]].argmax(1) == target).double()
    totals = np.bincount(test.segment, weights=changed.numpy())
    observed = abs(totals.sum())
    hits = sum(abs(np.dot(signs, totals)) >= observed - 1e-9 for signs in itertools.product((-1, 1), repeat=len(totals)))
    assert row.segments == 12 and row.p_value == pytest.approx(hits / 2 ** len(totals)) and row.p_value < 0.05
