"""Sanity checks (Adebayo et al. 2018) and IG's infidelity and sensitivity: on a trained model every
real method loses its similarity as the weights are randomised, a model-independent "attribution"
keeps it and is flagged; the caller's model is untouched; the seed alone fixes the table; and the
metrics hold what a linear model makes exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import kendalltau, spearmanr

from isoprobe.analysis import load_analysis
from isoprobe.attribution.ig import IGConfig
from isoprobe.attribution.ig_metrics import IGMetricsOptions, ig_metrics
from isoprobe.attribution.sanity import (
    NOT_APPLICABLE,
    RANDOM_TARGET,
    SANITY_METHODS,
    SanityConfig,
    SanityMethod,
    cascade_stages,
    random_targets,
    randomise_stage,
    sanity,
    subsample,
    weighted_spearman,
)
from isoprobe.data.pipeline import WindowSet
from isoprobe.errors import ConfigError
from tests.engine.conftest import small

REAL = ("ig", "layer-ig", "attention", "attribution-patching", "mask")


@pytest.fixture(scope="module")
def analysis(trained):
    return load_analysis(trained)


@pytest.fixture(scope="module")
def checked(analysis):
    """Every registered method on the trained hierarchical model (2 shared layers), and its weights
    before the run."""
    before = {name: value.clone() for name, value in analysis.model.state_dict().items()}
    result = sanity(analysis.model, analysis.windows, SanityConfig(windows=24, steps=6, bootstrap=100),
                    reference=analysis.reference)
    return result, before


def cascade(table: pd.DataFrame, method: str) -> pd.DataFrame:
    rows = table[(table.method == method) & table.step_index.notna()]
    return rows.sort_values("step_index")


def input_magnitude(model, windows, config, reference=None, device="cpu") -> np.ndarray:
    """Mean |input| per window and modality: [window, modality], whatever the model's weights."""
    return np.stack([np.abs(windows.x[name]).mean(axis=(1, 2)) for name in model.modality_names], axis=1)


def pooled_magnitude(model, windows, config, reference=None, device="cpu") -> np.ndarray:
    """The same pooled over windows: [modality], no window axis."""
    return input_magnitude(model, windows, config).mean(axis=0)


# --- cascading randomisation ---------------------------------------------------------------------

def test_every_method_loses_its_similarity_down_the_cascade(checked, analysis):
    result, _ = checked
    table = result.table
    assert [s.label for s in result.stages] == ["head", "L2", "L1", "encoders", "embeddings"]
    for method in REAL:
        rows = cascade(table, method)
        assert list(rows.step) == ["trained", "head", "L2", "L1", "encoders", "embeddings"], method
        assert rows.spearman.iloc[0] == 1.0, method
        final = rows.spearman.iloc[-1]
        assert final < 1.0 and final < result.config.threshold, (method, final)
        assert rows.flagged.iloc[-1] is False and rows.flagged.iloc[:-1].isna().all(), method
        # mostly decreasing: similarity falls with the number of re-drawn stages (a rank trend, not each step)
        assert kendalltau(rows.step_index.astype(float), rows.spearman).statistic < 0, (method, list(rows.spearman))
        assert (rows.spearman.iloc[1:] < 1.0).all(), method
        within = rows.iloc[1:]
        assert ((within.ci_low <= within.spearman + 1e-12) & (within.spearman <= within.ci_high + 1e-12)).all(), method
    assert result.flagged == []
    assert set(table[table.step == RANDOM_TARGET].method) == set(REAL)


def test_cells_zero_by_construction_are_left_out(checked):
    """At the last shared layer the head reads the CLS row alone, so only CLS's own edge (self) and
    its readout carry attribution there, and masking uni, cross or relay there changes nothing; CLS's
    LayerIG is 0 (its embedding is the same for x and the baseline). Those cells are never compared."""
    result, _ = checked
    trained = result.table[result.table.step == "trained"].set_index("method").cells
    parts = 6  # uni:emg, uni:acc, cross, relay, readout, self
    assert trained["attention"] == parts + 2
    conditions = 3 * 4  # L1, L2 and L1-L2 × uni, cross, relay, readout
    assert trained["mask"] == trained["attribution-patching"] == conditions - 3
    assert trained["layer-ig"] == 2 * 2 and trained["ig"] == 2  # (hook_embed, encoders) × (emg, acc); emg, acc


