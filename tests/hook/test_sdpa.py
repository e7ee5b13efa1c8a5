"""isoprobe.hook on modules that call torch.nn.functional.scaled_dot_product_attention (a timm-style ViT
written here): with no intervention the hooked model is the original (with and without a padding mask
passed to SDPA); masking a pathway in layer l equals running the original with an attn_mask of −inf on
those edges at layer l; SDPA's options (masks, causal, scale, grouped heads) are computed as SDPA does;
the interception is restored, per thread, and refused where it cannot reach the scores."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.functional import scaled_dot_product_attention
from torch.nn.functional import scaled_dot_product_attention as sdpa

from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.errors import ConfigError
from isoprobe.hook import TokenLayout, hook
from isoprobe.hook.adapters import (ADAPTERS, SDPA_CLASSES, Adapter, adapter_for, register_adapter,
                                    register_sdpa_attention)
from isoprobe.models.pathways import Pathway
from tests.hook.checks import assert_masked_as_written
from tests.tolerance import assert_close

LAYOUT = TokenLayout.cls_first({"emg": 5, "acc": 2})  # 8 positions
D_MODEL, N_HEADS, N_LAYERS = 16, 2, 3
SDPA_FUNCTION = F.scaled_dot_product_attention


class Attention(nn.Module):
    """timm's vision_transformer.Attention, trimmed: qkv Linear, heads, SDPA when fused_attn, else the
    softmax written out."""

    def __init__(self, fused_attn: bool = True):
        super().__init__()
        self.num_heads, self.head_dim = N_HEADS, D_MODEL // N_HEADS
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.attn_drop = nn.Dropout(0.1)
        self.proj = nn.Linear(D_MODEL, D_MODEL)

    def heads(self, x: torch.Tensor):
        batch, pos, _ = x.shape
        qkv = self.qkv(x).reshape(batch, pos, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)  # q, k, v [batch, head, pos, d_head]

    def out(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.transpose(1, 2).reshape(x.shape[0], x.shape[2], D_MODEL))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.heads(x)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                               dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if attn_mask is not None:
                boolean = attn_mask.dtype == torch.bool
                attn = attn.masked_fill(~attn_mask, float("-inf")) if boolean else attn + attn_mask
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        return self.out(x)


class LongNameAttention(Attention):
    """Calls it by its full path."""

    def forward(self, x, attn_mask=None):
        q, k, v = self.heads(x)
        return self.out(torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))


class ImportedAttention(Attention):
    """Calls it by the name imported into this file (`from torch.nn.functional import …`)."""

    def forward(self, x, attn_mask=None):
        q, k, v = self.heads(x)
        return self.out(scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))


class AliasedAttention(Attention):
    """Calls it by an alias imported into this file (`… import scaled_dot_product_attention as sdpa`)."""

    def forward(self, x, attn_mask=None):
        q, k, v = self.heads(x)
        return self.out(sdpa(q, k, v, attn_mask=attn_mask))


def attend(q, k, v, attn_mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


class HelperAttention(Attention):
    """Calls it from a helper function: the rule cannot see it; register_sdpa_attention names it."""

    def forward(self, x, attn_mask=None):
        return self.out(attend(*self.heads(x), attn_mask=attn_mask))


class Block(nn.Module):
    def __init__(self, attention: type[Attention]):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(D_MODEL), nn.LayerNorm(D_MODEL)
        self.attn = attention()
        self.mlp = nn.Sequential(nn.Linear(D_MODEL, 32), nn.GELU(), nn.Linear(32, D_MODEL))

    def forward(self, x, attn_mask=None):
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Tokens in (the CLS token is prepended), the CLS token's logits out. padding [batch, pos] True =
    padding, passed to SDPA as its boolean mask (True = may be attended); extra {layer: additive [q, k]}
    is added at those layers (the hand-written reference)."""

    def __init__(self, attention: type[Attention] = Attention, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.cls_token = nn.Parameter(torch.randn(1, 1, D_MODEL))
        self.blocks = nn.ModuleList([Block(attention) for _ in range(N_LAYERS)])
        self.norm = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, 5)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None,
                extra: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        x = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        keep = None if padding is None else ~padding[:, None, None, :]  # [batch, 1, 1, key]
        for index, block in enumerate(self.blocks):
            mask = keep
            if extra is not None and index in extra:
                mask = extra[index] if keep is None else extra[index].masked_fill(~keep, float("-inf"))
            x = block(x, mask)
        return self.head(self.norm(x)[:, 0])


def tokens(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, len(LAYOUT) - 1, D_MODEL, generator=torch.Generator().manual_seed(seed)) * 2


def explicitly():
    """A do-nothing hook on every layer's scores: the explicit path, no intervention."""
    return [(f"blocks.{layer}.attn.hook_attn_scores", lambda scores, hook: scores) for layer in range(N_LAYERS)]


