"""Adapters: isoprobe's hook points on attention modules isoprobe did not write, one adapter per
implementation, in a registry (`ADAPTERS`, `register_adapter`).

An adapter installs, on one attention module and in place, the hook points the engine uses —
`hook_q`, `hook_k`, `hook_v`, `hook_z` [batch, pos, head, d_head] and `hook_attn_scores`,
`hook_pattern` [batch, head, query_pos, key_pos] (scaled, pre-softmax scores; TransformerLens
shapes) — and routes the module's forward through an explicit computation only while a hook is
attached to one of them. With no hook attached the module's own forward runs untouched, so the
hooked model's outputs are the original's (fast paths included: a hook attached anywhere below an
`nn.TransformerEncoderLayer` already turns its fused fast path off, as PyTorch documents).

Adapters, in the order they are tried: `nn.MultiheadAttention`; Hugging Face attention modules; then, as
the fallback, any module whose forward calls `torch.nn.functional.scaled_dot_product_attention` (timm's
`Attention`, most hand-written ones; see that section). Name a class the fallback cannot see — one that
calls SDPA from a helper function or method — with `register_sdpa_attention(MyAttention)` (also a class
decorator). Attention with no logit matrix (linear attention) has no pathway to mask: it is refused, naming
the module, like any implementation no adapter knows."""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import types
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn
from transformer_lens.hook_points import HookPoint

from isoprobe.errors import ConfigError
from isoprobe.models.components.attention import safe_softmax

HOOK_NAMES = ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z")
# Attention modules with no logit matrix: nothing to mask per edge (BIOT's linear_attention_transformer…)
LINEAR_ATTENTION = ("LinearAttention", "SelfAttention_linear", "LinformerSelfAttention", "PerformerAttention",
                    "FastAttention")


@dataclass(frozen=True)
class Adapter:
    """name; matches(module): whether this adapter knows the module; install(module): adds the hook points
    and the explicit path to it, in place; fallback: tried only after every other adapter, whenever that was
    registered (a generic rule, such as "calls scaled_dot_product_attention", yields to a specific one)."""

    name: str
    matches: Callable[[nn.Module], bool]
    install: Callable[[nn.Module], None]
    fallback: bool = False


ADAPTERS: dict[str, Adapter] = {}  # name -> adapter, tried in registration order


def register_adapter(adapter: Adapter) -> Adapter:
    ADAPTERS[adapter.name] = adapter
    return adapter


def adapter_for(module: nn.Module, name: str) -> Adapter:
    """The adapter of an attention module (`name`: its path in the model), or a ConfigError naming it."""
    kind = type(module).__name__
    if kind in LINEAR_ATTENTION:
        raise ConfigError("attention", f"{name} ({kind})", "linear attention has no logit matrix: no edge of it "
                          "can be masked, so isoprobe's pathways do not apply")
    for adapter in sorted(ADAPTERS.values(), key=lambda adapter: adapter.fallback):  # stable: registration order
        if adapter.matches(module):
            return adapter
    raise ConfigError("attention", f"{name} ({type(module).__module__}.{kind})",
                      f"no adapter knows this attention implementation (known: {', '.join(ADAPTERS)}); "
                      "register one with isoprobe.hook.adapters.register_adapter, or, if it calls "
                      "scaled_dot_product_attention from a helper, name it with register_sdpa_attention")


def hooked(module: nn.Module) -> bool:
    """Whether a hook is attached to any of the module's isoprobe hook points."""
    return any(point._forward_hooks or point._forward_pre_hooks or point._backward_hooks
               for point in (getattr(module, name, None) for name in HOOK_NAMES) if isinstance(point, HookPoint))


def add_hook_points(module: nn.Module) -> None:
    for name in HOOK_NAMES:
        if not isinstance(getattr(module, name, None), HookPoint):
            module.add_module(name, HookPoint())


# --- torch.nn.MultiheadAttention (and so nn.TransformerEncoderLayer / nn.TransformerEncoder) ---------------