def test_the_randomised_column_accumulates_the_stages(checked):
    result, _ = checked
    rows = cascade(result.table, "ig")
    labels = [s.label for s in result.stages]
    assert list(rows.randomised) == [""] + [", ".join(labels[:i]) for i in range(1, len(labels) + 1)]


def test_the_stages_hold_every_parameter_once_from_the_head_down(db2, hier, mmt):
    mlp = small(db2, "mlp", hidden=(32, 16))
    expected = {hier: ["head", "L3", "L2", "L1", "encoders", "embeddings"], mmt: ["head", "L2", "L1", "embeddings"],
                mlp: ["head", "L2", "L1"]}
    for model, labels in expected.items():
        stages = cascade_stages(model)
        assert [s.label for s in stages] == labels
        names = [name for stage in stages for name in stage.parameters]
        assert sorted(names) == sorted(name for name, _ in model.named_parameters())  # each once
    stages = {s.label: s.parameters for s in cascade_stages(hier)}
    assert all(n.startswith(("head_", "ln_final")) for n in stages["head"])
    assert all(n.startswith("blocks.2.") for n in stages["L3"])
    assert all(n.startswith("embed.") for n in stages["embeddings"])
    assert all(n.startswith("layers.0.") for n in {s.label: s.parameters for s in cascade_stages(mlp)}["L1"])


def test_a_stage_is_redrawn_from_the_seed_alone_with_its_own_scale(hier):
    import copy

    stage = cascade_stages(hier)[1]  # the last shared layer
    first, second, other = (copy.deepcopy(hier) for _ in range(3))
    randomise_stage(first, stage, seed=3)
    randomise_stage(second, stage, seed=3)
    randomise_stage(other, stage, seed=4)
    trained, a, b, c = ({k: v.detach() for k, v in m.named_parameters()} for m in (hier, first, second, other))
    for name in stage.parameters:
        assert torch.equal(a[name], b[name])
        assert not torch.equal(a[name], trained[name]) and not torch.equal(a[name], c[name])
    untouched = set(trained) - set(stage.parameters)
    assert all(torch.equal(a[name], trained[name]) for name in untouched)
    weight = "blocks.2.mlp.fc_in.weight"  # 512 entries: its own mean and standard deviation, to sampling error
    assert abs(float(a[weight].mean() - trained[weight].mean())) < 0.2 * float(trained[weight].std())
    assert abs(float(a[weight].std() / trained[weight].std()) - 1) < 0.15


def test_the_callers_model_is_unchanged(checked, analysis):
    _, before = checked
    after = analysis.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not analysis.model.training


def test_a_model_in_train_mode_stays_in_train_mode(analysis):
    model = analysis.model.train()
    try:
        sanity(model, analysis.windows, SanityConfig(methods="ig", windows=6, steps=2, bootstrap=0))
        assert all(module.training for module in model.modules())
    finally:
        model.eval()


# --- flagging ------------------------------------------------------------------------------------

def test_a_model_independent_attribution_is_flagged_and_a_real_one_is_not(analysis, monkeypatch):
    monkeypatch.setitem(SANITY_METHODS, "input-magnitude", SanityMethod("input-magnitude", input_magnitude))
    monkeypatch.setitem(SANITY_METHODS, "pooled-magnitude",
                        SanityMethod("pooled-magnitude", pooled_magnitude, per_window=False))
    result = sanity(analysis.model, analysis.windows,
                    SanityConfig(methods="input-magnitude,pooled-magnitude,ig", windows=16, steps=4, bootstrap=50))
    table = result.table
    for name in ("input-magnitude", "pooled-magnitude"):
        rows = table[table.method == name]
        assert (rows.spearman == 1.0).all(), name  # every step and the random target
        assert rows.flagged.iloc[-2] is True  # the last cascade step (the random target comes after it)
    assert result.flagged == ["input-magnitude", "pooled-magnitude"]
    pooled = table[(table.method == "pooled-magnitude") & (table.step != "trained")]
    assert pooled.ci_low.isna().all() and pooled.ci_high.isna().all()  # no window axis, no segment bootstrap
    assert cascade(table, "ig").flagged.iloc[-1] is False