def test_the_timm_style_module_gets_this_adapter_and_the_others_keep_theirs():
    assert adapter_for(Attention(), "attn").name.startswith("scaled_dot_product_attention")
    assert adapter_for(nn.MultiheadAttention(D_MODEL, 2), "mha").name == "torch.nn.MultiheadAttention"

    class Documented(nn.Module):
        """Mentions scaled_dot_product_attention in its docstring only."""

        def forward(self, x):
            # F.scaled_dot_product_attention is not called here
            return x

    assert not ADAPTERS[next(name for name in ADAPTERS if name.startswith("scaled"))].matches(Documented())
    mine = register_adapter(Adapter("mine", lambda m: isinstance(m, LongNameAttention), lambda m: None))
    try:  # registered after the SDPA rule, still tried before it: the specific adapter wins
        assert adapter_for(LongNameAttention(), "attn") is mine
    finally:
        del ADAPTERS["mine"]


@pytest.mark.parametrize("attention", [Attention, LongNameAttention, ImportedAttention, AliasedAttention])
@pytest.mark.parametrize("padded", [False, True])
def test_with_no_intervention_the_hooked_model_is_the_original(attention, padded):
    model = ViT(attention).eval()
    x = tokens()
    padding = torch.zeros(len(x), len(LAYOUT), dtype=torch.bool)
    padding[:, -1] = padded  # the last acc token of every window is padding
    with torch.no_grad():
        original = model(x, padding if padded else None)
        hooked = hook(model, LAYOUT, example=(x,))
        assert torch.equal(hooked(x, padding if padded else None), original)  # no hook attached: the module's own path
        seen = []
        explicit = hooked.run_with_hooks(x, padding if padded else None, fwd_hooks=[
            (f"blocks.{layer}.attn.hook_pattern", lambda p, hook: seen.append(hook.name)) for layer in range(N_LAYERS)])
    assert seen == [f"blocks.{layer}.attn.hook_pattern" for layer in range(N_LAYERS)]  # the explicit path ran
    assert (explicit - original).abs().max() <= 1e-5
    assert F.scaled_dot_product_attention is SDPA_FUNCTION and scaled_dot_product_attention is SDPA_FUNCTION
    assert not any(p._forward_hooks for p in hooked.hook_dict.values())  # nothing left attached


@pytest.mark.parametrize("layer", range(N_LAYERS))
@pytest.mark.parametrize("pathway", ["cross", "readout", "emg->acc", "uni"])
@pytest.mark.parametrize("padded", [False, True])
def test_masking_equals_an_attn_mask_on_those_edges(layer, pathway, padded):
    model = ViT().eval()
    x = tokens()
    padding = torch.zeros(len(x), len(LAYOUT), dtype=torch.bool)
    padding[:, 2] = padded  # an emg token
    edges = Pathway(pathway).edges(LAYOUT.token_modalities, LAYOUT.modality_names)
    attn_mask = torch.zeros(len(LAYOUT), len(LAYOUT)).masked_fill(edges, float("-inf"))
    with torch.no_grad():
        reference = model(x, padding, extra={layer: attn_mask})  # written here, with SDPA's own mask
        engine = InterventionEngine(hook(model, LAYOUT, inputs=lambda t: (t, padding)))
        run = engine.run_grid([x], [Condition((layer,), pathway)])
    assert_masked_as_written(engine, run, reference, layer, pathway, N_LAYERS)


class Bare(nn.Module):
    """SDPA alone: q, k, v and its options in, its output out."""

    num_heads = 4

    def forward(self, q, k, v, **options):
        return F.scaled_dot_product_attention(q, k, v, **options)


def qkv(kv_heads: int = 4, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 5, 8, generator=g), torch.randn(2, kv_heads, 7, 8, generator=g),
            torch.randn(2, kv_heads, 7, 8, generator=g))


def keep_mask():
    keep = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(4)) > 0.3
    keep[0, 0, 1] = False  # a query that may attend no key: a zero row, as SDPA gives
    return keep


