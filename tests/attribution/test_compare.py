"""`compare`: each method's row equals that method run on its own; the multimodal transformer, which
has no cross-modal attention by construction, gets exactly 0 from every method that looks at the
`cross` pathway; and the `interact` and `compare` commands print, write and refuse bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from isoprobe.attribution.attention import AttentionConfig, attribute as attention_attribution
from isoprobe.attribution.compare import COLUMNS, DEFINITIONS, LAYER_COLUMNS, LAYERED, CompareConfig, compare
from isoprobe.attribution.interaction import InteractConfig, interact
from isoprobe.engine.ablate import AblationConfig, run_ablation
from tests.cli_helpers import assert_user_error, invoke

FAST = dict(steps=2, bootstrap=50, batch_size=64)


@pytest.fixture(scope="module")
def split(db2):
    test = db2.splits["test"]
    return test.take(np.arange(0, len(test), 6))  # 22 windows, 12 segments


@pytest.fixture(scope="module")
def compared(hier, split, db2):
    return compare(hier, split, CompareConfig(**FAST), reference=db2.splits["train"])


def test_every_method_has_a_row_and_a_definition(compared):
    table = compared.table
    assert tuple(table.columns) == COLUMNS
    assert list(table.method) == ["mask (IsoNet)", "mask, logit margin", "mean ablation", "resample ablation",
                                  "attribution patching", "attention attribution", "pathway Shapley", "interaction index"]
    assert all(table.definition == [DEFINITIONS[m] for m in table.method])
    finite = table.estimate.notna()  # a share of a flat game (v(all) = v(none): nothing to share) is NaN
    assert finite.sum() >= 6 and (table.ci_low.notna() == finite).all() and (table.ci_high.notna() == finite).all()
    assert (table.ci_low[finite] <= table.estimate[finite] + 1e-12).all()
    assert (table.estimate[finite] <= table.ci_high[finite] + 1e-12).all()


def test_rows_equal_the_methods_run_alone(compared, hier, split, db2):
    row = dict(zip(compared.table.method, compared.table.estimate))
    ablation = run_ablation(hier, split, AblationConfig(layers="all", pathway="cross", mode="joint", bootstrap=0)).table
    assert row["mask (IsoNet)"] == pytest.approx(ablation.relative_drop.iloc[0])
    assert row["mask, logit margin"] == pytest.approx(-ablation.logit_margin_change.iloc[0] / ablation.logit_margin_base.iloc[0])
    attention = attention_attribution(hier, split, AttentionConfig(steps=2, bootstrap=0)).table
    cross = attention[(attention.site == "all layers") & (attention.part == "cross") & (attention.quantity == "share")]
    assert row["attention attribution"] == pytest.approx(cross.estimate.iloc[0])
    games = interact(hier, split, InteractConfig(bootstrap=0, batch_size=64), reference=db2.splits["train"])
    assert row["pathway Shapley"] == pytest.approx(games.estimate("pathway", "shapley share", "cross"), nan_ok=True)
    assert row["interaction index"] == pytest.approx(games.estimate("modality", "interaction share", "emg × acc"), nan_ok=True)


def test_per_layer_rows_and_their_rank_agreement(compared, hier):
    per_layer = compared.per_layer
    assert tuple(per_layer.columns) == LAYER_COLUMNS
    assert set(per_layer.layer) == {"L1", "L2", "L3"} and set(per_layer.method) == set(LAYERED)
    # cross in the last layer cannot reach the CLS head: marked, and exactly 0 by every method
    null = per_layer[per_layer.null_by_construction]
    assert set(null.layer) == {"L3"} and len(null) == len(LAYERED)
    assert (null[["estimate", "ci_low", "ci_high"]] == 0).all().all()
    assert (per_layer[~per_layer.null_by_construction].estimate != 0).any()
    grid = per_layer.pivot(index="layer", columns="method", values="estimate")
    agreement = compared.agreement
    assert len(agreement) == 15
    for row in agreement.itertuples():
        a, b = grid[row.method].to_numpy(), grid[row.against].to_numpy()
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            assert row.spearman == pytest.approx(spearmanr(a, b).statistic)
        else:
            assert np.isnan(row.spearman)
    document = compared.to_dict()
    assert len(document["per_layer"]) == len(per_layer) and len(document["agreement"]) == 15


def test_the_multimodal_transformer_has_no_cross_share_by_any_method(mmt, split, db2):
    """The built-in control (DESIGN §3): no cross-modal edge exists, so every pathway-based method
    finds exactly nothing there."""
    result = compare(mmt, split, CompareConfig(**FAST), reference=db2.splits["train"])
    row = dict(zip(result.table.method, result.table.estimate))
    for method in ("mask (IsoNet)", "mask, logit margin", "mean ablation", "resample ablation", "attribution patching",
                   "attention attribution", "pathway Shapley"):
        assert row[method] == 0.0, method
    # per layer too: every row marked, and exactly 0, not float noise
    per_layer = result.per_layer
    assert set(per_layer.method) == set(LAYERED) and per_layer.null_by_construction.all()
    assert (per_layer[["estimate", "ci_low", "ci_high"]] == 0).all().all()


def test_interact_command_prints_and_writes(trained, tmp_path):
    result = invoke("interact", trained, "--bootstrap", 30, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    for fragment in ("modality game, accuracy", "pathway game, logit", "emg × acc", "readout", "share"):
        assert fragment in result.stdout, fragment
    table = pd.read_csv(tmp_path / "interaction.csv")
    assert {"modality game", "pathway game"} == set(table.method)


def test_compare_command_prints_and_writes(trained, tmp_path):
    result = invoke("compare", trained, "--steps", 2, "--bootstrap", 30, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    for fragment in ("mask (IsoNet)", "attribution patching", "pathway Shapley", "per layer", "rank agreement"):
        assert fragment in result.stdout, fragment
    assert {"compare.csv", "compare-layers.csv", "compare-agreement.csv"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("command, options, fragments", [
    ("interact", ["--baseline", "median"], ["--baseline", "median", "zero", "mean", "donor"]),
    ("interact", ["--games", "chess"], ["--games", "chess", "modality", "pathway"]),
    ("interact", ["--target", "best"], ["--target", "best"]),
    ("compare", ["--layers", "4"], ["--layers", "4"]),
    ("compare", ["--baseline", "median"], ["--baseline", "median"]),
    ("compare", ["--steps", "1"], ["--steps", "1"]),
])
def test_bad_options_exit_2_and_write_nothing(trained, tmp_path, command, options, fragments):
    assert_user_error(invoke(command, trained, *options, "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["compare"], ["interact", "--games", "pathway"]])
def test_the_mlp_has_no_attention_to_compare(trained_mlp, tmp_path, command):
    assert_user_error(invoke(command[0], trained_mlp, *command[1:], "--out", tmp_path / "out"), "MLP", "no attention")
