"""The analyses that take a WindowSet run on a foreign model through isoprobe.hook: a classifier written
here with PyTorch's own nn.TransformerEncoder over sEMG and accelerometer tokens (not an isoprobe model)
gets the same tables as isoprobe's models, and its mask rows equal the model run with attn_mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from isoprobe.engine.ablate import COLUMNS, AblationConfig, run_ablation
from isoprobe.hook import TokenLayout, hook
from isoprobe.models.pathways import Pathway

PATCHES = {"emg": 4, "acc": 2}  # tokens per modality: each window cut into this many time patches


class Tokens(nn.Module):
    """What a user's model might do: cut each modality's window into time patches, embed them, put a
    learned CLS token first, and classify from CLS with a plain nn.TransformerEncoder."""

    def __init__(self, channels: dict[str, int], time: int, n_classes: int, d_model: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch = {name: time // n for name, n in PATCHES.items()}
        self.embed = nn.ModuleDict({name: nn.Linear(self.patch[name] * channels[name], d_model) for name in PATCHES})
        self.cls = nn.Parameter(torch.randn(1, 1, d_model))
        self.position = nn.Parameter(0.1 * torch.randn(1, 1 + sum(PATCHES.values()), d_model))
        layer = nn.TransformerEncoderLayer(d_model, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_classes)

    def tokens(self, emg: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        parts = [self.cls.expand(len(emg), -1, -1)]
        for name, x in (("emg", emg), ("acc", acc)):
            n, size = PATCHES[name], self.patch[name]
            parts.append(self.embed[name](x[:, : n * size].reshape(len(x), n, -1)))
        return torch.cat(parts, dim=1) + self.position

    def forward(self, emg: torch.Tensor, acc: torch.Tensor, masks: dict | None = None) -> torch.Tensor:
        x = self.tokens(emg, acc)
        if masks is None:
            return self.head(self.encoder(x)[:, 0])
        for index, layer in enumerate(self.encoder.layers):
            x = layer(x, src_mask=masks.get(index))
        return self.head(x[:, 0])


@pytest.fixture(scope="module")
def model(data):
    test = data.splits["test"]
    channels = {name: test.x[name].shape[2] for name in PATCHES}
    return Tokens(channels, test.x["emg"].shape[1], data.n_classes).eval()


def test_ablate_runs_on_a_hooked_foreign_model(data, model):
    layout = TokenLayout.cls_first(PATCHES)
    hooked = hook(model, layout)
    split = data.splits["test"]
    table = run_ablation(hooked, split, AblationConfig(layers="all", pathway="cross,readout", bootstrap=50,
                                                        permutations=99)).table
    assert tuple(table.columns) == COLUMNS and list(table.layers) == ["L1", "L1", "L2", "L2", "L1-L2", "L1-L2"]
    # the L1 cross row against the model run with PyTorch's own attn_mask at layer 1, counted here
    edges = Pathway("cross").edges(layout.token_modalities, layout.modality_names)
    mask = torch.zeros(len(layout), len(layout)).masked_fill(edges, float("-inf"))
    with torch.no_grad():
        emg, acc = (torch.as_tensor(np.asarray(split.x[name])) for name in ("emg", "acc"))
        clean = model(emg, acc).argmax(1).numpy() == split.y
        masked = model(emg, acc, masks={0: mask}).argmax(1).numpy() == split.y
    row = table[(table.layers == "L1") & (table.pathway == "cross")].iloc[0]
    assert row.base_accuracy == pytest.approx(clean.mean()) and row.accuracy == pytest.approx(masked.mean())
    assert bool(table[table.layers == "L2"].set_index("pathway").null_by_construction["cross"])  # CLS reads no cross edge


def test_shift_runs_on_a_hooked_foreign_model(data, model):
    from isoprobe.diagnostics.shift import COLUMNS as SHIFT_COLUMNS
    from isoprobe.diagnostics.shift import ShiftConfig, shift

    hooked = hook(model, TokenLayout.cls_first(PATCHES))
    split = data.splits["test"]
    table = shift(hooked, split, ShiftConfig(layers="1", pathway="cross", interventions="mask", permutations=20,
                                             max_windows=40, bootstrap=50)).table
    assert tuple(table.columns) == SHIFT_COLUMNS
    assert list(table.site) == ["L1 residual", "L2 residual"]  # from the intervened layer on
    assert (table.cosine < 1.0).all() and (table.mmd2 > 0).all()


def test_compare_runs_on_a_hooked_foreign_model(data, model):
    from isoprobe.attribution.compare import COLUMNS as COMPARE_COLUMNS
    from isoprobe.attribution.compare import CompareConfig, compare

    hooked = hook(model, TokenLayout.cls_first(PATCHES))
    result = compare(hooked, data.splits["test"], CompareConfig(steps=2, bootstrap=30, shift_permutations=10,
                                                                shift_windows=40), reference=data.splits["train"])
    assert tuple(result.table.columns) == COMPARE_COLUMNS
    assert {"mask (IsoNet)", "mean ablation", "attribution patching", "interaction index", "EMAP gap",
            "data synergy (PID)"} <= set(result.table.method)
    per_layer = result.per_layer
    assert set(per_layer.layer) == {"L1", "L2"} and "attention attribution" in set(per_layer.method)
    # L2 is the last layer: CLS reads no cross edge there, on this model as on isoprobe's
    assert per_layer[per_layer.layer == "L2"].null_by_construction.all()