OPTIONS = {
    "none": ({}, 4),
    "boolean mask": ({"attn_mask": keep_mask()}, 4),
    "float mask": ({"attn_mask": torch.randn(5, 7, generator=torch.Generator().manual_seed(5))}, 4),
    "causal": ({"is_causal": True}, 4),
    "scale": ({"scale": 0.3, "attn_mask": keep_mask()}, 4),
    "grouped heads": ({"enable_gqa": True, "is_causal": True}, 2),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_the_explicit_computation_is_sdpa(case):
    options, kv_heads = OPTIONS[case]
    module = Bare()
    q, k, v = qkv(kv_heads)
    expected = module(q, k, v, **options)
    adapter_for(module, "bare").install(module)
    shapes = {}

    def record(x, hook):
        shapes[hook.name] = tuple(x.shape)

    for name in ("hook_q", "hook_k", "hook_attn_scores", "hook_pattern", "hook_z"):
        getattr(module, name).name = name
        getattr(module, name).add_hook(record)
    try:
        explicit = module(q, k, v, **options)
    finally:
        for name in shapes:
            getattr(module, name).remove_hooks()
    assert shapes == {"hook_q": (2, 5, 4, 8), "hook_k": (2, 7, 4, 8), "hook_attn_scores": (2, 4, 5, 7),
                      "hook_pattern": (2, 4, 5, 7), "hook_z": (2, 5, 4, 8)}  # TransformerLens shapes
    assert explicit.shape == expected.shape and (explicit - expected).abs().max() <= 1e-5
    assert torch.equal(module(q, k, v, **options), expected)  # hooks removed: SDPA itself again
    copied = copy.deepcopy(module)  # the forward is bound to the module, so to the copy in a copy
    assert copied.forward.__self__ is copied and torch.equal(copied(q, k, v, **options), expected)


def test_the_interception_is_per_thread_restored_and_does_not_recurse():
    module = Bare()
    q, k, v = qkv()
    expected = SDPA_FUNCTION(q, k, v)
    adapter_for(module, "bare").install(module)
    inside, other = threading.Event(), {}

    def other_thread():  # calls SDPA while the hooked forward below waits inside its hook
        inside.wait()
        other["patched"] = F.scaled_dot_product_attention is not SDPA_FUNCTION
        other["out"] = F.scaled_dot_product_attention(q, k, v)
        other["done"] = True

    def hook_pattern(pattern, hook):
        inside.set()
        thread.join(10)
        assert torch.equal(F.scaled_dot_product_attention(q, k, v), expected)  # a hook's own call: the real one
        return pattern

    thread = threading.Thread(target=other_thread)
    thread.start()
    module.hook_pattern.add_hook(hook_pattern)
    try:
        assert_close(module(q, k, v), expected)
    finally:
        module.hook_pattern.remove_hooks()
    assert other["patched"] and other["done"] and torch.equal(other["out"], expected)  # the real function's answer
    assert F.scaled_dot_product_attention is SDPA_FUNCTION

    def fails(scores, hook):
        raise RuntimeError("a hook that fails")

    module.hook_attn_scores.add_hook(fails)
    with pytest.raises(RuntimeError, match="a hook that fails"):
        module(q, k, v)
    module.hook_attn_scores.remove_hooks()
    assert F.scaled_dot_product_attention is SDPA_FUNCTION  # put back after an exception too


def test_a_helper_call_is_named_with_register_sdpa_attention():
    x = tokens()
    with pytest.raises(ConfigError, match="no adapter knows"):  # the rule cannot see the helper's call
        hook(ViT(HelperAttention), LAYOUT)
    register_sdpa_attention(HelperAttention)
    try:
        model = ViT(HelperAttention).eval()
        with torch.no_grad():
            original = model(x)
            hooked = hook(model, LAYOUT)
            explicit = hooked.run_with_hooks(x, fwd_hooks=explicitly())
    finally:
        SDPA_CLASSES.discard(HelperAttention)
    assert (explicit - original).abs().max() <= 1e-5
    with pytest.raises(ConfigError, match="nn.Module subclass"):
        register_sdpa_attention(attend)


def test_an_explicit_softmax_is_refused_by_name():
    x = tokens()
    with pytest.raises(ConfigError) as switched_off:  # timm's fused_attn=False: the softmax written out
        hook(ViT(lambda: Attention(fused_attn=False)), LAYOUT)
    assert "fused_attn" in str(switched_off.value)

    model = ViT().eval()
    hooked = hook(model, LAYOUT)
    model.blocks[1].attn.fused_attn = False  # switched off after hooking: found at the first hooked forward
    with torch.no_grad(), pytest.raises(ConfigError) as no_call:
        hooked.run_with_hooks(x, fwd_hooks=explicitly())
    assert "called no scaled_dot_product_attention" in str(no_call.value)
    assert F.scaled_dot_product_attention is SDPA_FUNCTION
    with torch.no_grad():
        assert torch.equal(hooked(x), model(x))  # with no hook it still runs as it is

    class ExplicitAttention(nn.Module):  # no SDPA anywhere: no adapter, refused by its name
        def forward(self, x):
            return x.softmax(-1)

    class WithExplicit(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = ExplicitAttention()

    with pytest.raises(ConfigError, match="no adapter knows"):
        hook(WithExplicit(), LAYOUT)

    class Twice(Bare):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v) + F.scaled_dot_product_attention(q, k, v)

    module = Twice()
    adapter_for(module, "twice").install(module)
    module.hook_z.add_hook(lambda z, hook: z)
    with pytest.raises(ConfigError, match="more than once"):
        module(*qkv())
    assert F.scaled_dot_product_attention is SDPA_FUNCTION


def test_the_number_of_heads_is_read_or_asked_for():
    class Named(Bare):
        num_heads = None
        n_heads = 4

    module = Named()
    adapter_for(module, "named").install(module)
    assert module.num_heads == 4

    class Unnamed(Bare):
        num_heads = None

    with pytest.raises(ConfigError, match="num_heads"):
        adapter_for(Unnamed(), "unnamed").install(Unnamed())
