"""Every architecture builds and trains under every modality configuration and token kind."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isoprobe.data.tokens import TokenConfig
from isoprobe.models.mlp import N_CLASSIC
from tests.models.helpers import batch, cached_run, small_model

ARCHITECTURES = {
    "mlp-patches": ("mlp", {"features": "patches"}),
    "mlp-classic": ("mlp", {"features": "classic"}),
    "mmt": ("mmt", {}),
    "hierarchical": ("hierarchical", {}),
}

DATA = {
    # id: (dataset, modalities, token config)
    "emg,acc": ("ninapro-db2", "emg,acc", TokenConfig()),
    "emg": ("ninapro-db2", "emg", TokenConfig()),
    "acc": ("ninapro-db2", "acc", TokenConfig()),
    "emg-emg": ("ninapro-db2", "emg[0:6],emg[6:12]", TokenConfig()),
    "acc-acc": ("ninapro-db2", "acc[0:18],acc[18:36]", TokenConfig()),
    "emg,acc[0:12]": ("ninapro-db2", "emg,acc[0:12]", TokenConfig()),
    "hd-subsampled,force": ("hdsemg65", "hdsemg[::4],force", TokenConfig()),
    "hd-grid": ("hdsemg65", "hdsemg", TokenConfig(patch="grid")),
    "emg,acc-channel": ("ninapro-db2", "emg,acc", TokenConfig(patch="channel")),
    "hd-channel": ("hdsemg65", "hdsemg[::4],force", TokenConfig(patch="channel")),
}


def _loss(model, xs, y) -> torch.Tensor:
    """Cross-entropy summed over the model's heads (both heads of the hierarchical model train)."""
    return sum(F.cross_entropy(logits, y) for logits in model.forward_heads(*xs).values())


@pytest.mark.parametrize("data_id", list(DATA))
@pytest.mark.parametrize("arch_id", list(ARCHITECTURES))
def test_builds_and_trains(prepared, arch_id, data_id):
    arch, options = ARCHITECTURES[arch_id]
    dataset, modalities, token = DATA[data_id]
    data = prepared(modalities, dataset)
    model = small_model(data, arch, token=token, dropout=0.1, **options)
    xs, y = batch(data, 16)
    assert len(set(y.tolist())) >= 3, "the batch should hold several classes"

    # The model's input contract matches the prepared data.
    for x, group in zip(xs, model.config.groups):
        assert x.shape[1:] == (group.window, len(group.channels))
    assert model.modality_names == tuple(g.name for g in data.groups)

    model.eval()
    with torch.no_grad():
        logits = model(*xs)
        before = _loss(model, xs, y).item()
    assert logits.shape == (16, data.n_classes)
    assert torch.isfinite(logits).all()

    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()  # dropout active (fused attention path included)
    for _ in range(6):
        loss = _loss(model, xs, y)
        assert torch.isfinite(loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    model.eval()
    with torch.no_grad():
        after = _loss(model, xs, y).item()
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, initial[name])]
    assert not unchanged, f"parameters that never received a gradient: {unchanged}"
    assert after < before, f"loss on the training batch did not fall: {before:.4f} -> {after:.4f}"


def test_grid_patches_tile_each_electrode_grid(prepared):
    data = prepared("hdsemg", "hdsemg65")
    model = small_model(data, "hierarchical", token=TokenConfig(patch="grid", tile=(4, 4)))
    (group,) = model.config.groups
    assert len(group.grids) == 2  # flexor and extensor grids, 8×8 each
    assert group.n_tokens == 2 * (8 // 4) * (8 // 4)
    assert group.d_token == group.window * 16


def test_classic_mlp_input_width(prepared):
    data = prepared("emg,acc[0:12]")
    model = small_model(data, "mlp", features="classic")
    assert model.layers[0].in_features == (12 + 12) * N_CLASSIC
    patches = small_model(data, "mlp", features="patches")
    assert patches.layers[0].in_features == sum(g.n_tokens * g.d_token for g in patches.config.groups)


def test_mlp_hidden_layers_expose_resid_post(prepared):
    model, cache = cached_run(prepared("emg,acc"), "mlp", 3, hidden=(24, 8))
    assert cache["blocks.0.hook_resid_post"].shape == (3, 24)
    assert cache["blocks.1.hook_resid_post"].shape == (3, 8)
    assert cache["hook_embed"].shape == (3, model.layers[0].in_features)


def test_dropout_is_active_in_training_and_off_in_eval(prepared):
    data = prepared("emg,acc")
    model = small_model(data, "hierarchical", dropout=0.5)
    xs, _ = batch(data, 4)
    model.train()
    torch.manual_seed(0)
    first = model(*xs)
    second = model(*xs)
    assert not torch.allclose(first, second)
    model.eval()
    torch.testing.assert_close(model(*xs), model(*xs), atol=0, rtol=0)
