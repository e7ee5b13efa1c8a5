"""The intervention engine: run a grid of conditions on a model and return logits per condition.

Works on any HookedRootModule with `blocks.{l}.attn.hook_attn_scores`, given a token -> group
vector (0 = CLS). Models that also run in stages (`embed_stage`, `block_stage`, `heads_stage`, as
isoprobe's transformers do) get a batched grid: the clean forward is computed once per batch and
each condition restarts from the residual stream at its first intervened layer, so the embedding,
the modality encoders and the layers below are shared; layers without an intervention stay on the
fused attention path. The result equals a loop of one `run_with_hooks` per condition.

A condition that touches nothing (no head, or no edge the model lets exist) runs no hook, and one
null by construction returns the clean logits: "nothing changed" is then exact, not the rounding
difference between the fused and the explicit attention path (see `InterventionEngine.runs`).

The engine always evaluates in eval mode (no dropout), restoring the caller's mode afterwards.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Literal, Sequence, get_args

import torch

from isoprobe.engine.interventions import INTERVENTIONS, BatchState, ContributionKey, Hook, Intervention, ReplacementHooks
from isoprobe.engine.interventions import check_intervention
from isoprobe.models.pathways import Pathway
from isoprobe.errors import ConfigError
from isoprobe.layersets import format_layers
from isoprobe.models.components.staged import residual_stream, run_from
from isoprobe.models.modes import evaluating

Mode = Literal["single", "cumulative", "joint"]
MODES: tuple[str, ...] = get_args(Mode)
_SCORES = re.compile(r"^blocks\.(\d+)\.attn\.hook_attn_scores$")


@dataclass(frozen=True)
class Condition:
    """One intervention: a pathway at some shared layers (0-based) and heads; `draw` numbers the
    donor draw of a `resample` condition (0 for the others); `centre`: the layer a knockout window is
    centred on (None outside window grids; two centres can clip to the same layers)."""

    layers: tuple[int, ...]
    pathway: str
    heads: tuple[int, ...] | None = None
    intervention: str = "mask"
    draw: int = 0
    centre: int | None = None

    @property
    def layer_label(self) -> str:
        """1-based, as the paper counts: "L3", "L1-L5", "L2,L4" (`isoprobe.layersets`)."""
        return format_layers(self.layers)

    @property
    def head_label(self) -> str:
        return "all" if self.heads is None else ",".join(str(h) for h in self.heads)

    @property
    def row(self) -> "Condition":
        """The condition without its draw: what one row of a table reports, over its draws."""
        return replace(self, draw=0)


def build_conditions(mode: str, layers: Sequence[int], pathways: Sequence[str], heads: tuple[int, ...] | None = None,
                     intervention: str = "mask", draws: int = 1, window: int = 0, n_layers: int | None = None) -> list[Condition]:
    """single: each layer alone, then all listed layers together; cumulative: the first 1, 2, … layers;
    joint: all listed layers together. One condition per pathway for each layer set, and for
    `resample` one per donor draw (draws > 1 only for resample).

    window K > 0 (mode single only): instead, for each listed layer the K consecutive layers centred on it
    (from l − ⌊(K−1)/2⌋ to l + ⌈(K−1)/2⌉: an even window reaches one layer further up), clipped to the
    model's `n_layers` — the knockout windows of vision-language analyses (Geva et al. 2023)."""
    check_intervention(intervention)
    if draws < 1 or (draws > 1 and not INTERVENTIONS[intervention].takes_donors):
        raise ConfigError("draws", draws, "a number of donor draws ≥ 1, above 1 only for an intervention that takes "
                          f"donors ({', '.join(n for n, s in INTERVENTIONS.items() if s.takes_donors)})")
    layers = tuple(sorted(layers))
    if window:
        if mode != "single":
            raise ConfigError("window", window, "a window is centred on each listed layer: use mode single")
        if n_layers is None:
            raise ConfigError("n_layers", n_layers, "a window is clipped to the model's layers: give their number")
        reach = (window - 1) // 2, window // 2
        return [Condition(tuple(range(max(0, layer - reach[0]), min(n_layers, layer + reach[1] + 1))), pathway, heads,
                          intervention, draw, centre=layer)
                for layer in layers for pathway in pathways for draw in range(draws)]
    if mode == "single":
        sets = [(layer,) for layer in layers] + ([layers] if len(layers) > 1 else [])
    elif mode == "cumulative":
        sets = [layers[: k + 1] for k in range(len(layers))]
    elif mode == "joint":
        sets = [layers]
    else:
        raise ConfigError("mode", mode, f"choose one of {', '.join(MODES)}")
    return [Condition(layer_set, pathway, heads, intervention, draw)
            for layer_set in sets for pathway in pathways for draw in range(draws)]


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


