"""`emap`: the additive projection on tiny models with known answers, against independent references.

- a sum of per-modality functions is its own projection (exact and sampled, two and three groups);
- a product of per-modality functions projects onto its analytic additive part, recomputed here in
  float64 from the parts (for three groups, the conditional means take the other groups jointly from
  one partner window, as the projection is defined);
- sampled EMAP approaches the exact projection as the partners grow (K = 4, 16, 64);
- the seed alone fixes the projection: not the batch size, not the order of the windows;
- on the hierarchical and the multimodal transformer, the fast path (each modality encoded once, only
  the mixing stage per pair) equals every pair through the whole model, and encodes each window once;
  a negative control gathers above a cross-modal layer and must differ;
- the table against numbers computed here, and refusals naming the field at fault."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from isoprobe.attribution import emap as emap_module
from isoprobe.attribution.emap import (COLUMNS, EmapConfig, EmapResult, emap, emap_logits, emap_projection,
                                       partner_windows)
from isoprobe.data.pipeline import WindowSet
from isoprobe.errors import ConfigError

from tests.tolerance import assert_close, scaled_atol

N_CLASSES = 3
CHANNELS = (4, 3, 2)


def window_set(n: int, seed: int, groups: int = 2, windows_per_segment: int = 2) -> WindowSet:
    """n windows of 10 samples, 3 classes in turn, `windows_per_segment` windows per (class, repetition)
    segment, distinct keys that are not in the windows' order."""
    rng = np.random.default_rng(seed)
    names = ("emg", "acc", "force")[:groups]
    x = {name: rng.normal(size=(n, 10, c)).astype(np.float32) for name, c in zip(names, CHANNELS)}
    y = np.arange(n) % N_CLASSES
    repetition = np.arange(n) // (windows_per_segment * N_CLASSES) + 1
    return WindowSet(x, y, y + 1, repetition, rng.permutation(n) * 100 + 7)


