"""Every analysis of the Python API on a Hugging Face encoder isoprobe did not build: a BERT classifier
(random weights from a config) over sEMG and accelerometer tokens, hooked with `inputs=` turning isoprobe's
windows into `inputs_embeds`. The tables are those the same analyses give on an isoprobe model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")  # installed with transformer-lens: present on CI
from transformers import BertConfig, BertModel  # noqa: E402

import isoprobe  # noqa: E402
from isoprobe.attribution.common import COLUMNS as ATTRIBUTION_COLUMNS  # noqa: E402
from isoprobe.attribution.compare import COLUMNS as COMPARE_COLUMNS  # noqa: E402
from isoprobe.diagnostics.shift import COLUMNS as SHIFT_COLUMNS  # noqa: E402
from isoprobe.engine.ablate import COLUMNS as ABLATION_COLUMNS  # noqa: E402
from tests.hook.test_analyses import PATCHES  # noqa: E402

D_MODEL = 16


class BertGestures(nn.Module):
    """Time patches of each modality embedded by a linear map, a CLS embedding first, a BERT encoder,
    a linear head on CLS: `forward(inputs_embeds=…)` as Hugging Face encoders take embeddings."""

    def __init__(self, channels: dict[str, int], time: int, n_classes: int):
        super().__init__()
        torch.manual_seed(0)
        self.size = {name: time // n for name, n in PATCHES.items()}
        self.embed = nn.ModuleDict({name: nn.Linear(self.size[name] * channels[name], D_MODEL) for name in PATCHES})
        self.cls = nn.Parameter(torch.randn(1, 1, D_MODEL))
        self.bert = BertModel(BertConfig(hidden_size=D_MODEL, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, vocab_size=4, max_position_embeddings=16,
                                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                         attn_implementation="eager", initializer_range=0.4))
        self.head = nn.Linear(D_MODEL, n_classes)

    def tokens(self, emg: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        parts = [self.cls.expand(len(emg), -1, -1)]
        for name, x in (("emg", emg), ("acc", acc)):
            n, size = PATCHES[name], self.size[name]
            parts.append(self.embed[name](x[:, : n * size].reshape(len(x), n, -1)))
        return torch.cat(parts, dim=1)

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        return self.head(self.bert(inputs_embeds=inputs_embeds).last_hidden_state[:, 0])


@pytest.fixture(scope="module")
def hooked(data):
    test = data.splits["test"]
    model = BertGestures({name: test.x[name].shape[2] for name in PATCHES}, test.x["emg"].shape[1],
                         data.n_classes).eval()
    return isoprobe.hook(model, isoprobe.TokenLayout.cls_first(PATCHES),
                         inputs=lambda emg, acc: {"inputs_embeds": model.tokens(emg, acc)})


def test_ablate_on_a_hooked_bert_classifier(data, hooked):
    test = data.splits["test"]
    table = isoprobe.ablate(hooked, test, test.y, test.segment, layers="all", pathway="cross,uni", bootstrap=30,
                            permutations=19).table
    assert tuple(table.columns) == ABLATION_COLUMNS
    assert list(table.layers) == ["L1", "L1", "L2", "L2", "L1-L2", "L1-L2"]
    moved = table[~table.null_by_construction]
    assert (moved.kl > 0).any()  # masking changes this model's output distribution
    assert table[table.layers == "L2"].set_index("pathway").null_by_construction["cross"]


def test_attribute_shift_and_compare_on_a_hooked_bert_classifier(data, hooked):
    test, train = data.splits["test"], data.splits["train"]
    attention = isoprobe.attribute(hooked, test, test.y, test.segment, method="attention", steps=2, bootstrap=20).table
    assert set(ATTRIBUTION_COLUMNS) <= set(attention.columns) and {"L1", "L2"} <= set(attention.site)
    ig = isoprobe.attribute(hooked, test, test.y, test.segment, method="ig", steps=4, bootstrap=20).table
    shares = ig[ig.quantity == "share"]
    assert set(shares.part) == {"emg", "acc"} and shares.estimate.sum() == pytest.approx(1.0)
    shift = isoprobe.shift(hooked, test, test.y, test.segment, layers="1", pathway="cross", interventions="mask",
                           permutations=10, max_windows=40, bootstrap=20).table
    assert tuple(shift.columns) == SHIFT_COLUMNS and list(shift.site) == ["L1 residual", "L2 residual"]
    assert np.isfinite(shift.mmd2).all() and (shift.cosine < 1).all()
    compared = isoprobe.compare(hooked, test, test.y, test.segment, reference=train, steps=2, bootstrap=20,
                                shift_permutations=10, shift_windows=40).table
    assert tuple(compared.columns) == COMPARE_COLUMNS
    assert {"mask (IsoNet)", "mean ablation", "attribution patching", "interaction index"} <= set(compared.method)