def head_count(model: torch.nn.Module) -> int:
    """Attention heads per shared layer, from the configuration (TransformerLens `cfg.n_heads`,
    isoprobe `config.n_heads`) or else from the TransformerLens weight layout of the first layer's
    `W_Q` [head, d_model, d_head]."""
    for config_name in ("cfg", "config"):
        n_heads = getattr(getattr(model, config_name, None), "n_heads", None)
        if isinstance(n_heads, int) and n_heads > 0:
            return n_heads
    try:
        return int(model.get_submodule("blocks.0.attn").W_Q.shape[0])
    except (AttributeError, IndexError):
        raise ConfigError("model", type(model).__name__, "the head count is unknown: give the model cfg.n_heads, "
                          "config.n_heads or blocks.0.attn.W_Q [head, d_model, d_head]") from None


def is_staged(model: torch.nn.Module) -> bool:
    """Whether the model runs in stages (`embed_stage`, `block_stage`, `heads_stage`), so work below
    a layer can be computed once and shared."""
    return all(hasattr(model, name) for name in ("embed_stage", "block_stage", "heads_stage"))


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


@dataclass
class GridRun:
    """What `run_grid` returns for one batch. logits: [batch, class] (for a condition null by
    construction, the `clean` tensor itself); activations: hook name -> the activation that hook
    point saw (a layer below a condition's first intervened layer keeps its clean value: it is the
    same computation; a condition that touches nothing keeps them all)."""

    clean: torch.Tensor
    logits: list[torch.Tensor]
    clean_activations: dict[str, torch.Tensor] = field(default_factory=dict)
    activations: list[dict[str, torch.Tensor]] = field(default_factory=list)