def _install_multihead(module: nn.MultiheadAttention) -> None:
    if module.bias_k is not None or module.add_zero_attn:
        raise ConfigError("attention", "nn.MultiheadAttention(add_bias_kv / add_zero_attn)",
                          "extra key positions have no token of the layout: not supported")
    add_hook_points(module)
    # a method bound to the module, not a closure over it: copy.deepcopy (sanity's randomised copies)
    # then binds the copy's forward to the copy
    module.forward = types.MethodType(_multihead_forward, module)


def _multihead_forward(module: nn.MultiheadAttention, query, key, value, key_padding_mask=None, need_weights=True,
                       attn_mask=None, average_attn_weights=True, is_causal=False):
    if not hooked(module):
        return type(module).forward(module, query, key, value, key_padding_mask=key_padding_mask,
                                    need_weights=need_weights, attn_mask=attn_mask,
                                    average_attn_weights=average_attn_weights, is_causal=is_causal)
    if query.is_nested:  # nn.TransformerEncoder's fast path packs a padded batch; the explicit path needs it dense
        raise ConfigError("model", "nn.MultiheadAttention in an nn.TransformerEncoder",
                          "the encoder hands its layers a nested tensor for a padding mask (its default "
                          "enable_nested_tensor=True): build it with enable_nested_tensor=False, or set "
                          "encoder.use_nested_tensor = False (same weights; same outputs at unpadded positions)")
    return _explicit_multihead(module, query, key, value, key_padding_mask, need_weights, attn_mask,
                               average_attn_weights, is_causal)


def _explicit_multihead(module: nn.MultiheadAttention, query, key, value, key_padding_mask, need_weights, attn_mask,
                        average_attn_weights, is_causal):
    """nn.MultiheadAttention's computation written out with the hook points: the same projections, scale,
    masks, softmax (all-masked rows attend to nothing) and output projection. Inputs and outputs as
    nn.MultiheadAttention takes and returns them (batch_first or not; unbatched [pos, d_model] too)."""
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query[:, None], key[:, None], value[:, None]  # [pos, 1, d_model]
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask[None]
    elif module.batch_first:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # -> [pos, batch, d_model]
    heads, d_model = module.num_heads, module.embed_dim
    d_head = d_model // heads
    if module._qkv_same_embed_dim:
        w_q, w_k, w_v = module.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    b_q, b_k, b_v = module.in_proj_bias.chunk(3) if module.in_proj_bias is not None else (None, None, None)
    split = lambda x: rearrange(x, "pos batch (head d_head) -> batch pos head d_head", head=heads)  # noqa: E731
    q, k, v = split(F.linear(query, w_q, b_q)), split(F.linear(key, w_k, b_k)), split(F.linear(value, w_v, b_v))
    z, pattern = attend(module, q, k, v, d_head**-0.5, _additive(attn_mask, key_padding_mask, is_causal, q, k),
                        module.dropout, module.training)
    out = module.out_proj(rearrange(z, "batch q head d_head -> q batch (head d_head)"))
    if unbatched:
        out = out[:, 0]
    elif module.batch_first:
        out = out.transpose(0, 1)
    weights = None
    if need_weights:
        weights = pattern.mean(dim=1) if average_attn_weights else pattern
        weights = weights[0] if unbatched else weights
    return out, weights


