"""The Python API (`isoprobe.ablate`, `attribute`, …) on a model isoprobe did not build: it takes tensors
or a DataLoader with labels and segments, returns the CLI's result objects, and refuses what it cannot
use with a message naming the argument."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import isoprobe
from isoprobe.attribution.common import COLUMNS as ATTRIBUTION_COLUMNS
from isoprobe.engine.ablate import AblationConfig, run_ablation
from isoprobe.errors import ConfigError
from tests.hook.test_analyses import PATCHES, Tokens


@pytest.fixture(scope="module")
def hooked(data):
    test = data.splits["test"]
    model = Tokens({name: test.x[name].shape[2] for name in PATCHES}, test.x["emg"].shape[1], data.n_classes).eval()
    return isoprobe.hook(model, isoprobe.TokenLayout.cls_first(PATCHES))


def tensors(split) -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(split.x[name]) for name in ("emg", "acc")}


def test_import_isoprobe_stays_light_and_hook_is_callable():
    code = ("import sys, isoprobe; assert 'torch' not in sys.modules; h = isoprobe.hook; "
            "assert callable(h) and h.TokenLayout is isoprobe.TokenLayout; from isoprobe.hook import hook; "
            "print(isoprobe.ablate.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ablate"


def test_ablate_from_tensors_equals_the_engine_on_the_window_set(data, hooked):
    test = data.splits["test"]
    options = dict(layers="all", pathway="uni,cross", bootstrap=40, permutations=39, seed=3)
    by_api = isoprobe.ablate(hooked, tensors(test), torch.as_tensor(test.y), test.segment, **options).table
    direct = run_ablation(hooked, test, AblationConfig(**options)).table
    pd.testing.assert_frame_equal(by_api, direct)


def test_a_dataloader_of_batches_gives_the_windows_of_the_whole_tensors(data):
    test = data.splits["test"]
    x = tensors(test)
    y, segments = torch.as_tensor(test.y), torch.as_tensor(test.segment)
    dataset = torch.utils.data.TensorDataset(x["emg"], x["acc"], y, segments)
    loader = torch.utils.data.DataLoader(dataset, batch_size=17, collate_fn=lambda rows: (
        {"emg": torch.stack([r[0] for r in rows]), "acc": torch.stack([r[1] for r in rows])},
        torch.stack([r[2] for r in rows]), torch.stack([r[3] for r in rows])))
    from_loader = isoprobe.windows(loader, modality_names=("emg", "acc"))
    whole = isoprobe.windows(x, y, segments)
    assert np.array_equal(from_loader.x["emg"], whole.x["emg"]) and np.array_equal(from_loader.x["acc"], whole.x["acc"])
    assert np.array_equal(from_loader.y, test.y) and np.array_equal(from_loader.segment, test.segment)


@pytest.mark.parametrize("method", ["ig", "attention"])
def test_attribute_on_a_hooked_model_gives_the_attribution_table(data, hooked, method):
    test = data.splits["test"]
    result = isoprobe.attribute(hooked, tensors(test), test.y, test.segment, method=method, steps=4, bootstrap=30)
    assert set(ATTRIBUTION_COLUMNS) <= set(result.table.columns)
    shares = result.table[result.table.quantity == "share"]
    assert len(shares) and np.isfinite(shares.estimate).all()
    if method == "ig":  # the two modalities' shares of the input attribution
        assert set(shares.part) == {"emg", "acc"} and shares.estimate.sum() == pytest.approx(1.0)


def test_a_method_that_cannot_apply_says_why(data, hooked):
    test = data.splits["test"]
    with pytest.raises(ConfigError, match="hook_embed"):
        isoprobe.attribute(hooked, tensors(test), test.y, test.segment, method="layer-ig")


def test_sanity_randomises_a_copy_of_a_hooked_model(data, hooked):
    """The checks deep-copy the model: the copy's attention must fire the copy's hook points."""
    test = data.splits["test"]
    before = [p.detach().clone() for p in hooked.parameters()]
    table = isoprobe.sanity(hooked, tensors(test), test.y, test.segment, methods="attention,mask", windows=24,
                            reference=data.splits["train"]).table
    trained = table[table.step == "trained"].set_index("method")
    assert set(trained.index) == {"attention", "mask"} and (trained.spearman == 1.0).all()
    assert all(torch.equal(a, b) for a, b in zip(before, hooked.parameters()))
    # the cascade re-draws the model's own layers one by one, after what lies outside them
    assert list(dict.fromkeys(table.step)) == ["trained", "outside the layers", "L2", "L1", "random target"]


def test_the_cascade_of_a_hooked_model_holds_every_parameter_once_by_layer(hooked):
    from isoprobe.attribution.sanity import cascade_stages

    stages = {stage.label: stage.parameters for stage in cascade_stages(hooked)}
    names = [name for parameters in stages.values() for name in parameters]
    assert sorted(names) == sorted(name for name, _ in hooked.named_parameters())
    for layer in (0, 1):
        assert stages[f"L{layer + 1}"] and all(name.startswith(f"model.encoder.layers.{layer}.")
                                               for name in stages[f"L{layer + 1}"])
    assert not any(".layers." in name for name in stages["outside the layers"])


@pytest.mark.parametrize("segments, field", [(None, "segments"), (np.zeros(3, dtype=np.int64), "segments")])
def test_segments_are_required_one_per_window(data, hooked, segments, field):
    test = data.splits["test"]
    with pytest.raises(ConfigError, match=field):
        isoprobe.ablate(hooked, tensors(test), test.y, segments)


def test_bad_inputs_are_refused_naming_them(data, hooked):
    test = data.splits["test"]
    x = tensors(test)
    with pytest.raises(ConfigError, match="labels"):
        isoprobe.ablate(hooked, x, None, test.segment)
    with pytest.raises(ConfigError, match=r"inputs\[emg\].*finite"):
        isoprobe.ablate(hooked, {"emg": x["emg"].clone().fill_(float("nan")), "acc": x["acc"]}, test.y, test.segment)
    with pytest.raises(ConfigError, match="emg, acc"):
        isoprobe.ablate(hooked, {"acc": x["acc"], "emg": x["emg"]}, test.y, test.segment)
    with pytest.raises(ConfigError, match="unknown option"):
        isoprobe.ablate(hooked, x, test.y, test.segment, pathways="cross")
    with pytest.raises(ConfigError, match="method"):
        isoprobe.attribute(hooked, x, test.y, test.segment, method="saliency")


def test_figure_of_an_ablation_draws_a_bar_per_measured_condition(data, hooked):
    test = data.splits["test"]
    result = isoprobe.ablate(hooked, tensors(test), test.y, test.segment, layers="1", pathway="uni,cross",
                             bootstrap=20, permutations=19)
    figure = isoprobe.figure(result, "mine")
    bars = [patch for ax in figure.axes for patch in ax.patches if patch.get_height() == patch.get_height()]
    measured = result.table[~result.table.null_by_construction & (result.table.layers == "L1")]
    assert len(bars) == len(measured) == 2 and "mine" in figure.axes[0].get_title()
    with pytest.raises(ConfigError, match="ablate's and compare's"):
        isoprobe.figure(isoprobe.attribute(hooked, tensors(test), test.y, test.segment, method="ig", steps=2,
                                           bootstrap=10))


def test_the_numbers_follow_the_windows_not_their_order(data, hooked):
    """Donors (resample), the shift's subsample and its permutations are drawn per window key: the same
    windows given in another order, or through a shuffling DataLoader, give the same tables."""
    test = data.splits["test"]
    x, y, segments = tensors(test), torch.as_tensor(test.y), torch.as_tensor(test.segment)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(4))
    permuted = ({name: value[order] for name, value in x.items()}, y[order], segments[order])
    options = dict(layers="1", pathway="cross", intervention="resample", draws=3, bootstrap=40, permutations=39)
    first = isoprobe.ablate(hooked, x, y, segments, **options).table
    pd.testing.assert_frame_equal(isoprobe.ablate(hooked, *permuted, **options).table, first, check_exact=False,
                                  rtol=1e-5)  # another order may round differently; donors change more
    shift = dict(layers="1", pathway="cross", interventions="resample", max_windows=30, permutations=20, bootstrap=20)
    dataset = torch.utils.data.TensorDataset(x["emg"], x["acc"], y, segments)
    shuffled = torch.utils.data.DataLoader(dataset, batch_size=17, shuffle=True, collate_fn=lambda rows: (
        {"emg": torch.stack([r[0] for r in rows]), "acc": torch.stack([r[1] for r in rows])},
        torch.stack([r[2] for r in rows]), torch.stack([r[3] for r in rows])))
    pd.testing.assert_frame_equal(isoprobe.shift(hooked, shuffled, **shift).table,
                                  isoprobe.shift(hooked, x, y, segments, **shift).table, check_exact=False, rtol=1e-5)