class InterventionEngine:
    def __init__(self, model: torch.nn.Module, token_groups: torch.Tensor | Sequence[int] | None = None,
                 modality_names: tuple[str, ...] | None = None, mask_self: bool = False):
        self.model = model
        self.n_layers = attention_layers(model)
        self.token_groups = torch.as_tensor(token_groups if token_groups is not None else model.token_modalities).long()
        self.modality_names = tuple(modality_names if modality_names is not None else model.modality_names)
        self.mask_self = mask_self
        self.staged = is_staged(model)
        self.strategies: dict[str, Intervention] = {}
        self._edges: dict[str, torch.Tensor] = {}
        self._reach_of: dict[str, tuple[bool, bool]] = {}  # see `_reach`
        # per (pathway, heads, hook kind): the masks built on each device
        self._masks: dict[tuple[str, tuple[int, ...] | None, str], dict] = {}

    @property
    def n_heads(self) -> int:
        return head_count(self.model)

    def strategy(self, name: str) -> Intervention:
        """The engine's instance of intervention `name` (it holds what that intervention fitted)."""
        if name not in self.strategies:
            self.strategies[name] = INTERVENTIONS[check_intervention(name)]()
        return self.strategies[name]

    def edges(self, pathway: str) -> torch.Tensor:
        """Boolean [query_pos, key_pos] of the pathway's edges."""
        if pathway not in self._edges:
            self._edges[pathway] = Pathway(pathway).edges(self.token_groups, self.modality_names, self.mask_self)
        return self._edges[pathway]

    def mask_cache(self, pathway: str, heads: tuple[int, ...] | None, kind: str) -> dict:
        return self._masks.setdefault((pathway, heads, kind), {})

    def check(self, conditions: Iterable[Condition]) -> None:
        for condition in conditions:
            bad = [layer + 1 for layer in condition.layers if not 0 <= layer < self.n_layers]
            if bad:
                raise ConfigError("layers", bad, f"the model has shared layers 1–{self.n_layers}")
            self.edges(condition.pathway)
            self.strategy(condition.intervention).check(self, condition)

    def _reach(self, pathway: str) -> tuple[bool, bool]:
        """(whether the pathway holds an edge the model lets exist, whether one of those edges lies in a
        query row the prediction head reads), computed once per pathway. Models that do not say which
        edges exist (`attention_edges`) or which positions the head reads (`prediction_positions`) are
        taken to allow all edges and read all positions."""
        if pathway not in self._reach_of:
            edges = self.edges(pathway)
            allowed = getattr(self.model, "attention_edges", None)
            if allowed is not None:
                edges = edges & allowed.to(edges.device)
            rows = edges.any(dim=1)  # [query_pos]: queries that lose or change a key
            read = getattr(self.model, "prediction_positions", None)
            read_rows = rows if read is None else rows & read.to(rows.device)
            self._reach_of[pathway] = (bool(rows.any()), bool(read_rows.any()))
        return self._reach_of[pathway]

    def touches_nothing(self, condition: Condition) -> bool:
        """True when the condition selects no head, or no edge the model lets exist (the mmt's
        block-diagonal attention has no `cross` edge; a model of one modality has none at all): its
        forward pass is the clean one, so the engine runs no hook for it and hands back the clean
        logits and activations themselves, bit for bit. (Running it would only move its layers from
        the fused to the explicit attention path: rounding, on the order of 1e-6, never an effect.)"""
        return condition.heads == () or not self._reach(condition.pathway)[0]

    def null_by_construction(self, condition: Condition) -> bool:
        """True when the condition cannot change the prediction, whatever the weights: it touches
        nothing (`touches_nothing`), or it touches edges at the last layer only, and only in query rows
        the prediction head never reads (the hierarchical model's CLS head reads the CLS row alone).
        The engine returns the clean logits for such a condition; it still runs it where activations
        are captured (they do change at the positions the head does not read)."""
        if self.touches_nothing(condition):
            return True
        exists, read = self._reach(condition.pathway)
        return not any(read if layer == self.n_layers - 1 else exists for layer in condition.layers)

    def runs(self, condition: Condition, activations: bool = False) -> bool:
        """Whether the engine runs the condition's forward pass: not when it touches nothing, nor when
        it is null by construction and only its logits are wanted (they are the clean ones)."""
        return not self.touches_nothing(condition) and (activations or not self.null_by_construction(condition))

    def hooks(self, condition: Condition, state: BatchState | None = None) -> list[Hook]:
        """TransformerLens forward hooks that apply `condition` (state: the batch's donors, for resample)."""
        strategy = self.strategy(condition.intervention)
        return [hook for layer in condition.layers for hook in strategy.hooks(self, condition, layer, state)]

    def prepare_batch(self, inputs: Sequence[torch.Tensor], conditions: Sequence[Condition],
                      donors: Sequence[Sequence[torch.Tensor]] = ()) -> BatchState:
        """Check the conditions and do their interventions' per-batch work (the donors' clean
        contributions for resample): the state `hooks` needs to apply them to these inputs. A
        condition that touches nothing needs none (it never runs)."""
        self.check(conditions)
        state = BatchState(inputs, donors)
        acting = [c for c in conditions if not self.touches_nothing(c)]
        for name in dict.fromkeys(c.intervention for c in acting):
            self.strategy(name).prepare(self, acting, state)
        return state

    @torch.no_grad()
    def clean_contributions(self, inputs: Sequence[torch.Tensor], keys: Sequence[ContributionKey]) -> dict[ContributionKey, torch.Tensor]:
        """The clean contribution of each (layer, pathway) on these inputs: [batch, query_pos, head, d_head]."""
        if not keys:
            return {}
        captured: dict[ContributionKey, torch.Tensor] = {}
        hooks: list[Hook] = []
        for key in keys:
            # An identity replacement that keeps each contribution it is shown.
            keep = lambda contribution, key=key: captured.setdefault(key, contribution)
            hooks += ReplacementHooks(key[0], self.edges(key[1]), None, keep,
                                      self.mask_cache(key[1], None, "replacement")).hooks()
        with evaluating(self.model), attached(self.model, hooks):
            if self.staged:  # no need to run above the highest layer asked for
                residual_stream(self.model, inputs, max(layer for layer, _ in keys) + 1)
            else:
                self.model(*inputs)
        return captured

    @torch.no_grad()
    def fit(self, batches: Iterable[Sequence[torch.Tensor]], conditions: Sequence[Condition]) -> None:
        """Fit what the conditions' interventions need from clean runs on reference batches (the
        `mean` intervention's mean contributions)."""
        with evaluating(self.model):
            for name in dict.fromkeys(c.intervention for c in conditions):
                self.strategy(name).fit(self, batches, conditions)

    def _capture(self, names: Sequence[str], store: dict) -> list[Hook]:
        unknown = [name for name in names if name not in self.model.hook_dict]
        if unknown:
            raise ConfigError("capture", unknown, "not hook points of this model (see model.hook_dict)")

        def keep(value, hook):
            store[hook.name] = value
        return [(name, keep) for name in names]

    @torch.no_grad()
    def run_naive(self, inputs: Sequence[torch.Tensor], conditions: Sequence[Condition],
                  donors: Sequence[Sequence[torch.Tensor]] = ()) -> list[torch.Tensor]:
        """Reference: one full `run_with_hooks` per condition. Logits [batch, class] per condition; a
        condition null by construction gets the clean logits (one plain forward, shared)."""
        with evaluating(self.model):
            state = self.prepare_batch(inputs, conditions, donors)
            clean: list[torch.Tensor] = []
            logits = []
            for condition in conditions:
                if self.runs(condition):
                    logits.append(self.model.run_with_hooks(*inputs, fwd_hooks=self.hooks(condition, state)))
                else:
                    if not clean:
                        clean.append(self.model(*inputs))
                    logits.append(clean[0])
            return logits

    @torch.no_grad()
    def run_grid(self, inputs: Sequence[torch.Tensor], conditions: Sequence[Condition],
                 donors: Sequence[Sequence[torch.Tensor]] = (), capture: Sequence[str] = ()) -> GridRun:
        """Clean logits and logits per condition, sharing the computation below each condition's first
        intervened layer when the model runs in stages.

        inputs: one [batch, time, channel] tensor per modality; donors: for `resample`, the donor
        windows of each draw, row-aligned with `inputs`; capture: hook names whose activations to
        return per condition (e.g. `blocks.4.hook_resid_post`, `hook_cls`). A condition null by
        construction gets the clean logits tensor itself (and one that touches nothing the clean
        activations too): see `runs`."""
        model = self.model
        with evaluating(model):
            state = self.prepare_batch(inputs, conditions, donors)
            clean_activations: dict[str, torch.Tensor] = {}
            with attached(model, self._capture(capture, clean_activations)):
                if self.staged:
                    residual = residual_stream(model, inputs, self.n_layers)
                    clean = run_from(model, self.n_layers, residual[-1], self.n_layers)
                else:
                    clean = model(*inputs)
            logits, activations = [], []
            for condition in conditions:
                seen: dict[str, torch.Tensor] = {}
                out = clean
                if self.runs(condition, activations=bool(capture)):
                    with attached(model, self.hooks(condition, state) + self._capture(capture, seen)):
                        if self.staged:
                            first = min(condition.layers)
                            out = run_from(model, first, residual[first], self.n_layers)
                        else:
                            out = model(*inputs)
                logits.append(clean if self.null_by_construction(condition) else out)
                activations.append({**clean_activations, **seen} if capture else {})
        return GridRun(clean, logits, clean_activations, activations)