def attend(module: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
           mask: torch.Tensor | None, dropout_p: float, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out through the module's hook points, as every adapter computes it while a hook is
    attached: q, k, v [batch, pos, head, d_head] (through hook_q/k/v), scaled scores plus `mask` (additive
    float, broadcasting to [batch, head, q, k]) through hook_attn_scores, softmax (a row with no key left
    attends to nothing) through hook_pattern, dropout, and z through hook_z. Returns (z [batch, q, head,
    d_head], pattern [batch, head, q, k])."""
    q, k, v = module.hook_q(q), module.hook_k(k), module.hook_v(v)
    scores = einsum(q, k, "batch q head d_head, batch k head d_head -> batch head q k") * scale
    if mask is not None:
        scores = scores + mask
    pattern = module.hook_pattern(safe_softmax(module.hook_attn_scores(scores)))
    dropped = F.dropout(pattern, dropout_p, training)
    return module.hook_z(einsum(dropped, v, "batch head q k, batch k head d_head -> batch q head d_head")), pattern


def _additive(attn_mask, key_padding_mask, is_causal, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The masks nn.MultiheadAttention takes, as one additive float mask broadcasting to the scores
    [batch, head, q, k] of q, k [batch, pos, head, d_head]: boolean True = not allowed (−inf), float = added."""
    batch, n_q, heads, _ = q.shape
    n_k = k.shape[1]
    total = torch.zeros((), dtype=q.dtype, device=q.device)
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu(1)
    if attn_mask is not None:
        mask = _as_float(attn_mask, q.dtype)
        total = total + (mask.view(batch, heads, n_q, n_k) if mask.dim() == 3 else mask)
    if key_padding_mask is not None:
        total = total + _as_float(key_padding_mask, q.dtype)[:, None, None, :]
    return total


def _as_float(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """nn.MultiheadAttention's convention: boolean True = not allowed (−inf); a float mask is added."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def _allowed(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """scaled_dot_product_attention's (and transformers') convention: boolean True = may attend."""
    return _as_float(~mask if mask.dtype == torch.bool else mask, dtype)


register_adapter(Adapter("torch.nn.MultiheadAttention", lambda m: isinstance(m, nn.MultiheadAttention),
                         _install_multihead))


# --- Hugging Face attention modules (the AttentionInterface of transformers ≥ 4.48: BERT, ViT, …) ----------

HF_IMPLEMENTATION = "isoprobe"


def _is_hf_attention(module: nn.Module) -> bool:
    """A transformers attention module that calls the configured attention function with (module, q, k, v,
    mask, scaling, dropout): it has a config naming the implementation, and a scaling."""
    config = getattr(module, "config", None)
    return (type(module).__module__.startswith("transformers.") and hasattr(config, "_attn_implementation")
            and hasattr(module, "scaling"))


def _install_hf(module: nn.Module) -> None:
    """Point the model's config at isoprobe's attention function, which calls the implementation the
    config named before (eager: the model file's own `eager_attention_forward`) while no hook is attached,
    and the explicit computation with the hook points while one is. Masks are built as that
    implementation builds them."""
    import sys

    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    add_hook_points(module)
    config = module.config
    original = config._attn_implementation
    if original != HF_IMPLEMENTATION:
        config._isoprobe_original = original
    original = config._isoprobe_original
    if original == "eager":
        implementation = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
        if implementation is None:
            raise ConfigError("attention", type(module).__name__, "has no eager_attention_forward in its module")
    else:
        implementation = AttentionInterface._global_mapping[original]
    module._isoprobe_attention = implementation
    AttentionInterface.register(HF_IMPLEMENTATION, _hf_attention)
    masks = AttentionMaskInterface._global_mapping
    AttentionMaskInterface.register(HF_IMPLEMENTATION, masks.get(original, masks["eager"]))
    config._attn_implementation = HF_IMPLEMENTATION


def _hf_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0, **options):
    """The attention function transformers calls: q, k, v [batch, head, pos, d_head] -> (z [batch, pos, head,
    d_head], pattern [batch, head, q, k])."""
    if not hooked(module):
        return module._isoprobe_attention(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                          **options)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    mask = None if attention_mask is None else _allowed(attention_mask[..., : key.shape[2]], query.dtype)
    z, pattern = attend(module, *(x.transpose(1, 2) for x in (query, key, value)), scaling, mask, dropout,
                        module.training)
    return z.contiguous(), pattern


register_adapter(Adapter("transformers attention interface", _is_hf_attention, _install_hf))


# --- Modules that call torch.nn.functional.scaled_dot_product_attention (timm's Attention, your own) -------
#
# Matching: a module whose class's forward names `scaled_dot_product_attention` in its byte code — as an
# attribute (`F.scaled_dot_product_attention`, `torch.nn.functional.…`) or as a global bound to the function
# (`from torch.nn.functional import scaled_dot_product_attention [as sdpa]`) — read once per class; comments
# and docstrings do not count, and no source file is needed. Or a class named with register_sdpa_attention.
# This adapter is the fallback: any other adapter that knows the module comes first.
#
# Interception: while a hook is attached to one of the module's points, its forward runs with
# `torch.nn.functional.scaled_dot_product_attention`, and the globals of the forward's own module bound to
# it, pointing at `_sdpa_dispatch`; the last forward to finish (any thread) puts them back. The dispatcher
# computes attention explicitly, through the hook points, only for a call made by that forward in that
# thread; any other call (another thread, the code of a hook) goes to the real function. The forward must
# call it exactly once: a module that took another branch (timm's `fused_attn=False` softmax) is refused.

SDPA = "scaled_dot_product_attention"
_SDPA = F.scaled_dot_product_attention  # the function itself, under whatever name a module calls it
SDPA_CLASSES: set[type] = set()  # attention classes named by register_sdpa_attention
_calls = threading.local()  # .stack: per thread, [module, calls] of each hooked forward running; None in ours
_lock = threading.Lock()
_patched: dict[tuple[int, str], list] = {}  # (id(namespace), name) -> [value before, forwards running]


def register_sdpa_attention(cls: type[nn.Module]) -> type[nn.Module]:
    """Name an attention class whose forward calls scaled_dot_product_attention where the rule cannot see it
    (from a helper function or method): its modules get this adapter. Returns the class (a decorator too)."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError("register_sdpa_attention", cls, "takes an nn.Module subclass")
    SDPA_CLASSES.add(cls)
    return cls


def _is_sdpa_attention(module: nn.Module) -> bool:
    return isinstance(module, tuple(SDPA_CLASSES)) or _names_sdpa(type(module))


@functools.cache
def _forward_names(cls: type) -> tuple[dict, frozenset[str]]:
    """The globals of cls.forward (decorators unwrapped) and every name its code and nested code uses."""
    forward = inspect.unwrap(getattr(cls, "forward", None) or (lambda: None))
    code = getattr(forward, "__code__", None)
    names: set[str] = set()
    pending = [code] if code is not None else []
    while pending:
        code = pending.pop()
        names.update(code.co_names)
        pending.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return getattr(forward, "__globals__", {}), frozenset(names)


def _names_sdpa(cls: type) -> bool:
    return SDPA in _forward_names(cls)[1] or bool(_sdpa_globals(cls))


def _sdpa_globals(cls: type) -> list[tuple[dict, str]]:
    """The names of the forward's own module bound to the function (or to the dispatcher, while patched)."""
    namespace, names = _forward_names(cls)
    return [(namespace, name) for name in names if any(namespace.get(name) is f for f in (_SDPA, _sdpa_dispatch))]


def _install_sdpa(module: nn.Module) -> None:
    kind = type(module).__name__
    if getattr(module, "fused_attn", None) is False:  # timm's switch: its other branch writes the softmax out
        raise ConfigError("attention", f"{kind}(fused_attn=False)", "computes its softmax itself, not with "
                          "scaled_dot_product_attention, so isoprobe cannot reach its scores; set "
                          "module.fused_attn = True (the same attention) before hooking")
    if not any(isinstance(getattr(module, name, None), int) for name in ("num_heads", "num_attention_heads")):
        heads = [value for name in ("n_heads", "heads", "n_head", "nhead")
                 if isinstance(value := getattr(module, name, None), int)]
        if not heads:
            raise ConfigError("attention", kind, "isoprobe reads the number of heads from `num_heads`: set "
                              "module.num_heads before hooking")
        module.num_heads = heads[0]
    add_hook_points(module)
    # a method bound to the module, not a closure over it: copy.deepcopy binds the copy's forward to the copy
    module.forward = types.MethodType(_sdpa_forward, module)


def _sdpa_forward(module: nn.Module, *args, **options):
    if not hooked(module):
        return type(module).forward(module, *args, **options)
    with _intercepting(module) as call:
        out = type(module).forward(module, *args, **options)
    if call[1] == 0:
        raise ConfigError("attention", type(module).__name__, "its forward called no scaled_dot_product_attention "
                          "while hooked (an explicit-softmax branch, or a call from a helper isoprobe does not "
                          "patch): its scores cannot be reached")
    return out


@contextlib.contextmanager
def _intercepting(module: nn.Module) -> Iterator[list]:
    """SDPA, as the module's forward resolves it, points at the dispatcher, and this thread's calls of it go
    to `module`'s explicit computation, until the block ends (exception or not)."""
    targets = [(vars(F), SDPA), *_sdpa_globals(type(module))]
    stack = _calls.__dict__.setdefault("stack", [])
    call = [module, 0]
    stack.append(call)
    patched = []
    try:
        with _lock:
            for namespace, name in targets:
                entry = _patched.setdefault((id(namespace), name), [namespace[name], 0])
                entry[1] += 1
                patched.append((namespace, name))
                namespace[name] = _sdpa_dispatch
        yield call
    finally:
        with _lock:
            for namespace, name in patched:
                entry = _patched[(id(namespace), name)]
                entry[1] -= 1
                if entry[1] == 0:  # the last forward running: the value it had before
                    namespace[name] = entry[0]
                    del _patched[(id(namespace), name)]
        stack.pop()


def _sdpa_dispatch(*args, **options):
    """Stands for F.scaled_dot_product_attention while a hooked forward runs: that forward's call, in its
    thread, is computed explicitly; every other call is the real function's."""
    stack = getattr(_calls, "stack", None)
    if not stack or stack[-1] is None:
        return _SDPA(*args, **options)
    call = stack[-1]
    call[1] += 1
    if call[1] > 1:
        raise ConfigError("attention", type(call[0]).__name__, "its forward calls scaled_dot_product_attention "
                          "more than once: one module must be one attention for isoprobe's hook points")
    stack.append(None)  # the hooks' own code (and a module they run) calls the real function
    try:
        return _explicit_sdpa(call[0], *args, **options)
    finally:
        stack.pop()


def _explicit_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
                   scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """F.scaled_dot_product_attention written out with the hook points: q, k, v [batch, head, pos, d_head]
    -> z [batch, head, q, d_head], SDPA's own layout. Its semantics: a boolean attn_mask is True where a key
    may be attended, a float one is added; is_causal masks the keys after each query (top-left aligned);
    scale defaults to 1/√d_head; dropout_p is applied whenever it is > 0 (callers pass 0 in eval, as timm
    does); enable_gqa repeats each key/value head for its group of query heads."""
    if query.dim() != 4:
        raise ConfigError("attention", f"{type(module).__name__}: query of shape {tuple(query.shape)}",
                          "isoprobe intercepts scaled_dot_product_attention on [batch, head, pos, d_head] only")
    heads = query.size(1)
    if enable_gqa and key.size(1) != heads:
        key, value = (x.repeat_interleave(heads // x.size(1), dim=1) for x in (key, value))
    scale = query.size(-1) ** -0.5 if scale is None else scale
    mask = None if attn_mask is None else _allowed(attn_mask, query.dtype)
    if is_causal:
        after = _as_float(torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).triu(1),
                          query.dtype)
        mask = after if mask is None else mask + after
    z, _ = attend(module, *(x.transpose(1, 2) for x in (query, key, value)), scale, mask, dropout_p,
                  training=dropout_p > 0)  # SDPA drops whenever dropout_p > 0
    return z.transpose(1, 2)


register_adapter(Adapter("scaled_dot_product_attention (timm-style, or register_sdpa_attention)",
                         _is_sdpa_attention, _install_sdpa, fallback=True))
