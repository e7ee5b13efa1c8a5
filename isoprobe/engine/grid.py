"""The intervention engine: run a grid of conditions on a model and return logits per condition.

Works on any HookedRootModule with `blocks.{l}.attn.hook_attn_scores`, given a token -> group
vector (0 = CLS). Models that also run in stages (`embed_stage`, `block_stage`, `heads_stage`, as
isoprobe's transformers do) get a batched grid: the clean forward is computed once per batch and
each condition restarts from the residual stream at its first intervened layer, so the embedding,
the modality encoders and the layers below are shared; layers without an intervention stay on the
fused attention path. The result equals a loop of one `run_with_hooks` per condition.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from isoprobe.engine.interventions import (
    Hook, ReplacementHooks, check_intervention, resample_permutation, score_mask_hook,
)
from isoprobe.engine.pathways import Pathway
from isoprobe.errors import ConfigError

MODES = ("single", "cumulative", "joint")
_SCORES = re.compile(r"^blocks\.(\d+)\.attn\.hook_attn_scores$")


@dataclass(frozen=True)
class Condition:
    """One intervention: a pathway at some shared layers (0-based) and heads."""

    layers: tuple[int, ...]
    pathway: str
    heads: tuple[int, ...] | None = None
    intervention: str = "mask"

    @property
    def layer_label(self) -> str:
        """1-based, as the paper counts: "L3", "L1-L5", "L2,L4"."""
        one = [layer + 1 for layer in self.layers]
        if len(one) > 1 and one == list(range(one[0], one[-1] + 1)):
            return f"L{one[0]}-L{one[-1]}"
        return ",".join(f"L{layer}" for layer in one)

    @property
    def head_label(self) -> str:
        return "all" if self.heads is None else ",".join(str(h) for h in self.heads)


def build_conditions(mode: str, layers: Sequence[int], pathways: Sequence[str], heads: tuple[int, ...] | None = None,
                     intervention: str = "mask") -> list[Condition]:
    """single: each layer alone, then all listed layers together; cumulative: the first 1, 2, … layers;
    joint: all listed layers together. One condition per pathway for each layer set."""
    check_intervention(intervention)
    layers = tuple(sorted(layers))
    if mode == "single":
        sets = [(layer,) for layer in layers] + ([layers] if len(layers) > 1 else [])
    elif mode == "cumulative":
        sets = [layers[: k + 1] for k in range(len(layers))]
    elif mode == "joint":
        sets = [layers]
    else:
        raise ConfigError("--mode", mode, f"choose one of {', '.join(MODES)}")
    return [Condition(layer_set, pathway, heads, intervention) for layer_set in sets for pathway in pathways]


def attention_layers(model: torch.nn.Module) -> int:
    """Number of shared layers that expose `blocks.{l}.attn.hook_attn_scores`."""
    found = sorted(int(m.group(1)) for name in getattr(model, "hook_dict", {}) if (m := _SCORES.match(name)))
    if not found:
        raise ConfigError("model", type(model).__name__,
                          "has no blocks.{l}.attn.hook_attn_scores hook points: attention interventions need a transformer "
                          "(isoprobe's mmt or hierarchical, or any HookedRootModule with those names)")
    if found != list(range(len(found))):
        raise ConfigError("model", type(model).__name__, f"attention hook layers {found} are not numbered 0…n-1")
    return len(found)


@contextlib.contextmanager
def attached(model: torch.nn.Module, hooks: Sequence[Hook]):
    """Forward hooks on their hook points for the duration, and only those removed afterwards.
    (TransformerLens's `model.hooks` resets every hook point of the model on exit: about 1 ms of
    Python per condition at the 87 points of the hierarchical transformer.)"""
    added = []
    try:
        for name, fn in hooks:
            point = model.hook_dict[name]
            before = len(point.fwd_hooks)
            point.add_hook(fn, dir="fwd")
            added.append((point, point.fwd_hooks[before:]))
        yield model
    finally:
        for point, handles in added:
            for handle in handles:
                handle.hook.remove()
            point.fwd_hooks = [h for h in point.fwd_hooks if not any(h is a for a in handles)]


class InterventionEngine:
    def __init__(self, model: torch.nn.Module, token_groups: torch.Tensor | None = None,
                 modality_names: tuple[str, ...] | None = None, mask_self: bool = False, seed: int = 0):
        self.model = model
        self.n_layers = attention_layers(model)
        self.token_groups = torch.as_tensor(token_groups if token_groups is not None else model.token_modalities).long()
        self.modality_names = tuple(modality_names if modality_names is not None else model.modality_names)
        self.mask_self, self.seed = mask_self, seed
        self.staged = all(hasattr(model, name) for name in ("embed_stage", "block_stage", "heads_stage"))
        self.means: dict[tuple[int, str], torch.Tensor] = {}
        self._edges: dict[str, torch.Tensor] = {}
        # per (pathway, heads, score mask or replacement): the masks built on each device
        self._masks: dict[tuple[str, tuple[int, ...] | None, bool], dict] = {}

    def edges(self, pathway: str) -> torch.Tensor:
        """Boolean [query_pos, key_pos] of the pathway's edges."""
        if pathway not in self._edges:
            self._edges[pathway] = Pathway(pathway).edges(self.token_groups, self.modality_names, self.mask_self)
        return self._edges[pathway]

    def check(self, conditions: Iterable[Condition]) -> None:
        for condition in conditions:
            bad = [layer + 1 for layer in condition.layers if not 0 <= layer < self.n_layers]
            if bad:
                raise ConfigError("--layers", bad, f"the model has shared layers 1–{self.n_layers}")
            self.edges(condition.pathway)
            if condition.intervention == "mean" and any((layer, condition.pathway) not in self.means for layer in condition.layers):
                raise ConfigError("--intervention", "mean", "reference means are missing: call fit_means() first")

    @property
    def n_heads(self) -> int:
        return self.model.blocks[0].attn.n_heads

    def hooks(self, condition: Condition, batch_index: int = 0) -> list[Hook]:
        """TransformerLens forward hooks that apply `condition`. `batch_index` seeds `resample`; the
        permutation is drawn for the batch size the hooks see."""
        edges = self.edges(condition.pathway)
        hooks: list[Hook] = []
        cache = self._masks.setdefault((condition.pathway, condition.heads, condition.intervention == "mask"), {})
        for layer in condition.layers:
            if condition.intervention == "mask":
                hooks.append((f"blocks.{layer}.attn.hook_attn_scores", score_mask_hook(edges, condition.heads, cache)))
            elif condition.intervention == "mean":
                mean = self.means[(layer, condition.pathway)]
                hooks += ReplacementHooks(layer, edges, condition.heads, lambda c, m=mean: m.to(c.dtype).expand_as(c),
                                          cache).hooks()
            elif condition.intervention == "resample":
                hooks += ReplacementHooks(layer, edges, condition.heads, lambda c, s=self.seed + batch_index:
                                          c[resample_permutation(len(c), s, c.device)], cache).hooks()
            else:
                check_intervention(condition.intervention)
        return hooks

    @torch.no_grad()
    def fit_means(self, batches: Iterable[Sequence[torch.Tensor]], conditions: Iterable[Condition]) -> None:
        """Mean pathway contribution per (layer, pathway) over clean runs on reference batches:
        [query_pos, head, d_head] each."""
        wanted = sorted({(layer, c.pathway) for c in conditions if c.intervention == "mean" for layer in c.layers})
        if not wanted:
            return
        sums: dict[tuple[int, str], torch.Tensor] = {}
        count = 0
        for inputs in batches:
            captured: dict[tuple[int, str], torch.Tensor] = {}
            hooks: list[Hook] = []
            for key in wanted:
                # An identity replacement that keeps each contribution it is shown.
                keep = lambda contribution, key=key: captured.setdefault(key, contribution)
                hooks += ReplacementHooks(key[0], self.edges(key[1]), None, keep,
                                          self._masks.setdefault((key[1], None, False), {})).hooks()
            self.model.run_with_hooks(*inputs, fwd_hooks=hooks)
            for key, value in captured.items():
                sums[key] = sums.get(key, 0) + value.double().sum(dim=0)
            count += len(inputs[0])
        self.means = {**self.means, **{key: (total / count).float() for key, total in sums.items()}}

    @torch.no_grad()
    def run_naive(self, inputs: Sequence[torch.Tensor], conditions: Sequence[Condition], batch_index: int = 0) -> list[torch.Tensor]:
        """Reference: one full `run_with_hooks` per condition. Logits [batch, class] per condition."""
        self.check(conditions)
        return [self.model.run_with_hooks(*inputs, fwd_hooks=self.hooks(c, batch_index)) for c in conditions]

    @torch.no_grad()
    def run_grid(self, inputs: Sequence[torch.Tensor], conditions: Sequence[Condition],
                 batch_index: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(clean logits [batch, class], logits per condition), sharing the computation below each
        condition's first intervened layer when the model runs in stages."""
        self.check(conditions)
        if not self.staged:
            return self.model(*inputs), self.run_naive(inputs, conditions, batch_index)
        model = self.model
        residual = [model.embed_stage(*inputs)]
        for layer in range(self.n_layers):
            residual.append(model.block_stage(layer, residual[-1]))
        clean = model.heads_stage(residual[-1])["main"]
        out = []
        for condition in conditions:
            first = min(condition.layers)
            with attached(model, self.hooks(condition, batch_index)):
                x = residual[first]
                for layer in range(first, self.n_layers):
                    x = model.block_stage(layer, x)
                out.append(model.heads_stage(x)["main"])
        return clean, out
