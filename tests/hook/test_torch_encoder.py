"""isoprobe.hook on PyTorch's own nn.TransformerEncoder: with no intervention the hooked model is the
original; masking a pathway in layer l equals running the original layers with an attn_mask of −inf on
those edges at layer l; the engine's grid runs on it; and what cannot be hooked is refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.errors import ConfigError
from isoprobe.hook import TokenLayout, hook
from isoprobe.models.pathways import Pathway
from tests.hook.checks import assert_masked_as_written
from tests.tolerance import assert_close

LAYOUT = TokenLayout.cls_first({"emg": 5, "acc": 2})  # 8 positions
D_MODEL, N_LAYERS = 16, 3


class Classifier(nn.Module):
    """A plain encoder classifier a user might write: tokens in, the CLS token's logits out."""

    def __init__(self, batch_first: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        layer = nn.TransformerEncoderLayer(D_MODEL, 2, 32, dropout=0.1, batch_first=batch_first)
        self.encoder = nn.TransformerEncoder(layer, N_LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, 5)
        self.batch_first = batch_first

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        x = tokens if self.batch_first else tokens.transpose(0, 1)
        h = self.encoder(x, src_key_padding_mask=padding)
        return self.head(h[:, 0] if self.batch_first else h[0])

    def layers_with(self, tokens: torch.Tensor, masks: dict[int, torch.Tensor]) -> torch.Tensor:
        """The same forward, layer by layer, with an extra attn_mask at the layers in `masks`."""
        x = tokens if self.batch_first else tokens.transpose(0, 1)
        for index, layer in enumerate(self.encoder.layers):
            x = layer(x, src_mask=masks.get(index))
        return self.head(x[:, 0] if self.batch_first else x[0])


def tokens(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, len(LAYOUT), D_MODEL, generator=torch.Generator().manual_seed(seed))


def explicitly(hooked):
    """Run with a do-nothing hook on every layer's scores: the explicit path, no intervention."""
    return [(f"blocks.{layer}.attn.hook_attn_scores", lambda scores, hook: scores) for layer in range(N_LAYERS)]


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_with_no_intervention_the_hooked_model_is_the_original(batch_first, padded):
    model = Classifier(batch_first).eval()
    x = tokens()
    padding = torch.zeros(len(x), len(LAYOUT), dtype=torch.bool)
    if padded:
        padding[:, -1] = True  # the last acc token of every window is padding
    with torch.no_grad():
        original = model(x, padding if padded else None)
        hooked = hook(model, LAYOUT, example=(x,))
        assert torch.equal(hooked(x, padding if padded else None), original)  # no hook attached: the module's own path
        explicit = hooked.run_with_hooks(x, padding if padded else None, fwd_hooks=explicitly(hooked))
    assert (explicit - original).abs().max() <= 1e-5
    assert not any(p._forward_hooks for p in hooked.hook_dict.values())  # nothing left attached


@pytest.mark.parametrize("layer", range(N_LAYERS))
@pytest.mark.parametrize("pathway", ["cross", "readout", "emg->acc", "uni"])
def test_masking_equals_an_attn_mask_on_those_edges(layer, pathway):
    model = Classifier().eval()
    x = tokens()
    edges = Pathway(pathway).edges(LAYOUT.token_modalities, LAYOUT.modality_names)
    attn_mask = torch.zeros(len(LAYOUT), len(LAYOUT)).masked_fill(edges, float("-inf"))
    with torch.no_grad():
        reference = model.layers_with(x, {layer: attn_mask})  # written here, with PyTorch's own mask
        engine = InterventionEngine(hook(model, LAYOUT))
        run = engine.run_grid([x], [Condition((layer,), pathway)])
    assert_masked_as_written(engine, run, reference, layer, pathway, N_LAYERS)


def test_a_condition_on_no_head_or_null_by_construction_is_exact():
    model = Classifier().eval()
    x = tokens(8)
    hooked = hook(model, LAYOUT)
    engine = InterventionEngine(hooked)
    with torch.no_grad():
        run = engine.run_grid([x], [Condition((0, 1), "cross", intervention="mask"),
                                    Condition((2,), "cross", intervention="mask"),  # last layer: CLS reads no cross edge
                                    Condition((0,), "cross", heads=())])
    assert torch.equal(run.logits[2], run.clean)  # touches no head: the clean logits themselves
    assert engine.null_by_construction(Condition((2,), "cross"))
    assert torch.equal(run.logits[1], run.clean)


def test_refusals_name_what_is_wrong():
    model = Classifier().eval()
    with pytest.raises(ConfigError) as wrong_length:
        hook(model, TokenLayout.cls_first({"emg": 3, "acc": 2}), example=(tokens(),))
    assert wrong_length.value.option == "layout" and "8 tokens" in str(wrong_length.value)

    class LinearAttention(nn.Module):
        def forward(self, x):
            return x

    class WithLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.attend = LinearAttention()

    with pytest.raises(ConfigError) as linear:
        hook(WithLinear(), LAYOUT)
    assert "attend (LinearAttention)" in str(linear.value) and "linear attention" in str(linear.value)

    class MyAttention(nn.Module):
        def forward(self, x):
            return x

    class WithUnknown(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(MyAttention())

    with pytest.raises(ConfigError) as unknown:
        hook(WithUnknown(), LAYOUT)
    assert "block.0" in str(unknown.value) and "no adapter knows" in str(unknown.value)
    with pytest.raises(ConfigError) as none:
        hook(nn.Linear(3, 3), LAYOUT)
    assert none.value.option == "model"


def test_layouts():
    assert TokenLayout.cls_last({"a": 2, "b": 1}).groups == (1, 1, 2, 0)
    assert TokenLayout.cls_last({"a": 2, "b": 1}).read == (3,)
    assert TokenLayout.blocks({"a": 1, "b": 2}).read == (0, 1, 2)  # no CLS: every position is read
    assert TokenLayout.interleaved(["a", "b"], 2).groups == (0, 1, 2, 1, 2)
    with pytest.raises(ConfigError):
        TokenLayout((0, 3), ("a", "b"))
    with pytest.raises(ConfigError):
        TokenLayout((0, 1), ("cls",))


def test_a_transformer_lens_module_is_taken_as_it_is():
    """A HookedRootModule that already names its hook points as TransformerLens does: no adapter, its own
    hook points, the layout's groups; masking cross at layer 0 equals the mask written by hand."""
    from types import SimpleNamespace

    from transformer_lens import HookedRootModule
    from transformer_lens.hook_points import HookPoint

    from isoprobe.models.components.attention import safe_softmax

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
            self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()

        def forward(self, x, extra=None):
            q, k, v = (t.view(*t.shape[:2], 2, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
            scores = q @ k.transpose(-1, -2) / (D_MODEL // 2) ** 0.5
            scores = scores if extra is None else scores + extra
            pattern = self.hook_pattern(safe_softmax(self.hook_attn_scores(scores)))
            return x + (pattern @ v).transpose(1, 2).reshape(x.shape)

    class Tiny(HookedRootModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.cfg = SimpleNamespace(n_heads=2)
            self.blocks = nn.ModuleList([nn.Module(), nn.Module()])
            for block in self.blocks:
                block.attn = Attention()
            self.head = nn.Linear(D_MODEL, 5)
            self.setup()

        def forward(self, x, extra=None):
            for index, block in enumerate(self.blocks):
                x = block.attn(x, extra if index == 0 else None)
            return self.head(x[:, 0])

    model = Tiny().eval()
    x = tokens()
    hooked = hook(model, LAYOUT)
    assert "blocks.0.attn.hook_attn_scores" in hooked.hook_dict and hooked.cfg.n_heads == 2
    assert hooked.hook_dict["blocks.0.attn.hook_attn_scores"].name == "blocks.0.attn.hook_attn_scores"
    edges = Pathway("cross").edges(LAYOUT.token_modalities, LAYOUT.modality_names)
    with torch.no_grad():
        assert torch.equal(hooked(x), model(x))
        reference = model(x, torch.zeros(edges.shape).masked_fill(edges, float("-inf")))
        run = InterventionEngine(hooked).run_grid([x], [Condition((0,), "cross")])
    assert_close(run.logits[0], reference, rel=1e-6)
    assert (run.logits[0] - run.clean).abs().max() > 1e-4