def test_methods_that_do_not_apply_are_left_out_with_a_reason(db2):
    mlp = small(db2, "mlp", hidden=(16,)).eval()
    result = sanity(mlp, db2.splits["test"], SanityConfig(windows=8, steps=2, bootstrap=0))
    table = result.table
    skipped = table[table.step == NOT_APPLICABLE]
    assert set(skipped.method) == {"layer-ig", "attention", "attribution-patching", "mask"}
    assert skipped.note.str.len().gt(0).all() and skipped.spearman.isna().all()
    assert "attn" in skipped[skipped.method == "attention"].note.iloc[0]
    assert list(cascade(table, "ig").step) == ["trained", "head", "L1"]


# --- the seed alone -------------------------------------------------------------------------------

def test_the_seed_alone_fixes_the_table(analysis):
    config = {"windows": 12, "steps": 3, "bootstrap": 60, "seed": 5}
    windows = analysis.windows
    shuffled = windows.take(np.random.default_rng(0).permutation(len(windows)))
    first = sanity(analysis.model, windows, SanityConfig(batch_size=16, **config)).table
    second = sanity(analysis.model, shuffled, SanityConfig(batch_size=5, **config)).table
    numbers = ["spearman", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(first.drop(columns=numbers), second.drop(columns=numbers))
    np.testing.assert_allclose(first[numbers].to_numpy(float), second[numbers].to_numpy(float), rtol=0, atol=1e-9)
    other = sanity(analysis.model, windows, SanityConfig(batch_size=16, **{**config, "seed": 6})).table
    assert not np.allclose(first.spearman.iloc[1:6], other.spearman.iloc[1:6])


def test_the_subsample_and_random_targets_are_keyed_by_window(analysis):
    windows = analysis.windows
    chosen = subsample(windows, 20, seed=1)
    assert len(chosen) == 20 and np.all(np.diff(chosen.start) > 0)
    reordered = subsample(windows.take(np.arange(len(windows))[::-1]), 20, seed=1)
    assert np.array_equal(chosen.start, reordered.start)
    assert set(subsample(windows, 10, seed=1).start) <= set(chosen.start)  # a smaller sample is nested in a larger
    targets = random_targets(chosen, 6, seed=1)
    assert np.all(targets != chosen.y) and targets.min() >= 0 and targets.max() < 6
    half = chosen.take(np.arange(0, 20, 2))
    assert np.array_equal(random_targets(half, 6, seed=1), targets[::2])
    assert len(np.unique(targets - chosen.y)) > 1  # not one fixed shift of the class


def test_weighted_spearman_is_spearman_of_the_repeated_sample():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, size=40).astype(float)  # ties on both sides
    b = a + rng.integers(0, 4, size=40)
    weights = rng.integers(0, 4, size=(5, 40)).astype(float)
    expected = [spearmanr(np.repeat(a, w.astype(int)), np.repeat(b, w.astype(int))).statistic for w in weights]
    np.testing.assert_allclose(weighted_spearman(a, b, weights), expected, rtol=1e-12)
    np.testing.assert_allclose(weighted_spearman(a, b, 2.5 * weights), expected, rtol=1e-12)  # scale-free


def test_bad_options_raise_naming_the_field(analysis):
    for options, field in [({"methods": "shap"}, "methods"), ({"threshold": 1.0}, "threshold"), ({"windows": 1}, "windows"),
                           ({"baseline": "median"}, "baseline")]:
        with pytest.raises(ConfigError) as error:
            SanityConfig(**options)
        assert error.value.option == field
    with pytest.raises(ConfigError) as error:
        sanity(analysis.model, analysis.windows, SanityConfig(methods="mask", pathways="sideways", windows=4))
    assert error.value.option == "pathways"


# --- IG's infidelity and sensitivity --------------------------------------------------------------

