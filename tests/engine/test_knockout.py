"""Knockouts as vision-language analyses report them: windows of layers centred on each layer
(clipped at the ends), statistics over the correctly classified windows only, and the relative change
of the true class's probability — each checked against the engine's own multi-layer condition or a
direct computation written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoprobe.engine.ablate import AblationConfig, ablation_logits, run_ablation
from isoprobe.engine.grid import build_conditions
from isoprobe.errors import ConfigError
from tests.cli_helpers import assert_user_error, invoke

NUMBERS = ["windows", "segments", "base_accuracy", "accuracy", "drop", "drop_ci_low", "drop_ci_high", "logit_margin_change",
           "logit_margin_change_ci_low", "logit_margin_change_ci_high", "kl", "prob_change", "prob_change_ci_low",
           "prob_change_ci_high", "p_value"]


@pytest.fixture(scope="module")
def split(db2):
    test = db2.splits["test"]
    return test.take(np.arange(0, len(test), 3))


def test_windows_are_centred_and_clipped():
    odd = build_conditions("single", range(4), ["cross"], window=3, n_layers=4)
    assert [c.layers for c in odd] == [(0, 1), (0, 1, 2), (1, 2, 3), (2, 3)]
    assert [c.centre for c in odd] == [0, 1, 2, 3]
    even = build_conditions("single", (0, 3), ["cross"], window=2, n_layers=4)
    assert [c.layers for c in even] == [(0, 1), (3,)]  # an even window reaches one layer up
    wide = build_conditions("single", range(3), ["uni"], window=9, n_layers=3)
    assert [c.layers for c in wide] == [(0, 1, 2)] * 3 and len(set(wide)) == 3  # distinct by their centre
    with pytest.raises(ConfigError) as caught:
        build_conditions("joint", range(3), ["uni"], window=3, n_layers=3)
    assert caught.value.option == "window"


def test_a_window_equals_the_engine_s_joint_condition_over_its_layers(hier, split):
    windowed = run_ablation(hier, split, AblationConfig(layers="all", pathway="cross", window=3, bootstrap=50,
                                                        permutations=99)).table
    assert list(windowed.layers) == ["L1-L2", "L1-L3", "L2-L3"] and list(windowed.window_centre) == [1, 2, 3]
    for row in windowed.itertuples():
        joint = run_ablation(hier, split, AblationConfig(layers=row.layers.replace("L", ""), pathway="cross",
                                                         mode="joint", bootstrap=50, permutations=99)).table.iloc[0]
        for column in NUMBERS:
            # the same per-window numbers; the bootstrap's matrix products may round in the last place
            assert getattr(row, column) == pytest.approx(joint[column], rel=1e-12, abs=1e-15), (row.layers, column)


def test_probability_change_by_direct_computation(hier, split):
    config = AblationConfig(layers="1-2", pathway="cross+relay", mode="joint", bootstrap=50)
    row = run_ablation(hier, split, config).table.iloc[0]
    grid = ablation_logits(hier, split, config)
    target = torch.as_tensor(split.y).long()
    p_base = torch.softmax(grid.clean.double(), -1)[torch.arange(len(target)), target]
    p_new = torch.softmax(next(iter(grid.logits.values())).double(), -1)[torch.arange(len(target)), target]
    direct = float(((p_new - p_base) / p_base).mean())
    assert row.prob_change == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert row.prob_change_ci_low <= row.prob_change <= row.prob_change_ci_high
    assert direct != 0.0  # the condition changes the probabilities: the comparison means something


def test_correct_only_keeps_the_correctly_classified_windows(hier, split):
    config = AblationConfig(layers="2", pathway="cross", bootstrap=50, correct_only=True)
    row = run_ablation(hier, split, config).table.iloc[0]
    with torch.no_grad():
        inputs = [torch.as_tensor(split.x[name]) for name in split.x]
        predicted = hier(*inputs).argmax(1).numpy()
    kept = predicted == split.y
    assert 0 < kept.sum() < len(split)  # some kept, some left out: the count is a finding
    assert row.windows == kept.sum() and row.segments == len(np.unique(split.segment[kept]))
    assert row.base_accuracy == 1.0 and row["drop"] == pytest.approx(1.0 - row.accuracy)
    everything = run_ablation(hier, split, AblationConfig(layers="2", pathway="cross", bootstrap=50)).table.iloc[0]
    assert everything.windows == len(split)


def test_the_command_takes_window_and_correct_only(trained, tmp_path):
    result = invoke("ablate", trained, "--window", 3, "--correct-only", "--pathway", "cross,readout", "--bootstrap", 30,
                    "--permutations", 99, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "correctly classified" in result.stdout and "centre" in result.stdout and "Δp" in result.stdout
    import pandas as pd

    table = pd.read_csv(tmp_path / "ablation.csv")
    assert set(table.window_centre) == {1, 2} and (table.base_accuracy == 1.0).all()
    assert_user_error(invoke("ablate", trained, "--window", -1, "--out", tmp_path / "bad"), "--window", "-1")
    assert_user_error(invoke("ablate", trained, "--window", 3, "--mode", "joint", "--out", tmp_path / "bad"),
                      "--window", "single")
    assert not (tmp_path / "bad").exists()


def test_pairs_names_every_directed_pair_of_modalities():
    from isoprobe.models.pathways import pathway_rows

    assert [p.name for p in pathway_rows("pairs,relay", ("emg", "acc"))] == ["emg->acc", "acc->emg", "relay"]
    three = [p.name for p in pathway_rows("pairs", ("a", "b", "c"))]
    assert three == ["a->b", "a->c", "b->a", "b->c", "c->a", "c->b"]
    with pytest.raises(ConfigError) as caught:
        pathway_rows("pairs+cross", ("emg", "acc"))  # a row name, not a pathway to join
    assert caught.value.option == "pathway"


def test_the_knockout_configuration_is_the_literature_s_convention(hier, split):
    from isoprobe.engine.ablate import KnockoutConfig, plan_ablation

    config = KnockoutConfig(bootstrap=20, permutations=9)
    plan = plan_ablation(hier, config)
    assert {c.pathway for c in plan.conditions} == {"emg->acc", "acc->emg", "relay", "readout"}
    assert sorted({c.centre for c in plan.conditions}) == [0, 1, 2] and config.correct_only
    table = run_ablation(hier, split, config).table
    assert (table.base_accuracy == 1.0).all() and table.window_centre.notna().all()
