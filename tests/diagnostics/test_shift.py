"""`shift`: cosine and MMD² of intervened against clean representations, from the same forward pass as
the intervention — the numbers against the statistics recomputed here from the engine's captured
activations, the sites each condition gets, a null-by-construction condition moving nothing, no
dependence on the batch size, and the command's output and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from isoprobe.diagnostics.mmd import cosine_per_window, mmd_test, permutation_statistics, subsample
from isoprobe.diagnostics.shift import COLUMNS, ShiftConfig, shift
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.errors import ConfigError
from tests.cli_helpers import assert_user_error, invoke

FAST = dict(bootstrap=50, permutations=99)


@pytest.fixture(scope="module")
def split(db2):
    test = db2.splits["test"]
    return test.take(np.arange(0, len(test), 3))  # 44 windows, 12 segments


@pytest.fixture(scope="module")
def masked(hier, split):
    return shift(hier, split, ShiftConfig(layers="2-3", pathway="cls", **FAST)).table


def test_sites_from_the_first_intervened_layer_and_the_final_representation(masked):
    assert tuple(masked.columns) == COLUMNS
    assert list(masked.site) == ["L2 residual", "L3 residual", "final CLS"]
    assert set(masked.layers) == {"L2-L3"} and set(masked.intervention) == {"mask"}


def test_numbers_equal_the_statistics_of_the_captured_activations(masked, hier, split):
    inputs = [torch.as_tensor(np.asarray(split.x[name])) for name in hier.modality_names]
    run = InterventionEngine(hier).run_grid(inputs, [Condition((1, 2), "cls")], capture=["blocks.2.hook_resid_post", "hook_cls"])
    for site, label in (("blocks.2.hook_resid_post", "L3 residual"), ("hook_cls", "final CLS")):
        row = masked[masked.site == label].iloc[0]
        cosine = cosine_per_window(run.activations[0][site], run.clean_activations[site])
        assert row.cosine == pytest.approx(float(cosine.mean()), abs=1e-9)
        chosen = subsample(len(split), 1000, 0, keys=split.start)
        clean = run.clean_activations[site][chosen].flatten(1)
        moved = run.activations[0][site][chosen].flatten(1)
        options = dict(paired=True, clusters=split.segment[chosen], keys=split.start[chosen])
        test = mmd_test(clean, moved, 99, 0, **options)
        assert row.mmd2 == pytest.approx(test.mmd2, rel=1e-6) and row.p_value == test.p_value
        # the column beside it: the 95th percentile of the same test's permuted statistics
        null = permutation_statistics(clean, moved, 99, 0, **options)
        assert row.mmd2_null95 == pytest.approx(float(np.quantile(null.statistics.numpy(), 0.95)), rel=1e-6)
    final = masked[masked.site == "final CLS"].iloc[0]
    assert final.cosine < 0.99 and final.p_value < 0.05 and final.mmd2 > 0  # masking CLS's edges moves CLS


def test_a_condition_null_by_construction_moves_nothing(mmt, split):
    """The mmt has no cross-modal edge: masking `cross` touches nothing, and the engine hands back the
    clean representations bit for bit. The paired MMD² is then exactly 0 — not the small negative
    value the unpaired formula gives for identical samples, nor the rounding of its sums — and so is
    every permuted statistic: p = 1, null 95% = 0."""
    table = shift(mmt, split, ShiftConfig(layers="all", pathway="cross", **FAST)).table
    assert (table.cosine > 1 - 1e-6).all()
    assert (table.mmd2 == 0.0).all() and (table.mmd2_null95 == 0.0).all() and (table.p_value == 1.0).all()
    assert list(table.site)[-1] == "final pooled"


def test_the_batch_size_and_the_window_order_change_nothing(hier, split):
    config = dict(layers="2", pathway="cross", interventions=("mask", "resample"), **FAST)
    whole = shift(hier, split, ShiftConfig(batch_size=256, **config)).table
    pieces = shift(hier, split, ShiftConfig(batch_size=7, **config)).table
    order = np.random.default_rng(1).permutation(len(split))
    shuffled = shift(hier, split.take(order), ShiftConfig(batch_size=16, **config)).table
    for other in (pieces, shuffled):
        pd.testing.assert_frame_equal(whole.drop(columns=["mmd2", "bandwidth", "mmd2_null95", "cosine", "cosine_ci_low",
                                                          "cosine_ci_high"]),
                                      other.drop(columns=["mmd2", "bandwidth", "mmd2_null95", "cosine", "cosine_ci_low",
                                                          "cosine_ci_high"]))
        # MMD² and its null are differences of kernel means, each in [0, 1], so their tolerance is a share of
        # that scale (they agree to 1e-15 here; another subsample of windows moves them by ~1e-4)
        np.testing.assert_allclose(other[["mmd2", "mmd2_null95"]], whole[["mmd2", "mmd2_null95"]], rtol=0, atol=1e-6)
        np.testing.assert_allclose(other[["bandwidth", "cosine"]], whole[["bandwidth", "cosine"]], rtol=1e-6)


@pytest.mark.parametrize("values, field", [({"interventions": "zero"}, "intervention"), ({"interventions": ()}, "intervention"),
                                           ({"max_windows": 2}, "max_windows"), ({"permutations": -1}, "permutations"),
                                           ({"mode": "sequential"}, "mode")])
def test_config_refuses_bad_values(values, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        ShiftConfig(**values)


def test_the_command_prints_and_writes(trained, tmp_path):
    result = invoke("shift", trained, "--layers", "1-2", "--bootstrap", 30, "--permutations", 49, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    for fragment in ("representation shift under cross", "mask", "mean", "resample", "final CLS", "null 95%"):
        assert fragment in result.stdout, fragment
    table = pd.read_csv(tmp_path / "shift.csv")
    assert list(table.intervention.unique()) == ["mask", "mean", "resample"] and len(table) == 9


@pytest.mark.parametrize("options, fragments", [(["--layers", "4"], ["--layers", "4"]),
                                                (["--intervention", "zero"], ["--intervention", "zero"]),
                                                (["--pathway", "diagonal"], ["--pathway", "diagonal"]),
                                                (["--max-windows", "1"], ["--max-windows"])])
def test_the_command_refuses_bad_options(trained, tmp_path, options, fragments):
    assert_user_error(invoke("shift", trained, *options, "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()
