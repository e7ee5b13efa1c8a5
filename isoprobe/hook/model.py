"""A model isoprobe did not build, with isoprobe's hook names: `HookedForeignModel`, and
`StagedForeignModel` for one whose attention layers form one stack the engine can run in stages."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from isoprobe.errors import ConfigError
from isoprobe.hook.adapters import HOOK_NAMES
from isoprobe.hook.layout import TokenLayout


class HookedForeignModel(HookedRootModule):
    """The user's `model` (its weights, not a copy) seen as isoprobe's transformers are seen: its l-th
    attention module's hook points are `blocks.{l}.attn.hook_*`, `token_modalities` and
    `prediction_positions` come from the layout, and the forward returns the logits [batch, class]
    (`logits` turns the model's output into them, e.g. `lambda out: out.logits`). `inputs` turns
    isoprobe's windows — one [batch, time, channel] tensor per modality, in the layout's modality order,
    as every analysis passes them — into the model's arguments: a tuple (positional) or a dict (keywords);
    by default they are passed as they are,
    so the analyses that take a `WindowSet` (ablate, shift, compare, attribute) run on the model. The engine
    runs it whole for each condition; `hook` returns a StagedForeignModel instead where it can share the
    layers below each condition's first one."""

    def __init__(self, model: nn.Module, layout: TokenLayout, attention: list[tuple[str, nn.Module]],
                 logits: Callable[[Any], torch.Tensor] | None = None,
                 inputs: Callable[..., tuple] | None = None, own_hooks: dict | None = None):
        super().__init__()
        self.model = model
        self.layout = layout
        self.modality_names = layout.modality_names
        self.attention_modules = tuple(name for name, _ in attention)
        self.logits_of = logits or (lambda out: out)
        self.inputs_of = inputs or (lambda *windows: windows)
        self.register_buffer("token_modalities", layout.token_modalities, persistent=False)
        self.register_buffer("prediction_positions", layout.prediction_positions, persistent=False)
        if own_hooks is not None:  # a HookedRootModule: its hook points under their own names
            n_layers = sum(name.endswith(".attn.hook_attn_scores") for name in own_hooks)
            self.cfg = SimpleNamespace(n_heads=_own_heads(model), n_layers=n_layers)
            own_hooks = dict(own_hooks)
            self.setup()  # names the points after this wrapper ("model.blocks…"): give them back their own
            for name, point in own_hooks.items():
                point.name = name
            self.hook_dict, self.mod_dict = own_hooks, dict(own_hooks)
            return
        self.cfg = SimpleNamespace(n_heads=_heads(attention), n_layers=len(attention))
        self.setup()
        # the parameter-name prefix of each layer's block (its attention module where no block holds it),
        # as `named_parameters` of this wrapper names them: what sanity's cascade re-draws layer by layer
        self.layer_prefixes = tuple("model." + _block_name(model, name) for name, _ in attention)
        points = {}
        for layer, (name, module) in enumerate(attention):
            for hook_name in HOOK_NAMES:
                point = getattr(module, hook_name)
                point.name = f"blocks.{layer}.attn.{hook_name}"
                points[point.name] = point
            block = _block_of(model, name)
            if block is not None:
                point = ResidualPoint(block, batch_first=getattr(module, "batch_first", True))
                point.name = f"blocks.{layer}.hook_resid_post"
                self.add_module(f"resid_{layer}", point)
                points[point.name] = point
        self.hook_dict, self.mod_dict = points, dict(points)

    def forward(self, *inputs: Any, **options: Any) -> torch.Tensor:
        return self.logits_of(self._run(inputs, options))

    def _run(self, inputs: tuple, options: dict | None = None) -> Any:
        """The model's own output on isoprobe's inputs, through `inputs_of`."""
        prepared = self.inputs_of(*inputs)
        if isinstance(prepared, dict):  # keyword arguments, e.g. {"inputs_embeds": tokens}
            return self.model(**prepared, **(options or {}))
        return self.model(*prepared, **(options or {}))


class ResidualPoint(HookPoint):
    """`blocks.{l}.hook_resid_post` [batch, pos, d_model] of a foreign block: the block's output passed
    through this hook point. The relay (a torch forward hook on the block) is registered only while a hook
    is attached here, and removes itself at the first forward after the last one is gone: with nothing
    attached the block runs untouched (PyTorch turns its encoder fast path off when any hook is present)."""

    def __init__(self, block: nn.Module, batch_first: bool = True):
        super().__init__()
        self._block = (block,)  # a tuple: not a submodule of the point
        self.batch_first = batch_first
        self._relay = None

    def add_hook(self, *args, **options):
        super().add_hook(*args, **options)
        if self._relay is None:
            self._relay = self._block[0].register_forward_hook(self._pass)

    def _pass(self, module, args, output):
        if not self._forward_hooks:  # the last hook was removed: step aside
            self._relay.remove()
            self._relay = None
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden if self.batch_first else hidden.transpose(0, 1)
        hidden = self(hidden)
        hidden = hidden if self.batch_first else hidden.transpose(0, 1)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class StagedForeignModel(HookedForeignModel):
    """A HookedForeignModel whose n attention modules sit one per block of one nn.ModuleList (`block_stack`),
    so that it also runs in isoprobe's stages: the engine computes the clean residual stream once per batch
    and starts each condition at its first intervened layer (`isoprobe.models.components.staged.run_from`),
    as on isoprobe's own transformers, instead of running the whole model per condition.

    - `embed_stage(*inputs)` runs the forward up to block 0 and returns the hidden state block 0 would get,
      [batch, pos, d_model], keeping block 0's other arguments (masks, flags) for the stages below;
    - `block_stage(l, x)` calls block l itself (its hooks fire) on x with those arguments;
    - `heads_stage(x)` runs the forward again with every block passing its input on and the last one
      returning x, so that the model's own code after the stack turns x into the logits. What comes before
      block 0 (the embedding) runs again there: cheap next to the layers.

    The stream is batch-first whatever the blocks take (`batch_first=False` encoders are transposed, as for
    `hook_resid_post`). The stages belong to the batch of the latest `embed_stage` call, the order in which
    the engine and the attributions call them. A stream of k times that many rows (captum's integrated
    gradients repeat the batch once per step) is the batch repeated k times: the blocks and the heads then
    see what a whole forward on the inputs repeated k times sees.

    On the first batch the forward runs once with the blocks watched, and a model the stages would not
    reproduce is refused (ConfigError; `isoprobe.hook(..., staged=False)` runs it whole): each block must be
    called once, in order, on the previous block's output untouched, with block 0's other arguments, and no
    block's output but the last may reach the logits other than through the next block."""

    def __init__(self, model: nn.Module, layout: TokenLayout, attention: list[tuple[str, nn.Module]],
                 stack: nn.ModuleList, logits: Callable[[Any], torch.Tensor] | None = None,
                 inputs: Callable[..., tuple] | None = None):
        super().__init__(model, layout, attention, logits, inputs)
        self._blocks = tuple(stack)  # a tuple: they are submodules of the model already
        self._batch_first = getattr(attention[0][1], "batch_first", True)
        self._checked = False
        self._rows = 0  # the rows of the latest embed_stage batch
        self._calls: dict[int, _Call] = {}  # rows -> block 0's call on that batch (or on it repeated)
        self._tails: dict[int, tuple | None] = {}  # block -> what its output tuple holds after the hidden state

    def __getstate__(self) -> dict:
        """A copy (copy.deepcopy, as sanity's randomised models are made; pickling) holds no batch, and checks
        the stack again on its first one: what a batch left may be tensors autograd will not copy."""
        return {**super().__getstate__(), "_checked": False, "_rows": 0, "_calls": {}, "_tails": {}}

    def embed_stage(self, *inputs: Any) -> torch.Tensor:
        """The hidden state [batch, pos, d_model] that block 0 gets from `inputs` (as the forward takes them)."""
        if not self._checked:
            self._check_stack(inputs)
            self._checked = True
        self._calls, self._rows = {}, 0
        x = self._capture(inputs)
        self._rows = len(x)
        return x

    def block_stage(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Block `layer`'s output [batch, pos, d_model] from its input x [batch, pos, d_model]."""
        call = self._call(len(x))
        hidden = self._turned(x)
        args = tuple(hidden if value is _Hidden else value for value in call.args)
        kwargs = {name: hidden if value is _Hidden else value for name, value in call.kwargs.items()}
        output = self._blocks[layer](hidden, *args, **kwargs)
        self._tails[layer] = output[1:] if isinstance(output, tuple) else None
        return self._turned(output[0] if isinstance(output, tuple) else output)

    def heads_stage(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"main": logits [batch, class]} from the last block's output x [batch, pos, d_model]."""
        call = self._call(len(x))
        last = len(self._blocks) - 1

        def passing(layer: int) -> Callable:
            def forward(hidden, *args, **kwargs):
                # a copy of x: the model's code after the stack may edit its input in place
                hidden = self._turned(x).clone() if layer == last else hidden
                tail = self._tails.get(layer)
                return hidden if tail is None else (hidden, *tail)
            return forward

        # the blocks' own hooks (hook_resid_post's relay among them) must not see the inputs passed on
        with _silenced(self._blocks), _forwards(self._blocks, passing):
            return {"main": self.forward(*call.inputs)}

    def _turned(self, x: torch.Tensor) -> torch.Tensor:
        """Batch-first [batch, pos, d_model] <-> the blocks' own order (a transpose is its own inverse)."""
        return x if self._batch_first else x.transpose(0, 1)

    def _call(self, rows: int) -> _Call:
        """Block 0's call on the latest batch, or on it repeated to `rows` rows (captured on first use)."""
        if rows not in self._calls:
            if not self._rows:
                raise RuntimeError("StagedForeignModel: embed_stage(batch) comes before block_stage and heads_stage")
            if rows % self._rows:
                raise ConfigError("x", f"{rows} rows", f"the stages run the batch given to embed_stage ({self._rows} "
                                  "rows) or that batch repeated")
            repeats = rows // self._rows  # repeated as captum repeats additional forward arguments
            self._capture(tuple(torch.cat([value] * repeats) if torch.is_tensor(value) and value.dim() else value
                                for value in self._calls[self._rows].inputs))
        return self._calls[rows]

    def _capture(self, inputs: tuple) -> torch.Tensor:
        """Run the forward on `inputs` up to block 0, keep how block 0 was called (under the batch's rows)
        and return its hidden state, batch-first."""
        seen = []

        def stop(module, args, kwargs):
            seen.append((args, kwargs))
            raise _Stopped

        handle = self._blocks[0].register_forward_pre_hook(stop, prepend=True, with_kwargs=True)
        try:
            self._run(inputs)
        except _Stopped:
            pass
        finally:
            handle.remove()
        if not seen:
            self._refuse("its forward did not call block 0 on this batch")
        args, kwargs = seen[0]
        hidden = self._hidden(args, 0)
        x = self._turned(hidden)
        self._calls[len(x)] = _Call(inputs, *_marked(args, kwargs))
        return x

    def _hidden(self, args: tuple, layer: int) -> torch.Tensor:
        """Block `layer`'s hidden state: its first positional argument, a [batch, pos, d_model] tensor."""
        hidden = args[0] if args else None
        if not torch.is_tensor(hidden):
            self._refuse(f"block {layer} gets no tensor as its first positional argument (its hidden state)")
        if hidden.is_nested:  # isoprobe's explicit attention does not take one either
            raise ConfigError("model", type(self.model).__name__, f"block {layer} gets a nested tensor "
                              "(nn.TransformerEncoder's fast path for a padding mask): build the encoder with "
                              "enable_nested_tensor=False")
        if hidden.dim() != 3:
            self._refuse(f"block {layer} gets a hidden state of shape {tuple(hidden.shape)}, not [batch, pos, d_model]")
        return hidden

    def _check_stack(self, inputs: tuple) -> None:
        """Run the forward once on `inputs`, the blocks watched and every other hook set aside, and refuse a
        model the stages would not reproduce (see the class). Each block's output is handed on as a copy
        whose version counts edits in place, and the next block gets it detached: a gradient of the logits
        that reaches an output then found another way there."""
        n = len(self._blocks)
        calls: list[tuple[int, tuple, dict, int]] = []  # (block, args, kwargs, version of the hidden state)
        handed: list[tuple[torch.Tensor, int]] = []  # each block's output as handed on, and its version
        leaves: list[torch.Tensor] = []
        edited: list[int] = []  # blocks that edited their input in place (the stages reuse each input)

        def before(layer: int) -> Callable:
            def hook(module, args, kwargs):
                hidden = self._hidden(args, layer)
                calls.append((layer, args, kwargs, hidden._version))
                if layer == 0:
                    return None
                fresh = hidden.detach()  # same data and version counter, no path back to block layer − 1
                return (tuple(fresh if value is hidden else value for value in args),
                        {name: fresh if value is hidden else value for name, value in kwargs.items()})
            return hook

        def after(layer: int) -> Callable:
            def hook(module, args, output):
                if args[0]._version != calls[-1][3]:
                    edited.append(layer)
                hidden = output[0] if isinstance(output, tuple) else output
                if not torch.is_tensor(hidden):
                    self._refuse(f"block {layer} returns {type(output).__name__}, not a tensor or a tuple that "
                                 "starts with one")
                self._tails[layer] = output[1:] if isinstance(output, tuple) else None
                leaves.append(hidden.detach().requires_grad_())
                passed = leaves[-1].clone()  # not a leaf: the model may edit it in place (its version tells)
                handed.append((passed, passed._version))
                return (passed, *output[1:]) if isinstance(output, tuple) else passed
            return hook

        with _silenced((*self._blocks, *self.hook_dict.values())), torch.inference_mode(False), torch.enable_grad():
            handles = []
            try:
                for layer, block in enumerate(self._blocks):
                    handles += [block.register_forward_pre_hook(before(layer), prepend=True, with_kwargs=True),
                                block.register_forward_hook(after(layer))]
                logits = self.forward(*inputs)
            finally:
                for handle in handles:
                    handle.remove()
            order = [call[0] for call in calls]
            if order != list(range(n)):
                self._refuse(f"its forward called the blocks in the order {order}, not each once from 0 to {n - 1}")
            if edited:
                self._refuse(f"block {edited[0]} edits its input in place")
            first = _marked(calls[0][1], calls[0][2])
            for layer, args, kwargs, version in calls[1:]:
                if args[0] is not handed[layer - 1][0] or version != handed[layer - 1][1]:
                    self._refuse(f"block {layer} does not get block {layer - 1}'s output as it is (the forward "
                                 "does something between them)")
                if not _same(_marked(args, kwargs), first):
                    self._refuse(f"block {layer} gets other arguments than block 0")
            if n > 1 and torch.is_tensor(logits) and logits.requires_grad:
                grads = torch.autograd.grad(logits.float().sum(), leaves[:-1], allow_unused=True)
                used = [layer for layer, grad in enumerate(grads) if grad is not None]
                if used:
                    self._refuse(f"block {used[0]}'s output reaches the logits other than through block {used[0] + 1} "
                                 "(every layer's output read?)")

    def _refuse(self, reason: str) -> None:
        raise ConfigError("model", type(self.model).__name__, f"cannot run in stages: {reason}; "
                          "isoprobe.hook(..., staged=False) runs it whole for each condition")


class _Stopped(Exception):
    """Ends a forward pass at block 0 (`StagedForeignModel._capture`)."""


class _Hidden:
    """Marks, among a block's other arguments, its hidden state passed again (self-attention called as
    block(x, x, x)); the class itself is the mark, which copy.deepcopy leaves as it is."""


@dataclass
class _Call:
    """How the forward called block 0 on one batch: the inputs given to the forward, and block 0's
    arguments after the hidden state, `_Hidden` where that was passed again."""

    inputs: tuple
    args: tuple
    kwargs: dict


def _marked(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A block's arguments after its hidden state args[0], each occurrence of that state marked `_Hidden`."""
    hidden = args[0]
    return (tuple(_Hidden if value is hidden else value for value in args[1:]),
            {name: _Hidden if value is hidden else value for name, value in kwargs.items()})


def _same(first: tuple[tuple, dict], second: tuple[tuple, dict]) -> bool:
    """Whether two blocks got the same other arguments: the same objects, or equal plain values."""
    def equal(a, b) -> bool:
        return a is b or (type(a) is type(b) and isinstance(a, (bool, int, float, str)) and a == b)
    (args, kwargs), (other_args, other_kwargs) = first, second
    return (len(args) == len(other_args) and all(map(equal, args, other_args)) and kwargs.keys() == other_kwargs.keys()
            and all(equal(kwargs[name], other_kwargs[name]) for name in kwargs))


@contextlib.contextmanager
def _silenced(modules):
    """The modules' torch forward hooks and pre-hooks set aside for the duration, then put back as they were."""
    saved = [(module, module._forward_hooks, module._forward_pre_hooks) for module in modules]
    try:
        for module, _, _ in saved:
            module._forward_hooks, module._forward_pre_hooks = OrderedDict(), OrderedDict()
        yield
    finally:
        for module, hooks, pre_hooks in saved:
            module._forward_hooks, module._forward_pre_hooks = hooks, pre_hooks


@contextlib.contextmanager
def _forwards(modules, forward_of: Callable[[int], Callable]):
    """Module i's forward replaced by forward_of(i) for the duration (an instance attribute, as an adapter
    may have set one: put back as it was)."""
    saved = [module.__dict__.get("forward") for module in modules]
    try:
        for index, module in enumerate(modules):
            module.forward = forward_of(index)
        yield
    finally:
        for module, forward in zip(modules, saved):
            if forward is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = forward


def foreign_model(model: nn.Module, layout: TokenLayout, attention: list[tuple[str, nn.Module]],
                  logits: Callable[[Any], torch.Tensor] | None = None, inputs: Callable[..., tuple] | None = None,
                  staged: bool = True) -> HookedForeignModel:
    """The hooked model: a StagedForeignModel when `staged` and the attention modules form a stack
    (`block_stack`), else a HookedForeignModel, which the engine runs whole for each condition."""
    stack = block_stack(model, attention) if staged else None
    if stack is None:
        return HookedForeignModel(model, layout, attention, logits, inputs)
    return StagedForeignModel(model, layout, attention, stack, logits, inputs)


def block_stack(model: nn.Module, attention: list[tuple[str, nn.Module]]) -> nn.ModuleList | None:
    """The nn.ModuleList whose entries 0…n−1 hold the model's n attention modules, one each and in order
    (`encoder.layers` of an nn.TransformerEncoder, `encoder.layer` of BERT), all batch-first or all not;
    None when they form no such stack."""
    entries = [_stack_entry(model, name) for name, _ in attention]
    if not entries or None in entries or len({path for path, _ in entries}) != 1:
        return None
    if len({getattr(module, "batch_first", True) for _, module in attention}) != 1:
        return None
    stack = model.get_submodule(entries[0][0])
    return stack if [index for _, index in entries] == list(range(len(stack))) else None


def _block_of(model: nn.Module, attention_name: str) -> nn.Module | None:
    """The layer holding an attention module: the element of the nearest ModuleList (or Sequential) on its path
    (`encoder.layers.3` for `encoder.layers.3.self_attn`), or None."""
    entry = _stack_entry(model, attention_name)
    return None if entry is None else model.get_submodule(".".join(filter(None, (entry[0], str(entry[1])))))


def _block_name(model: nn.Module, attention_name: str) -> str:
    """The path of the block holding an attention module (`encoder.layers.3`), or the module's own path."""
    entry = _stack_entry(model, attention_name)
    return attention_name if entry is None else ".".join(filter(None, (entry[0], str(entry[1]))))


def _stack_entry(model: nn.Module, attention_name: str) -> tuple[str, int] | None:
    """(the path of the nearest ModuleList or nn.Sequential on an attention module's path — timm's `blocks`
    is a Sequential —, the index of the entry holding it): ("encoder.layers", 3) for
    `encoder.layers.3.self_attn`; None if no such list holds it."""
    parts = attention_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        parent = model.get_submodule(".".join(parts[: end - 1])) if end > 1 else model
        if isinstance(parent, (nn.ModuleList, nn.Sequential)) and parts[end - 1].isdigit():
            return ".".join(parts[: end - 1]), int(parts[end - 1])
    return None


def _own_heads(model: nn.Module) -> int:
    for config_name in ("cfg", "config"):
        n_heads = getattr(getattr(model, config_name, None), "n_heads", None)
        if isinstance(n_heads, int) and n_heads > 0:
            return n_heads
    raise ConfigError("model", type(model).__name__, "a HookedRootModule needs cfg.n_heads (TransformerLens) to be hooked")


def _heads(attention: list[tuple[str, nn.Module]]) -> int:
    counts = {getattr(module, "num_heads", None) or getattr(module, "num_attention_heads", None)
              or getattr(getattr(module, "config", None), "num_attention_heads", None) for _, module in attention}
    if len(counts) != 1 or None in counts:
        raise ConfigError("attention", sorted(name for name, _ in attention),
                          f"every attention module needs the same number of heads (found {counts})")
    return counts.pop()