class Linear(torch.nn.Module):
    """Class logits Σ_m ⟨w_m[class], x_m⟩ + b, plus `curvature` × (that)² for a non-linear control.
    With curvature 0, IG from a zero baseline is exactly w ⊙ x, so its infidelity is 0."""

    modality_names = ("emg", "acc")

    def __init__(self, shapes, n_classes: int, curvature: float = 0.0):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weights = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(n_classes, *shape, generator=generator))
                                              for shape in shapes)
        self.bias = torch.nn.Parameter(torch.randn(n_classes, generator=generator))
        self.curvature = curvature

    def forward(self, *windows):
        linear = self.bias + sum(torch.einsum("btc,ktc->bk", x, w) for x, w in zip(windows, self.weights))
        return linear + self.curvature * linear**2


def toy_windows(n_classes: int = 2, repetitions: int = 3, per_segment: int = 2) -> WindowSet:
    rng = np.random.default_rng(1)
    n = n_classes * repetitions * per_segment
    y = np.repeat(np.arange(n_classes), repetitions * per_segment)
    repetition = np.tile(np.repeat(np.arange(1, repetitions + 1), per_segment), n_classes)
    x = {"emg": rng.standard_normal((n, 10, 3)).astype(np.float32), "acc": rng.standard_normal((n, 10, 4)).astype(np.float32)}
    return WindowSet(x, y, y + 1, repetition, np.arange(n) * 100)


def test_ig_infidelity_is_zero_for_a_linear_model_and_not_for_a_curved_one():
    windows = toy_windows()
    shapes = [(10, 3), (10, 4)]
    config, options = IGConfig(steps=8, bootstrap=50), IGMetricsOptions(windows=12, perturbations=6, noise=0.1)
    linear = ig_metrics(Linear(shapes, 2), windows, config, options=options).set_index("metric")
    curved = ig_metrics(Linear(shapes, 2, curvature=0.3), windows, config, options=options).set_index("metric")
    # the scale of the logit changes the perturbations cause: E[(w·ε)²] = noise² ‖w‖²
    model = Linear(shapes, 2)
    scale = 0.1**2 * min(sum(float(w[k].detach().pow(2).sum()) for w in model.weights) for k in range(2))
    assert linear.loc["infidelity", "estimate"] < 1e-6 * scale
    assert curved.loc["infidelity", "estimate"] > 1e-2 * scale
    # sensitivity: ‖w ⊙ δ‖ ≤ radius ‖w‖ for |δ| ≤ radius, against ‖IG(x)‖ = ‖w ⊙ x‖, window by window
    bounds = []
    for i, k in enumerate(windows.y):
        w = [p[k].detach().numpy() for p in model.weights]
        norm_w = np.sqrt(sum((v**2).sum() for v in w))
        norm_ig = np.sqrt(sum(((v * windows.x[name][i]) ** 2).sum() for v, name in zip(w, model.modality_names)))
        bounds.append(options.radius * norm_w / norm_ig)
    assert 0 < linear.loc["sensitivity_max", "estimate"] <= np.mean(bounds) * (1 + 1e-4)
    assert (linear.windows == len(windows)).all() and (linear.segments == 6).all()


def test_ig_metrics_are_finite_and_fixed_by_the_seed_alone(analysis):
    config, options = IGConfig(steps=4, bootstrap=50), IGMetricsOptions(windows=5, perturbations=3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = ig_metrics(analysis.model, analysis.windows, config, analysis.reference, options=options)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is neither used nor moved
    torch.manual_seed(456)
    second = ig_metrics(analysis.model, analysis.windows, config, analysis.reference, options=options)
    pd.testing.assert_frame_equal(first, second)
    assert list(first.metric) == ["infidelity", "sensitivity_max"]
    assert np.isfinite(first[["estimate", "ci_low", "ci_high"]].to_numpy(float)).all()
    assert (first.estimate > 0).all()
    reseeded = ig_metrics(analysis.model, analysis.windows, IGConfig(steps=4, bootstrap=50, seed=1), analysis.reference,
                          options=options)
    assert not np.allclose(first.estimate, reseeded.estimate)
