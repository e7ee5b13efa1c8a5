"""`isoprobe.attribution.ig`: completeness within captum's delta (against logits computed here), for
both baselines and every site; shares; agreement with a float64 Gauss-Legendre reference written
here and with the analytic IG of a linear model; a modality the model ignores gets share 0; no
number depends on the batch sizes; the largest forward batch is bounded by the internal batch
whatever the number of windows; the options act; bad values name their field."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from isoprobe.attribution.common import COLUMNS, target_classes
from isoprobe.attribution.ig import IGConfig, IGResult, attribute
from isoprobe.errors import ConfigError
from tests.engine.conftest import small
from tests.tolerance import assert_close, scaled_atol

STEPS = 24  # enough for |δ| ≪ |f(x) − f(b)| on the small models; few enough to stay fast


@pytest.fixture(scope="module")
def split(db2):
    test = db2.splits["test"]
    return test.take(np.linspace(0, len(test) - 1, 6).round().astype(int))  # 6 windows, 6 segments


@pytest.fixture(scope="module")
def reference(db2):
    return db2.splits["train"]


def run(model, split, reference=None, **options) -> IGResult:
    return attribute(model, split, IGConfig(**({"steps": STEPS, "bootstrap": 20, "batch_size": 4,
                                                "internal_batch_size": 48} | options)), reference=reference)


def inputs_of(model, split, dtype=torch.float32) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(split.x[name], dtype=dtype) for name in model.modality_names)


def baselines_of(kind, model, split, reference, dtype=torch.float32) -> tuple[torch.Tensor, ...]:
    """The baseline windows computed here: zeros, or the mean training window (float64 mean)."""
    shapes = [split.x[name].shape for name in model.modality_names]
    if kind == "zero":
        return tuple(torch.zeros(shape, dtype=dtype) for shape in shapes)
    return tuple(torch.as_tensor(np.asarray(reference.x[name], dtype=np.float64).mean(axis=0), dtype=dtype).expand(shape)
                 for name, shape in zip(model.modality_names, shapes))


@torch.no_grad()
def explained_difference(model, split, reference, baseline, target) -> np.ndarray:
    """f(x) − f(b) of the explained logit per window, from plain forward passes: [window]."""
    index = torch.as_tensor(target)[:, None]
    x = model(*inputs_of(model, split)).gather(1, index)
    b = model(*baselines_of(baseline, model, split, reference)).gather(1, index)
    return (x - b)[:, 0].double().numpy()


# --- completeness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ig", "layer-ig"])
@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_completeness_within_delta(hier, split, reference, method, baseline):
    """Per window and site: Σ attr − δ = f(x) − f(b) to float tolerance (captum's δ is
    Σ attr − (f(x) − f(b))), and |δ| is small against |f(x) − f(b)|."""
    result = run(hier, split, reference, method=method, baseline=baseline)
    expected = explained_difference(hier, split, reference, baseline, result.targets)
    assert np.abs(expected).min() > 1e-3  # the check below has something to explain
    assert set(result.per_window) == ({"inputs"} if method == "ig" else {"hook_embed", "encoders"})
    for numbers in result.per_window.values():
        np.testing.assert_allclose(numbers.difference, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(numbers.sums.sum(axis=1) - numbers.delta, expected, rtol=1e-5, atol=1e-5)
        assert np.all(np.abs(numbers.delta) <= 0.01 * np.abs(expected) + 1e-5)
        rows = result.table[(result.table.site == numbers.site) & (result.table.part == "all")].set_index("quantity")
        # float32 attributions: rounding scales with their size, not with the difference they add up to
        assert rows.estimate["sum"] - rows.estimate["delta"] == pytest.approx(rows.estimate["logit_difference"],
                                                                                abs=scaled_atol(numbers.sums))
        assert rows.estimate["max_abs_delta"] == pytest.approx(np.abs(numbers.delta).max())
        assert rows.estimate["relative_delta"] == pytest.approx(np.abs(numbers.delta).sum() / np.abs(expected).sum(), rel=1e-5)


def test_delta_shrinks_with_steps(hier, split):
    """A negative control for the |δ| check: with two steps the quadrature error is far larger."""
    coarse = run(hier, split, steps=2).per_window["inputs"].delta
    fine = run(hier, split).per_window["inputs"].delta
    assert np.abs(coarse).mean() > 10 * np.abs(fine).mean()


def test_matches_float64_reference(hier, split):
    """Input IG against an independent loop: float64 gradients at the Gauss-Legendre nodes on [0, 1],
    attr = (x − b) Σ_k w_k ∇f(b + α_k (x − b)), summed per modality."""
    result = run(hier, split)
    model = copy.deepcopy(hier).double()
    x = inputs_of(model, split, torch.float64)
    nodes, weights = np.polynomial.legendre.leggauss(STEPS)
    totals = [torch.zeros_like(t) for t in x]
    target = torch.as_tensor(result.targets)[:, None]
    for node, weight in zip((nodes + 1) / 2, weights / 2):
        point = tuple((node * t).requires_grad_() for t in x)  # zero baseline
        logit = model(*point).gather(1, target).sum()
        for total, grad in zip(totals, torch.autograd.grad(logit, point)):
            total += weight * grad
    expected = np.stack([(total * t).flatten(1).sum(dim=1).numpy() for total, t in zip(totals, x)], axis=1)
    np.testing.assert_allclose(result.per_window["inputs"].sums, expected, rtol=1e-4, atol=1e-5)


class Linear(nn.Module):
    """A tiny model with a known answer: logits = Σ_modality Σ_time,channel x ⊙ w[class], IG exact."""

    def __init__(self, shapes: dict[str, tuple[int, int]], n_classes: int, ignore: str | None = None):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.modality_names = tuple(shapes)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(n_classes, *shape, generator=generator) * (0.0 if name == ignore else 1.0))
            for name, shape in shapes.items())

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        return sum(torch.einsum("btc,ktc->bk", x, w) for x, w in zip(windows, self.weights))


def test_linear_model_analytic(db2, split):
    """For a linear model IG is w ⊙ (x − b) for any number of steps; an ignored modality gets share 0."""
    shapes = {name: split.x[name].shape[1:] for name in split.x}
    model = Linear(shapes, len(db2.class_labels), ignore="acc")
    result = run(model, split, steps=3)
    numbers = result.per_window["inputs"]
    y = torch.as_tensor(split.y)
    expected = np.stack([torch.einsum("btc,btc->b", torch.as_tensor(split.x[name]), w[y]).detach().numpy()
                         for name, w in zip(model.modality_names, model.weights)], axis=1)
    # sums of thousands of float32 products, up to ~100: 1e-4 of their size (1e-5 left a margin of 7)
    assert_close(numbers.sums, expected, rel=1e-4)
    np.testing.assert_array_equal(numbers.shares[:, 1], 0.0)
    np.testing.assert_allclose(numbers.shares[:, 0], 1.0)


# --- shares ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ig", "layer-ig"])
def test_share_rows_are_the_means_of_the_window_shares(hier, split, method):
    result = run(hier, split, method=method)
    for numbers in result.per_window.values():
        shares = numbers.shares
        rows = result.table[(result.table.site == numbers.site) & (result.table.quantity == "share")]
        assert list(rows.part) == list(numbers.parts)
        np.testing.assert_allclose(rows.estimate, shares.mean(axis=0))
        assert np.all((rows.ci_low <= rows.estimate + 1e-12) & (rows.estimate <= rows.ci_high + 1e-12))
    if method == "layer-ig":
        embed = result.per_window["hook_embed"]
        assert embed.parts == ("cls", "emg", "acc") and result.per_window["encoders"].parts == ("emg", "acc")
        np.testing.assert_array_equal(embed.sums[:, 0], 0.0)  # CLS: the same embedding for x and b


def test_ignored_modality_has_share_zero(hier, split):
    """With the ACC patch projection zeroed the model cannot see ACC: share 0 at every site."""
    model = copy.deepcopy(hier)
    with torch.no_grad():
        model.embed.project["acc"].weight.zero_()
    for method in ("ig", "layer-ig"):
        for numbers in run(model, split, method=method, steps=8).per_window.values():
            acc = numbers.parts.index("acc")
            np.testing.assert_array_equal(numbers.shares[:, acc], 0.0)
            assert numbers.shares[:, numbers.parts.index("emg")].min() > 0.99
    # the control: the unmodified model does use ACC
    assert run(hier, split, steps=8).per_window["inputs"].shares[:, 1].min() > 0.01


# --- batching and memory --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ig", "layer-ig"])
def test_batch_sizes_do_not_matter(hier, split, method):
    first = run(hier, split, method=method, steps=8, batch_size=2, internal_batch_size=3)  # one step per pass
    second = run(hier, split, method=method, steps=8, batch_size=5, internal_batch_size=200)  # all steps at once
    for site, numbers in first.per_window.items():
        other = second.per_window[site]
        # other batch sizes sum in another order: float32 rounding, scaled to the attributions' size
        for name in ("sums", "magnitudes", "difference"):
            assert_close(getattr(numbers, name), getattr(other, name))
        np.testing.assert_allclose(numbers.delta, other.delta, rtol=0, atol=scaled_atol(numbers.magnitudes))
    assert_close(first.table.estimate.to_numpy(), second.table.estimate.to_numpy())


@pytest.mark.parametrize("method", ["ig", "layer-ig"])
def test_forward_batches_bounded_by_internal_batch(hier, db2, method):
    """The largest batch any forward pass sees is at most internal_batch_size (≥ batch_size) for 4
    windows as for 10, though all steps of 10 windows would make 10 × 4 evaluations."""
    test = db2.splits["test"]
    largest = []
    for n in (4, 10):
        seen = []
        handle = hier.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
        try:
            run(hier, test.take(np.arange(n)), method=method, steps=4, batch_size=3, internal_batch_size=7)
        finally:
            handle.remove()
        largest.append(max(seen))
    assert max(largest) <= 7


# --- options --------------------------------------------------------------------------------------


def test_target_option(hier, split):
    true, predicted = run(hier, split, target="true"), run(hier, split, target="predicted")
    np.testing.assert_array_equal(true.targets, split.y)
    np.testing.assert_array_equal(predicted.targets, target_classes(hier, split, "predicted", batch_size=64))
    assert np.any(predicted.targets != split.y)  # the random model errs, so the option changes the question
    differs = predicted.targets != true.targets
    assert not np.allclose(true.per_window["inputs"].difference[differs], predicted.per_window["inputs"].difference[differs])


def test_baseline_option(hier, split, reference):
    zero, mean = run(hier, split, baseline="zero"), run(hier, split, reference, baseline="mean")
    assert not np.allclose(zero.per_window["inputs"].difference, mean.per_window["inputs"].difference, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError) as error:
        run(hier, split, baseline="mean")  # no reference windows to average
    assert error.value.option == "baseline"


@pytest.mark.parametrize(("field", "value"), [
    ("method", "lig"), ("target", "label"), ("baseline", "noise"), ("steps", 0), ("batch_size", 0),
    ("internal_batch_size", 0), ("internal_batch_size", 3), ("bootstrap", -1), ("seed", -1), ("level", 1.0),
])
def test_bad_config_names_field(field, value):
    with pytest.raises(ConfigError) as error:
        IGConfig(**{"batch_size": 4, field: value})
    assert error.value.option == field


def test_config_round_trip():
    config = IGConfig(method="layer-ig", target="predicted", baseline="mean", steps=7)
    assert IGConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError):
        IGConfig.from_dict({"stepz": 3})


# --- other models, the contract -----------------------------------------------------------------


def test_mlp_ig_works_layer_ig_refused(db2, split):
    mlp = small(db2, "mlp", hidden=(16,)).eval()
    numbers = run(mlp, split).per_window["inputs"]
    # the attributions explain the logit difference up to a small quadrature error (|δ| bounded)
    assert np.all(np.abs(numbers.delta) <= 0.01 * np.abs(numbers.difference) + 1e-5)
    with pytest.raises(ConfigError) as error:  # its hook_embed is one fused feature vector, not tokens
        run(mlp, split, method="layer-ig")
    assert error.value.option == "method"
    shapes = {name: split.x[name].shape[1:] for name in split.x}
    with pytest.raises(ConfigError) as error:  # no hook_embed at all
        run(Linear(shapes, len(db2.class_labels)), split, method="layer-ig")
    assert error.value.option == "method"


def test_mmt_layer_ig_has_no_cls_and_no_encoders(mmt, split):
    result = run(mmt, split, method="layer-ig")
    assert list(result.per_window) == ["hook_embed"] and result.per_window["hook_embed"].parts == ("emg", "acc")
    numbers = result.per_window["hook_embed"]
    np.testing.assert_allclose(numbers.sums.sum(axis=1) - numbers.delta, numbers.difference, rtol=1e-5, atol=1e-5)


def test_contract(hier, split):
    """Table in the shared format; progress per outer batch; eval mode inside and the caller's mode
    (training) restored; gradients although the caller is in no_grad; JSON-ready."""
    model = copy.deepcopy(hier).train()
    calls, modes = [], []
    handle = model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    with torch.no_grad():
        result = attribute(model, split, IGConfig(steps=4, batch_size=4, internal_batch_size=8, bootstrap=10),
                           progress=lambda done, total: calls.append((done, total)))
    handle.remove()
    assert isinstance(result, IGResult) and result.kind == "attribution"
    assert tuple(result.table.columns) == COLUMNS
    assert set(result.table.method) == {"ig"} and set(result.table.site) == {"inputs"}
    assert set(result.table.quantity) == {"share", "sum", "logit_difference", "delta", "abs_delta", "max_abs_delta",
                                          "relative_delta"}
    assert (result.table.windows == 6).all() and (result.table.segments == 6).all()
    assert calls == [(1, 2), (2, 2)]
    assert model.training and not any(modes)
    document = json.loads(json.dumps(result.to_dict()))
    assert document["kind"] == "attribution" and document["config"]["steps"] == 4 and len(document["rows"]) == len(result.table)


def test_no_windows_refused(hier, split):
    with pytest.raises(ConfigError) as error:
        run(hier, split.take(np.arange(0)))
    assert error.value.option == "windows"