class Parts(nn.Module):
    """Logits [batch, class] from one function per group, f_m(x_m) = 2·tanh(W_m · mean over time of x_m)
    + 0.5: summed ("sum") or multiplied ("product")."""

    def __init__(self, groups: int = 2, combine: str = "sum", seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.modality_names = ("emg", "acc", "force")[:groups]
        self.combine = combine
        self.parts = nn.ModuleList(nn.Linear(c, N_CLASSES) for c in CHANNELS[:groups])

    def part(self, m: int, x: torch.Tensor) -> torch.Tensor:
        return 2 * torch.tanh(self.parts[m](x.mean(dim=1))) + 0.5

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        parts = [self.part(m, x) for m, x in enumerate(windows)]
        out = parts[0]
        for p in parts[1:]:
            out = out + p if self.combine == "sum" else out * p
        return out


def parts64(model: Parts, windows: WindowSet) -> list[np.ndarray]:
    """Each group's function on every window, in float64: one [window, class] array per group."""
    out = []
    with torch.no_grad():
        for m, name in enumerate(model.modality_names):
            layer = model.parts[m]
            x = torch.as_tensor(windows.x[name], dtype=torch.float64).mean(dim=1)
            out.append((2 * torch.tanh(x @ layer.weight.double().T + layer.bias.double()) + 0.5).numpy())
    return out


def model_logits(model: nn.Module, windows: WindowSet) -> torch.Tensor:
    with torch.no_grad():
        return model(*(torch.as_tensor(windows.x[name]) for name in model.modality_names))


SAMPLED = EmapConfig(partners=3, exact_below=0)


# --- (1) a sum is its own projection --------------------------------------------------------------------

@pytest.mark.parametrize("groups", [2, 3])
@pytest.mark.parametrize("config", [EmapConfig(partners="exact"), SAMPLED], ids=["exact", "sampled"])
def test_a_sum_of_per_modality_functions_is_its_own_projection(groups, config):
    windows = window_set(24, seed=1, groups=groups)
    model = Parts(groups, "sum")
    projection = emap_projection(model, windows, config)
    assert projection.exact == (config.partners == "exact")
    assert_close(projection.additive, model_logits(model, windows))
    assert_close(projection.model, model_logits(model, windows))
    # negative control: a product is not additive, so the same check fails on it
    product = Parts(groups, "product")
    error = (emap_logits(product, windows, config) - model_logits(product, windows).double()).abs().max()
    assert error > 100 * scaled_atol(model_logits(product, windows))


# --- (2) a product projects onto its analytic additive part ------------------------------------------

def additive_part(parts: list[np.ndarray]) -> np.ndarray:
    """The exact EMAP of f = Π_m g_m, in float64: A_m(i) = g_m(i) · mean_j Π_{m' ≠ m} g_m'(j) (the other
    groups taken jointly from window j), G = mean over m and i of A_m, f̂ = Σ_m A_m − (M − 1)·G."""
    groups = len(parts)
    conditional = [parts[m] * np.prod([parts[o] for o in range(groups) if o != m], axis=0).mean(axis=0)
                   for m in range(groups)]
    grand = np.mean([a.mean(axis=0) for a in conditional], axis=0)
    return np.sum(conditional, axis=0) - (groups - 1) * grand


def test_additive_part_is_hessel_and_lee_for_two_groups():
    """The reference above, for two groups, is g·h̄ + ḡ·h − ḡ·h̄ (written independently)."""
    rng = np.random.default_rng(0)
    g, h = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(additive_part([g, h]), g * h.mean(0) + g.mean(0) * h - g.mean(0) * h.mean(0), atol=1e-12)


@pytest.mark.parametrize("groups", [2, 3])
def test_a_product_projects_onto_its_analytic_additive_part(groups):
    windows = window_set(24, seed=2, groups=groups)
    model = Parts(groups, "product", seed=1)
    expected = additive_part(parts64(model, windows))
    assert_close(emap_logits(model, windows, EmapConfig(partners="exact")), expected)
    assert_close(emap_logits(model, windows, EmapConfig(partners=4, exact_below=24)), expected)  # exact by size
    # negative control: the model itself is far from its additive part
    assert np.abs(model_logits(model, windows).double().numpy() - expected).max() > 100 * scaled_atol(expected)


# --- (3) sampled approaches exact ---------------------------------------------------------------------

@pytest.mark.parametrize("groups", [2, 3])
def test_sampled_emap_approaches_exact_as_partners_grow(groups):
    windows = window_set(40, seed=3, groups=groups)
    model = Parts(groups, "product", seed=2)
    exact = emap_logits(model, windows, EmapConfig(partners="exact"))
    errors = [np.mean([(emap_logits(model, windows, EmapConfig(partners=k, exact_below=0, seed=seed)) - exact)
                       .abs().mean().item() for seed in range(3)]) for k in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert errors[2] < errors[0] / 2.5  # the error falls as 1/√K: 4× from K = 4 to 64


@pytest.mark.parametrize("groups", [2, 3])
def test_sampled_emap_is_unbiased(groups):
    """Averaged over 100 seeds, sampled EMAP at K = 4 lands on the exact projection: the error of the
    average falls like 1/√100 of one draw's (a biased grand mean would leave a floor)."""
    windows = window_set(20, seed=3, groups=groups)
    model = Parts(groups, "product", seed=2)
    exact = emap_logits(model, windows, EmapConfig(partners="exact"))
    draws = torch.stack([emap_logits(model, windows, EmapConfig(partners=4, exact_below=0, seed=seed)) for seed in range(100)])
    one = (draws - exact).abs().mean().item()
    assert (draws.mean(dim=0) - exact).abs().mean().item() < one / 5


# --- (4) the seed alone ---------------------------------------------------------------------------------

def test_partners_depend_on_the_seed_and_the_keys_alone():
    keys = np.array([50, 10, 40, 20, 30])
    partners = partner_windows(keys, 2, 6, seed=3)
    assert partners.shape == (5, 2, 6) and partners.min() >= 0 and partners.max() < 5
    order = np.array([3, 0, 4, 1, 2])
    shuffled = partner_windows(keys[order], 2, 6, seed=3)
    np.testing.assert_array_equal(keys[order][shuffled], keys[partners][order])  # the same partners, by key
    assert not np.array_equal(partner_windows(keys, 2, 6, seed=4), partners)
    with pytest.raises(ConfigError, match="keys"):
        partner_windows(np.array([1, 1, 2]), 2, 3, seed=0)


@pytest.mark.parametrize("groups", [2, 3])
def test_the_same_seed_gives_the_same_projection_at_any_batch_size_or_window_order(groups):
    windows = window_set(30, seed=4, groups=groups)
    model = Parts(groups, "product", seed=3)
    config = EmapConfig(partners=5, exact_below=0, seed=11, batch_size=1000)
    reference = emap_logits(model, windows, config)
    assert_close(emap_logits(model, windows, EmapConfig(partners=5, exact_below=0, seed=11, batch_size=7)), reference)
    order = np.random.default_rng(0).permutation(len(windows))
    shuffled = emap_logits(model, windows.take(order), EmapConfig(partners=5, exact_below=0, seed=11, batch_size=13))
    assert_close(shuffled, reference[order])
    # negative control: another seed draws other partners
    other = emap_logits(model, windows, EmapConfig(partners=5, exact_below=0, seed=12, batch_size=1000))
    assert (other - reference).abs().max() > 100 * scaled_atol(reference)


# --- (5) the fast path on isoprobe's transformers -------------------------------------------------------

@pytest.fixture(scope="module")
def few(db2) -> WindowSet:
    """30 test windows over every class."""
    test = db2.splits["test"]
    return test.take(np.linspace(0, len(test) - 1, 30).round().astype(int))


@pytest.mark.parametrize("name", ["hier", "mmt"])
@pytest.mark.parametrize("config", [EmapConfig(partners="exact"), EmapConfig(partners=4, exact_below=0, batch_size=50)],
                         ids=["exact", "sampled"])
def test_the_fast_path_equals_every_pair_through_the_whole_model(request, name, config, few, monkeypatch):
    model = request.getfixturevalue(name)
    encoded = []
    embed = model.embed_stage
    monkeypatch.setattr(model, "embed_stage", lambda *inputs: encoded.append(len(inputs[0])) or embed(*inputs))
    fast = emap_projection(model, few, config)
    assert sum(encoded) == len(few)  # each window encoded once, not once per pair
    monkeypatch.undo()
    naive = emap_projection(model, few, config, reuse_encodings=False)
    assert_close(fast.model, model_logits(model, few))
    assert_close(fast.additive, naive.additive)
    assert_close(fast.conditional, naive.conditional)
    assert fast.evaluations == naive.evaluations == (len(few) ** 2 if config.partners == "exact" else 3 * 4 * len(few))


def test_gathering_above_a_cross_modal_layer_differs(hier, few, monkeypatch):
    """Negative control: the hierarchical stream is separable only below shared layer 0; mixing the
    stream entering layer 1 (after cross-modal attention) is another function."""
    config = EmapConfig(partners="exact")
    naive = emap_logits(hier, few, config, reuse_encodings=False)
    assert emap_module.separable_depth(hier) == 0
    monkeypatch.setattr(emap_module, "separable_depth", lambda model: 1)
    wrong = emap_logits(hier, few, config)
    assert (wrong - naive).abs().max() > 100 * scaled_atol(naive)


def test_the_multimodal_transformer_mixes_only_at_its_fusion_head(mmt):
    assert emap_module.separable_depth(mmt) == mmt.n_layers


# --- the table -----------------------------------------------------------------------------------------

def test_the_table_against_numbers_computed_here():
    # class 2 has one segment (repetition 1 only): its CIs are NaN
    windows = window_set(36, seed=5, windows_per_segment=3)
    keep = (windows.y != 2) | (windows.repetition == 1)
    windows = windows.take(np.flatnonzero(keep))
    model = Parts(2, "product", seed=4)
    config = EmapConfig(partners="exact", bootstrap=200)
    result = emap(model, windows, config)
    assert isinstance(result, EmapResult) and result.kind == "emap"
    table = result.table
    assert tuple(table.columns) == COLUMNS
    model_correct = (model_logits(model, windows).argmax(-1).numpy() == windows.y).astype(float)
    emap_correct = (additive_part(parts64(model, windows)).argmax(-1) == windows.y).astype(float)
    assert result.estimate("model accuracy") == pytest.approx(model_correct.mean())
    assert result.estimate("emap accuracy") == pytest.approx(emap_correct.mean())
    assert result.estimate("gap") == pytest.approx(model_correct.mean() - emap_correct.mean())
    for c in range(N_CLASSES):
        rows = table[table["class"] == str(c)]
        assert set(rows.label) == {str(c + 1)}
        assert result.estimate("gap", c) == pytest.approx((model_correct - emap_correct)[windows.y == c].mean())
        assert rows.windows.iloc[0] == (windows.y == c).sum()
    overall = table[table["class"] == "all"]
    assert (overall.segments == 3 * 4 - 3).all() and overall.exact.all()
    assert ((overall.ci_low <= overall.estimate) & (overall.estimate <= overall.ci_high)).all()
    lone = table[table["class"] == "2"]
    assert lone.ci_low.isna().all() and lone.ci_high.isna().all() and (lone.segments == 1).all()
    assert table[table["class"] == "0"].ci_low.notna().all()
    accuracy = table[table.quantity != "gap"]
    assert ((accuracy.ci_low.fillna(0) >= 0) & (accuracy.ci_high.fillna(1) <= 1)).all()


def test_the_result_writes_itself(tmp_path):
    windows = window_set(24, seed=6)
    result = emap(Parts(2, "sum"), windows, EmapConfig(partners=2, exact_below=0, bootstrap=50))
    assert result.estimate("gap") == 0.0  # a sum is its own projection: it loses nothing
    paths = result.write(tmp_path, {"note": "here"})
    written = pd.read_csv(paths[0])
    assert list(written.columns) == list(COLUMNS) and len(written) == 3 * (1 + N_CLASSES)
    assert result.to_dict()["config"]["partners"] == 2


# --- (6) refusals ---------------------------------------------------------------------------------------

def test_a_model_of_one_modality_group_is_refused():
    windows = window_set(12, seed=7)
    model = Parts(1, "sum")
    with pytest.raises(ConfigError, match="two or more modality groups") as error:
        emap(model, windows, EmapConfig())
    assert error.value.option == "modalities" and error.value.value == "emg"


def test_a_single_group_transformer_is_refused(db2_emg):
    from tests.engine.conftest import small

    model = small(db2_emg, "hierarchical", n_layers=1, n_encoder_layers=1).eval()
    with pytest.raises(ConfigError) as error:
        emap_projection(model, db2_emg.splits["test"], EmapConfig())
    assert error.value.option == "modalities"


@pytest.mark.parametrize("options, field", [
    ({"partners": 0}, "partners"), ({"partners": -2}, "partners"), ({"partners": "many"}, "partners"),
    ({"partners": 2.5}, "partners"), ({"partners": True}, "partners"), ({"exact_below": -1}, "exact_below"),
    ({"batch_size": 0}, "batch_size"), ({"bootstrap": -1}, "bootstrap"), ({"seed": -1}, "seed"), ({"level": 1.0}, "level"),
])
def test_bad_options_name_their_field(options, field):
    with pytest.raises(ConfigError) as error:
        EmapConfig(**options)
    assert error.value.option == field


def test_partners_read_from_text():
    assert EmapConfig(partners="16").partners == 16
    assert EmapConfig(partners="Exact").partners == "exact"
    assert EmapConfig.from_dict(EmapConfig(partners="exact").to_dict()) == EmapConfig(partners="exact")


def test_windows_that_cannot_be_projected_are_refused():
    model = Parts(2, "sum")
    windows = window_set(12, seed=8)
    with pytest.raises(ConfigError) as error:
        emap(model, windows.take(np.arange(0)), EmapConfig())
    assert error.value.option == "windows"
    lacking = WindowSet({"emg": windows.x["emg"]}, windows.y, windows.label, windows.repetition, windows.start)
    with pytest.raises(ConfigError, match="acc"):
        emap(model, lacking, EmapConfig())
    repeated = WindowSet(windows.x, windows.y, windows.label, windows.repetition, np.zeros(12, dtype=np.int64))
    with pytest.raises(ConfigError) as error:
        emap(model, repeated, SAMPLED)
    assert error.value.option == "keys"
