"""`interact`: the modality game on tiny models with known answers (a sum of per-modality functions has
no interaction and Shapley values equal to each part's own contribution; a product does interact),
for every baseline; the pathway game on the hierarchical transformer against the model and the
engine run directly (grand coalition = clean, empty coalition = every pathway masked, one coalition
in between through the engine's one-run-per-condition reference, efficiency per window) and on the
multimodal transformer, whose cross-modal pathway is absent by construction (Shapley value exactly
0, a negative control beside the non-zero `uni` players); on a foreign HookedRootModule through the
engine; the table's schema, CIs, batch-size and window-order independence, and config errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from isoprobe.attribution import common
from isoprobe.attribution.interaction import (COLUMNS, InteractConfig, InteractionResult, game_values, interact,
                                              metric_values, pathway_coalition_logits, pathway_game)
from isoprobe.attribution.shapley import coalition_index, shapley_values
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.donors import donor_indices
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.errors import ConfigError

from tests.engine.test_foreign_model import D_MODEL, GROUPS, NAMES, TinyModel, direct, edges_of
from tests.tolerance import assert_close, scaled_atol

N_CLASSES = 3
CHANNELS = {"emg": 4, "acc": 3, "force": 2}
BASELINES = ("zero", "mean", "donor")


def window_set(n: int, seed: int, names=("emg", "acc")) -> WindowSet:
    """n windows of 10 samples, 3 classes in turn, 2 windows per segment, distinct keys."""
    rng = np.random.default_rng(seed)
    x = {name: rng.normal(size=(n, 10, CHANNELS[name])).astype(np.float32) for name in names}
    y = np.arange(n) % N_CLASSES
    return WindowSet(x, y, y + 1, np.arange(n) // (2 * N_CLASSES) + 1, np.arange(n) * 100 + seed)


class PerModality(nn.Module):
    """Logits [batch, class] combined from one function per modality, f_m(x_m) = 2·tanh(W_m · mean over
    time of x_m): added (no interaction) or, for the modalities in `multiply`, multiplied."""

    def __init__(self, names=("emg", "acc"), multiply=(), seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.modality_names = tuple(names)
        self.multiply = tuple(multiply)
        self.parts = nn.ModuleDict({m: nn.Linear(CHANNELS[m], N_CLASSES) for m in names})

    def part(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return 2 * torch.tanh(self.parts[name](x.mean(dim=1)))

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        parts = {m: self.part(m, x) for m, x in zip(self.modality_names, windows)}
        product = torch.ones_like(next(iter(parts.values())))
        for m in self.multiply:
            product = product * parts[m]
        return sum(p for m, p in parts.items() if m not in self.multiply) + (product if self.multiply else 0)


@pytest.fixture(scope="module")
def toy():
    return window_set(24, seed=1), window_set(30, seed=2)  # evaluated windows, reference windows


def baseline_windows(kind: str, windows: WindowSet, reference: WindowSet, seed: int = 0) -> dict[str, np.ndarray]:
    """Each window's baseline per modality, written out here: zeros, the reference mean window, or the
    window of another class that `donor_indices` assigns."""
    if kind == "zero":
        return {m: np.zeros_like(x) for m, x in windows.x.items()}
    if kind == "mean":
        return {m: np.broadcast_to(reference.x[m].astype(np.float64).mean(axis=0), x.shape).astype(np.float32)
                for m, x in windows.x.items()}
    donors = donor_indices(len(windows), seed, 0, windows.y, windows.start, rule="other-class")
    assert (windows.y[donors] != windows.y).all()
    return {m: x[donors] for m, x in windows.x.items()}


def part_logit(model: PerModality, name: str, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model.part(name, torch.as_tensor(np.ascontiguousarray(x))).double().numpy()
    return out[np.arange(len(target)), target]


@pytest.mark.parametrize("baseline", BASELINES)
def test_a_sum_of_modalities_has_no_interaction_and_each_part_is_its_shapley_value(toy, baseline):
    windows, reference = toy
    model = PerModality()
    values = game_values(model, windows, InteractConfig(baseline=baseline, games=("modality",), batch_size=7), reference)
    game = values["modality"]
    assert game.players == ("emg", "acc")
    logit = game.values["logit"]  # [coalition, window]
    interaction = logit[3] - logit[1] - logit[2] + logit[0]
    tolerance = scaled_atol(logit)  # float32 logits: their rounding scales with their size, not with the 0 they add up to
    np.testing.assert_allclose(interaction, 0, atol=tolerance)
    base = baseline_windows(baseline, windows, reference)
    table = interact(model, windows, InteractConfig(baseline=baseline, games=("modality",), bootstrap=50), reference).table
    for m in ("emg", "acc"):
        own = part_logit(model, m, windows.x[m], windows.y) - part_logit(model, m, base[m], windows.y)
        assert np.abs(own).max() > 0.1  # the check has something to find
        row = table[(table.part == m) & (table.quantity == "shapley") & (table.metric == "logit")]
        assert row.estimate.item() == pytest.approx(own.mean(), abs=tolerance)
    row = table[(table.part == "emg × acc") & (table.quantity == "interaction") & (table.metric == "logit")]
    assert row.estimate.item() == pytest.approx(0, abs=tolerance)


@pytest.mark.parametrize("baseline", BASELINES)
def test_a_product_of_modalities_interacts(toy, baseline):
    windows, reference = toy
    model = PerModality(multiply=("emg", "acc"))
    config = InteractConfig(baseline=baseline, games=("modality",), bootstrap=50)
    logit = game_values(model, windows, config, reference)["modality"].values["logit"]
    base = baseline_windows(baseline, windows, reference)
    # f = f_emg · f_acc: f(both) − f(emg only) − f(acc only) + f(neither) = (e − e')(a − a')
    e, e0 = (part_logit(model, "emg", x, windows.y) for x in (windows.x["emg"], base["emg"]))
    a, a0 = (part_logit(model, "acc", x, windows.y) for x in (windows.x["acc"], base["acc"]))
    expected = (e - e0) * (a - a0)
    np.testing.assert_allclose(logit[3] - logit[1] - logit[2] + logit[0], expected, atol=1e-5)
    assert np.abs(expected).mean() > 0.05
    result = interact(model, windows, config, reference)
    assert result.estimate("modality", "interaction", "emg × acc", "logit") == pytest.approx(expected.mean(), abs=1e-5)


def test_three_modalities_interact_only_where_they_multiply():
    names = ("emg", "acc", "force")
    windows, reference = window_set(18, seed=3, names=names), window_set(12, seed=4, names=names)
    model = PerModality(names, multiply=("emg", "acc"))
    result = interact(model, windows, InteractConfig(games=("modality",), bootstrap=20), reference)
    pair = lambda p: result.estimate("modality", "interaction", p, "logit")
    assert abs(pair("emg × acc")) > 0.01
    values = [result.estimate("modality", "value", v, "logit") for v in ("all", "none")]
    tolerance = scaled_atol(values)  # float32 logits: rounding scales with their size
    assert pair("emg × force") == pytest.approx(0, abs=tolerance) and pair("acc × force") == pytest.approx(0, abs=tolerance)
    # efficiency: the Shapley values share out v(all) − v(none)
    total = sum(result.estimate("modality", "shapley", m, "logit") for m in names)
    assert total == pytest.approx(values[0] - values[1], abs=tolerance)


@pytest.fixture(scope="module")
def split(db2):
    test = db2.splits["test"]
    return test.take(np.arange(0, len(test), 6))  # 22 windows, every class, 12 segments


def inputs_of(windows: WindowSet, names) -> list[torch.Tensor]:
    return [torch.as_tensor(windows.x[m]) for m in names]


def metrics(logits: torch.Tensor, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = logits.double()
    return (logits.argmax(-1).numpy() == target).astype(float), logits[np.arange(len(target)), target].numpy()


@pytest.fixture(scope="module")
def hier_game(hier, split):
    return game_values(hier, split, InteractConfig(games=("pathway",), batch_size=8))["pathway"]


def test_the_pathway_game_on_the_hierarchical_model_against_the_engine(hier, split, hier_game):
    names = hier.modality_names
    assert hier_game.players == ("uni:emg", "uni:acc", "cross", "relay", "readout")
    assert not any(hier_game.null)
    inputs = inputs_of(split, names)
    with torch.no_grad():
        clean = hier(*inputs)
    engine = InterventionEngine(hier)
    layers = tuple(range(engine.n_layers))
    everything = Condition(layers, "emg->emg+acc->acc+cross+relay+readout")
    # a coalition in between: uni:emg and relay kept, the rest masked
    between = Condition(layers, "acc->acc+cross+readout")
    masked_none, masked_between = engine.run_naive(inputs, [everything, between])
    for coalition, logits in ((31, clean), (0, masked_none), (coalition_index([1, 0, 0, 1, 0]), masked_between)):
        accuracy, logit = metrics(logits, split.y)
        np.testing.assert_array_equal(hier_game.values["accuracy"][coalition], accuracy)
        assert_close(hier_game.values["logit"][coalition], logit)  # other batches: float32 rounding
    assert np.abs(hier_game.values["logit"][0] - hier_game.values["logit"][31]).max() > 0.1
    # efficiency, window by window, on both metrics
    for metric, v in hier_game.values.items():
        np.testing.assert_allclose(shapley_values(v, 5).sum(axis=0), v[-1] - v[0], atol=1e-9)


def test_the_pathway_table_on_the_hierarchical_model(hier, split, hier_game):
    result = interact(hier, split, InteractConfig(games=("pathway",), bootstrap=100, batch_size=8))
    assert isinstance(result, InteractionResult) and result.kind == "interaction"
    table = result.to_frame()
    assert tuple(table.columns) == COLUMNS == (*common.COLUMNS, "metric")
    assert set(table.method) == {"pathway game"} and set(table.site) == {"all layers"}
    assert set(table.metric) == {"accuracy", "logit"}
    assert set(table.quantity) == {"value", "shapley", "shapley share", "interaction", "interaction share"}
    assert (table.windows == len(split)).all() and (table.segments == 12).all()
    assert len(table) == 2 * (2 + 2 * 5 + 2 * 10)  # per metric: all, none, 5 players, 10 pairs, and their shares
    for metric in ("accuracy", "logit"):
        v = hier_game.values[metric]
        assert result.estimate("pathway", "value", "all", metric) == pytest.approx(v[-1].mean())
        assert result.estimate("pathway", "value", "none", metric) == pytest.approx(v[0].mean())
        shares = table[(table.quantity == "shapley share") & (table.metric == metric)].estimate
        if v[-1].sum() != v[0].sum():
            # efficiency is no identity of the code: Shapley values with wrong coalition weights break it
            assert shares.sum() == pytest.approx(1)
    # every CI contains its estimate; only the shares of a flat game (v(all) = v(none)) may be undefined
    flat = {m for m in ("accuracy", "logit") if hier_game.values[m][-1].sum() == hier_game.values[m][0].sum()}
    ok = table.dropna(subset=["ci_low", "ci_high"])
    undefined = table.drop(ok.index)
    assert "logit" not in flat and set(undefined.metric) <= flat and undefined.quantity.str.endswith("share").all()
    assert len(ok) >= len(table) - 2 * (5 + 10)
    tol = 1e-9 * (1 + ok.estimate.abs())
    assert ((ok.ci_low <= ok.estimate + tol) & (ok.estimate <= ok.ci_high + tol)).all()
    document = result.to_dict()
    assert document["kind"] == "interaction" and document["config"]["games"] == ["pathway"]


def test_cross_is_exactly_zero_on_the_multimodal_transformer(mmt, split):
    """The mmt has no cross-modal attention (and no CLS token): those players can change nothing."""
    result = interact(mmt, split, InteractConfig(games=("pathway",), bootstrap=20))
    table = result.table
    for metric in ("accuracy", "logit"):
        for player in ("cross", "relay", "readout"):
            assert result.estimate("pathway", "shapley", player, metric) == 0.0
        pairs = table[(table.quantity == "interaction") & (table.metric == metric) & table.part.str.contains("cross")]
        assert len(pairs) == 4 and (pairs.estimate == 0.0).all()
    # negative control: the uni players do change the logit
    assert abs(result.estimate("pathway", "shapley", "uni:emg", "logit")) > 1e-3


def test_the_pathway_game_on_a_foreign_hooked_model():
    """Through the engine, on the two-layer HookedRootModule of the engine tests (no stages): the empty
    coalition equals a masked computation written without hooks; a one-token modality's `uni` has
    only its self edge, which stays, so that player is null and gets exactly 0."""
    model = TinyModel().eval()
    tokens = torch.randn(4, len(GROUPS), D_MODEL, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    engine = InterventionEngine(model, GROUPS, NAMES)
    game = pathway_game(engine)
    assert [p.name for p in game.players] == ["uni:left", "uni:right", "uni:force", "cross", "relay", "readout"]
    assert game.null == (False, False, True, False, False, False)
    assert len(game.conditions) == 2**5 - 1  # the null player shares every condition
    logits = pathway_coalition_logits(engine, [tokens], game)  # [coalition, batch, class]
    everything = edges_of("left->left+right->right+cross+relay+readout")[None]
    with torch.no_grad():
        expected_none, expected_all = direct(model, tokens, {0: everything, 1: everything}), direct(model, tokens)
    np.testing.assert_allclose(logits[0].numpy(), expected_none.numpy(), atol=1e-12)
    np.testing.assert_allclose(logits[-1].numpy(), expected_all.numpy(), atol=1e-12)
    target = torch.zeros(4, dtype=torch.long)
    phi = shapley_values(metric_values(logits, target)["logit"], 6)
    assert (phi[2] == 0).all() and np.abs(phi[[0, 1, 3]]).max() > 1e-3


def test_results_do_not_depend_on_batch_size_or_window_order(hier, split):
    config = dict(baseline="donor", bootstrap=50)
    small = interact(hier, split, InteractConfig(batch_size=8, **config)).table
    # every batch size and window order at once: donors are keyed by window, segments by their ids
    order = np.random.default_rng(0).permutation(len(split))
    shuffled = interact(hier, split.take(order), InteractConfig(batch_size=64, **config)).table
    numbers = ["estimate", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(small.drop(columns=numbers), shuffled.drop(columns=numbers))
    assert_close(shuffled[numbers].to_numpy(), small[numbers].to_numpy())


def test_predicted_target_and_progress(hier, split):
    calls = []
    result = interact(hier, split.take(np.arange(12)), InteractConfig(target="predicted", batch_size=5, bootstrap=20),
                      device="cpu", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    for game in ("modality", "pathway"):  # the clean model always predicts the class it predicts
        assert result.estimate(game, "value", "all", "accuracy") == 1.0
    assert list(dict.fromkeys(result.table.method)) == ["modality game", "pathway game"]
    assert set(result.table[result.table.method == "modality game"].site) == {"inputs"}


def test_config_values_and_errors(toy):
    config = InteractConfig(games="pathway, modality")
    assert config.games == ("pathway", "modality")
    assert InteractConfig.from_dict(config.to_dict()) == config
    bad = [("baseline", "median"), ("target", "argmax"), ("games", ("modality", "edge")), ("games", ()),
           ("games", ("pathway", "pathway")), ("batch_size", 0), ("bootstrap", -1), ("seed", -1), ("level", 1.5)]
    for field, value in bad:
        with pytest.raises(ConfigError) as error:
            InteractConfig(**{field: value})
        assert error.value.option == field
    with pytest.raises(ConfigError) as error:
        InteractConfig.from_dict({"baseline": "zero", "layers": "all"})
    assert "layers" in str(error.value)

    windows, _ = toy
    model = PerModality()
    with pytest.raises(ConfigError) as error:  # the mean baseline needs the training windows
        interact(model, windows, InteractConfig(baseline="mean", games=("modality",)))
    assert error.value.option == "reference"
    lopsided = windows.take(np.flatnonzero(windows.y != 2))
    lopsided = WindowSet(lopsided.x, np.where(np.arange(len(lopsided)) < 12, 0, 1), lopsided.label, lopsided.repetition,
                         lopsided.start)  # 12 of 16 windows in one class: no donor of another class for each
    with pytest.raises(ConfigError) as error:
        interact(model, lopsided, InteractConfig(baseline="donor", games=("modality",)))
    assert error.value.option == "baseline"
    with pytest.raises(ConfigError) as error:
        interact(model, windows.take(np.arange(0)), InteractConfig(games=("modality",)))
    assert error.value.option == "windows"
