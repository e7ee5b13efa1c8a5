"""`compare` against references written here, not against the functions it calls: the IsoNet mask and
its margin share from the float64 loop reference of the hierarchical transformer (tests/engine/
reference.py), the interaction index from plain model evaluations with a modality zeroed, the pathway
Shapley share by the permutation formula over coalition values; every row's block and estimand; the
multimodal transformer, which has no cross-modal attention by construction, gets exactly 0 from every
method that looks at the `cross` pathway; and the `interact` and `compare` commands print, write and
refuse bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from isoprobe.attribution.compare import BLOCKS, COLUMNS, LAYER_COLUMNS, METHODS, CompareConfig, compare
from isoprobe.engine.ablate import AblationConfig, run_ablation
from tests.cli_helpers import assert_user_error, invoke
from tests.engine.reference import Edit, hierarchical_forward, naive_edges

FAST = dict(steps=2, bootstrap=50, batch_size=64)
LAYERED = [name for name, estimate in METHODS.items() if estimate.layered]


@pytest.fixture(scope="module")
def split(db2):
    test = db2.splits["test"]
    return test.take(np.arange(0, len(test), 6))  # 22 windows, 12 segments


@pytest.fixture(scope="module")
def compared(hier, split, db2):
    return compare(hier, split, CompareConfig(**FAST), reference=db2.splits["train"])


def inputs_of(model, windows):
    return [torch.from_numpy(np.asarray(windows.x[name])) for name in model.modality_names]


def margins(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """True-class logit minus the largest other, one window at a time."""
    return np.array([row[t] - max(v for j, v in enumerate(row) if j != t) for row, t in zip(logits, target)])


def test_every_row_says_what_it_estimates(compared):
    table = compared.table
    assert tuple(table.columns) == COLUMNS
    assert list(table.method) == ["mask (IsoNet)", "mean ablation", "resample ablation", "mask, logit margin",
                                  "attribution patching", "pathway Shapley", "interaction index", "EMAP gap",
                                  "data synergy (PID)"]
    assert list(table.block) == sorted(table.block, key=BLOCKS.index)  # grouped, in BLOCKS order
    assert list(table.estimand) == [METHODS[m].estimand for m in table.method]
    assert list(table.block) == [METHODS[m].block for m in table.method]
    # rows of one block share a definition: the three accuracy shares have one denominator (all windows),
    # the two margin shares another (the correctly classified windows)
    accuracy, margin = table[table.block == BLOCKS[0]], table[table.block == BLOCKS[1]]
    assert set(accuracy.method) == {"mask (IsoNet)", "mean ablation", "resample ablation"} and accuracy.windows.nunique() == 1
    assert margin.windows.nunique() == 1 and margin.windows.iloc[0] < accuracy.windows.iloc[0]
    finite = table.estimate.notna()
    assert finite.sum() >= 5
    assert (table.ci_low[finite] <= table.estimate[finite] + 1e-12).all()
    assert (table.estimate[finite] <= table.ci_high[finite] + 1e-12).all()
    assert (table.caveat.str.contains("segments")).all()  # 12 segments: fewer than a CI needs to cover


def test_the_emap_row_is_the_emap_gap(compared, hier, split):
    from isoprobe.attribution.emap import EmapConfig, emap

    row = compared.table.set_index("method").loc["EMAP gap"]
    direct = emap(hier, split, EmapConfig(bootstrap=FAST["bootstrap"], batch_size=FAST.get("batch_size", 256))).table
    gap = direct[(direct.quantity == "gap") & (direct["class"].astype(str) == "all")].iloc[0]
    assert (row.estimate, row.layers, row.block) == (gap.estimate, "inputs", "related quantities")


def test_the_mask_rows_equal_a_float64_loop_reference(compared, hier, split):
    """IsoNet masking of cross in every shared layer, by explicit loops in float64: the share of clean
    accuracy over all windows and the share of clean margin over the windows the clean model gets right."""
    target = np.asarray(split.y)
    inputs = inputs_of(hier, split)
    edges = naive_edges(hier.token_modalities.tolist(), "cross", hier.modality_names)
    heads = range(hier.config.n_heads)
    clean, _ = hierarchical_forward(hier, inputs)
    masked, _ = hierarchical_forward(hier, inputs, {layer: Edit(edges, heads) for layer in range(len(hier.blocks))})
    clean, masked = clean.numpy(), masked.numpy()
    base_right = clean.argmax(1) == target
    masked_right = masked.argmax(1) == target
    row = compared.table.set_index("method")
    share = (base_right.sum() - masked_right.sum()) / base_right.sum()
    assert row.loc["mask (IsoNet)", "estimate"] == pytest.approx(share, abs=1e-12)
    m_clean, m_masked = margins(clean, target), margins(masked, target)
    right = m_clean > 0
    expected = (m_clean[right] - m_masked[right]).sum() / m_clean[right].sum()
    assert row.loc["mask, logit margin", "estimate"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert row.loc["mask, logit margin", "windows"] == right.sum()
    # the former definition (all windows, misclassified ones with negative margins in the denominator) differs
    assert abs((m_clean - m_masked).sum() / m_clean.sum() - expected) > 1e-3


def test_mean_and_resample_rows_are_the_ablation_command_s_relative_drop(compared, hier, split, db2):
    """Wiring (the engine's mean and resample are checked against the loop reference in tests/engine):
    the same windows, seed and draws give ablate's relative drop."""
    row = compared.table.set_index("method")
    for method, intervention in (("mean ablation", "mean"), ("resample ablation", "resample")):
        ablation = run_ablation(hier, split, AblationConfig(layers="all", pathway="cross", mode="joint", intervention=intervention,
                                                            bootstrap=0), reference=db2.splits["train"]).table
        assert row.loc[method, "estimate"] == pytest.approx(ablation.relative_drop.iloc[0], abs=1e-12)


def test_the_interaction_index_from_plain_model_evaluations(compared, hier, split):
    """v(both) − v(emg) − v(acc) + v(none) in accuracy, the absent modality zeroed (the zero baseline)."""
    target = torch.as_tensor(split.y)
    emg, acc = inputs_of(hier, split)
    accuracy = lambda a, b: float((hier.eval()(a, b).argmax(1) == target).double().mean())
    with torch.no_grad():
        index = (accuracy(emg, acc) - accuracy(emg, torch.zeros_like(acc)) - accuracy(torch.zeros_like(emg), acc)
                 + accuracy(torch.zeros_like(emg), torch.zeros_like(acc)))
    assert compared.table.set_index("method").loc["interaction index", "estimate"] == pytest.approx(index, abs=1e-12)


def test_the_pathway_shapley_share_by_the_permutation_formula(compared, hier, split):
    """v(S) = accuracy with every pathway outside S masked in all shared layers (`ablate`, one joint
    condition per coalition); φ_cross = the mean over the orders of the players of cross's marginal
    contribution; the share is φ_cross / (v(all) − v(none))."""
    players = ("uni:emg", "uni:acc", "cross", "relay", "readout")
    pathway = {"uni:emg": "emg->emg", "uni:acc": "acc->acc", "cross": "cross", "relay": "relay", "readout": "readout"}
    base = run_ablation(hier, split, AblationConfig(layers="all", pathway="cross", mode="joint", bootstrap=0)).base_accuracy
    value = {frozenset(players): base}
    for size in range(len(players)):
        for kept in itertools.combinations(players, size):
            masked = "+".join(pathway[p] for p in players if p not in kept)
            table = run_ablation(hier, split, AblationConfig(layers="all", pathway=masked, mode="joint", bootstrap=0)).table
            value[frozenset(kept)] = float(table.accuracy.iloc[0])
    contributions = []
    for order in itertools.permutations(players):
        before = frozenset(order[: order.index("cross")])
        contributions.append(value[before | {"cross"}] - value[before])
    phi = sum(contributions) / math.factorial(len(players))
    signal = value[frozenset(players)] - value[frozenset()]
    estimate = compared.table.set_index("method").loc["pathway Shapley", "estimate"]
    if signal == 0:
        assert np.isnan(estimate)
    else:
        assert estimate == pytest.approx(phi / signal, abs=1e-12)


def test_per_layer_rows(compared):
    per_layer = compared.per_layer
    assert tuple(per_layer.columns) == LAYER_COLUMNS
    assert set(per_layer.layer) == {"L1", "L2", "L3"} and set(per_layer.method) == set(LAYERED)
    # cross in the last layer cannot reach the CLS head: marked, and exactly 0 by every method
    null = per_layer[per_layer.null_by_construction]
    assert set(null.layer) == {"L3"} and len(null) == len(LAYERED)
    assert (null[["estimate", "ci_low", "ci_high"]] == 0).all().all()
    assert (per_layer[~per_layer.null_by_construction].estimate != 0).any()
    assert all(per_layer.block == [METHODS[m].block for m in per_layer.method])
    assert "agreement" not in compared.to_dict()  # Spearman over three to five layers is not reported


def test_the_multimodal_transformer_has_no_cross_share_by_any_method(mmt, split, db2):
    """The built-in control (DESIGN §3): no cross-modal edge exists, so every pathway-based method
    finds exactly nothing there."""
    result = compare(mmt, split, CompareConfig(**FAST), reference=db2.splits["train"])
    row = dict(zip(result.table.method, result.table.estimate))
    for method in ("mask (IsoNet)", "mask, logit margin", "mean ablation", "resample ablation", "attribution patching",
                   "pathway Shapley"):
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
    for fragment in ("mask (IsoNet)", "attribution patching", "pathway Shapley", "per layer", *BLOCKS,
                     "windows the clean model gets right"):
        assert fragment in result.stdout, fragment
    assert {"compare.csv", "compare-layers.csv"} <= {p.name for p in tmp_path.iterdir()}
    assert "estimand" in pd.read_csv(tmp_path / "compare.csv").columns


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


def test_a_method_registered_here_joins_compare_and_its_command(trained, tmp_path):
    """One function and one registration: no other file names the method."""
    from isoprobe.attribution.compare import PRODUCERS, RELATED, Estimate, compare_method

    @compare_method(Estimate("toy constant", RELATED, "one half, whatever the model", "toy"))
    def toy(inputs):
        return [{"method": "toy constant", "layers": "inputs", "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                 "windows": len(inputs.windows), "segments": inputs.segments.n_segments, "caveat": ""}]

    try:
        result = invoke("compare", trained, "--steps", 2, "--bootstrap", 30, "--out", tmp_path)
        assert result.exit_code == 0, (result.output, result.exception)
        assert "toy constant" in result.stdout and "one half, whatever the model" in result.stdout
        table = pd.read_csv(tmp_path / "compare.csv").set_index("method")
        assert table.loc["toy constant", "estimate"] == 0.5 and table.loc["toy constant", "block"] == RELATED
        # the report draws and names it from the study's table alone
        from isoprobe.reports.html import ReportConfig, build_report
        from isoprobe.reports.inputs import load_study
        from tests.reports.study_fixture import MODELS, make_study

        root = make_study(tmp_path / "study", subjects=(1,), seeds=(0,), models=[MODELS[0]],
                          skip=("compare", "compare_layers", "shift", "curves", "confusion", "planted", "knockout", "sanity", "emap", "pid"))
        identity = pd.read_csv(root / "tables/runs.csv").iloc[0][["dataset", "data", "subject", "arch", "model",
                                                                     "modalities", "configuration", "seed", "run"]]
        pd.read_csv(tmp_path / "compare.csv").assign(**identity).to_csv(root / "tables/compare.csv", index=False)
        figure = next(f for f in build_report(load_study(root), ReportConfig(subject_bootstrap=200)).figures
                      if f.id == "compare")
        assert "toy constant" in set(figure.table.method) and "toy constant" in figure.caption
    finally:
        del METHODS["toy constant"], PRODUCERS[toy]


def test_sanity_flags_in_compare_a_method_that_explains_the_input(trained, tmp_path, monkeypatch):
    """compare --sanity: each row whose method has a sanity counterpart carries its similarity after the
    whole model is randomised; a method registered here whose 'attribution' is |input| is flagged."""
    import numpy as np

    from isoprobe.attribution.compare import PRODUCERS, RELATED, Estimate, compare_method
    from isoprobe.attribution.sanity import SANITY_METHODS, SanityMethod

    def input_magnitude(model, windows, config, reference, device):
        return np.stack([np.abs(windows.x[name]).mean(axis=(1, 2)) for name in windows.x], axis=1)

    monkeypatch.setitem(SANITY_METHODS, "input-magnitude", SanityMethod("input-magnitude", input_magnitude))

    @compare_method(Estimate("input magnitude", RELATED, "mean |input| per modality, whatever the model", "input",
                             sanity="input-magnitude"))
    def toy(inputs):
        return [{"method": "input magnitude", "layers": "inputs", "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                 "windows": len(inputs.windows), "segments": inputs.segments.n_segments, "caveat": ""}]

    try:
        result = invoke("compare", trained, "--steps", 2, "--bootstrap", 30, "--sanity", "--out", tmp_path)
        assert result.exit_code == 0, (result.output, result.exception)
        assert "FLAGGED" in result.stdout and "input magnitude" in result.stdout
        table = pd.read_csv(tmp_path / "compare.csv").set_index("method")
        assert table.loc["input magnitude", "sanity_flagged"] == True  # noqa: E712 (read back from CSV)
        assert table.loc["input magnitude", "sanity_spearman"] == 1.0
        masked = table.loc[["mask (IsoNet)"]]
        assert masked.sanity_spearman.notna().all() and (masked.sanity_spearman < 0.5).all()
        assert table.loc[["pathway Shapley"], "sanity_spearman"].isna().all()  # no sanity counterpart
        cascade = pd.read_csv(tmp_path / "sanity.csv")
        assert {"mask", "attention", "attribution-patching", "input-magnitude"} <= set(cascade.method)
    finally:
        from isoprobe.attribution.compare import METHODS

        del METHODS["input magnitude"], PRODUCERS[toy]
