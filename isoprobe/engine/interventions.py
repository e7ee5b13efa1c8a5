"""Interventions on attention pathways: small strategies in a registry, each returning TransformerLens
hooks for one condition at one layer (DESIGN §4).

mask      IsoNet logit masking: the pathway's score entries set to −inf before the softmax; a
          query row left with no key attends to nothing (see `safe_softmax`).
mean      the pathway's contribution to the attention output, Σ_k∈P(q) pattern[q,k]·v[k], replaced
          by its mean over a reference set (per layer, head and query position); fitted once.
resample  that contribution replaced by a donor window's clean contribution at the same layer
          (donors: `isoprobe.engine.donors`); computed per batch from the donors' inputs.

The replacement interventions separate "the pathway carries signal" from "masking pushed the
activations off-distribution". A new intervention (a gate, dropout) is a subclass registered with
`@register` that says what it needs (`needs_reference`: a fit on reference windows; `takes_donors`:
donor windows, one set per draw): the grid driver (`isoprobe.engine.driver`) provides both, and the
engine only calls `fit`, `prepare` and `hooks`; `ablate`, `shift` and the CLI pick it up by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar, Iterable, Sequence

import torch
from einops import einsum

from isoprobe.errors import ConfigError

if TYPE_CHECKING:
    from isoprobe.engine.grid import Condition, InterventionEngine

Hook = tuple[str, Callable]
ContributionKey = tuple[int, str]  # (layer, pathway)


@dataclass
class BatchState:
    """What the interventions of one batch share: the inputs, the donor inputs of each draw
    (aligned with the inputs, row by row), and what `prepare` computed from them."""

    inputs: Sequence[torch.Tensor]
    donors: Sequence[Sequence[torch.Tensor]] = ()
    contributions: dict[tuple[int, int, str], torch.Tensor] = field(default_factory=dict)  # (draw, layer, pathway)


class Intervention:
    """One way to intervene on a pathway's edges. Subclasses set `name` and implement `hooks`, and say
    what the driver must provide: reference windows for `fit`, donor windows for `prepare`."""

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False
    takes_donors: ClassVar[bool] = False  # also: several draws per condition make sense

    def check(self, engine: "InterventionEngine", condition: "Condition") -> None:
        """Refuse a condition this intervention cannot run yet (before any work)."""

    def fit(self, engine: "InterventionEngine", batches: Iterable[Sequence[torch.Tensor]],
            conditions: Sequence["Condition"]) -> None:
        """Optional: statistics over reference batches of clean runs, once."""

    def prepare(self, engine: "InterventionEngine", conditions: Sequence["Condition"], state: BatchState) -> None:
        """Optional: per-batch work shared by this intervention's conditions."""

    def hooks(self, engine: "InterventionEngine", condition: "Condition", layer: int, state: BatchState | None) -> list[Hook]:
        raise NotImplementedError


INTERVENTIONS: dict[str, type[Intervention]] = {}


def register(cls: type[Intervention]) -> type[Intervention]:
    INTERVENTIONS[cls.name] = cls
    return cls


def check_intervention(name: str) -> str:
    if name not in INTERVENTIONS:
        raise ConfigError("intervention", name, f"choose one of {', '.join(INTERVENTIONS)}")
    return name


def head_mask(heads: tuple[int, ...] | None, n_heads: int, device) -> torch.Tensor:
    """Boolean [head]: the heads an intervention touches."""
    selected = torch.zeros(n_heads, dtype=torch.bool, device=device)
    selected[list(heads) if heads is not None else slice(None)] = True
    return selected


def score_mask_hook(edges: torch.Tensor, heads: tuple[int, ...] | None, cache: dict | None = None) -> Callable:
    """A hook for `hook_attn_scores` [batch, head, q, k] setting the selected edges to −inf. The
    [1, head, q, k] mask is built once per device and head count and kept in `cache` (pass the same
    dict across calls: copying a CPU mask to a GPU on every call synchronises the device)."""
    cache = {} if cache is None else cache

    def hook(scores: torch.Tensor, hook=None) -> torch.Tensor:
        key = (scores.device, scores.shape[1])
        if key not in cache:
            cache[key] = edges.to(scores.device)[None, None] & head_mask(heads, scores.shape[1], scores.device)[None, :, None, None]
        return scores.masked_fill(cache[key], float("-inf"))

    return hook


def pathway_contribution(pattern: torch.Tensor, v: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Σ_k∈P(q) pattern[b,h,q,k]·v[b,k,h,:]: the pathway's part of hook_z, [batch, q, head, d_head]."""
    return einsum(pattern * edges.to(pattern.dtype), v, "batch head q k, batch k head d_head -> batch q head d_head")


@dataclass
class ReplacementHooks:
    """Hooks on hook_pattern and hook_v (to read them) and hook_z (to replace the pathway's part)."""

    layer: int
    edges: torch.Tensor  # [q, k] bool
    heads: tuple[int, ...] | None
    replacement: Callable[[torch.Tensor], torch.Tensor]  # contribution [batch, q, head, d_head] -> replacement
    # (device, head count) -> (edges, head mask) there: share one dict across calls, since copying
    # the CPU masks to a GPU on every call synchronises the device.
    cache: dict = field(default_factory=dict)
    seen: dict = field(default_factory=dict)

    def hooks(self) -> list[Hook]:
        prefix = f"blocks.{self.layer}.attn"

        def keep(name: str):
            def hook(value: torch.Tensor, hook=None) -> None:
                self.seen[name] = value
            return hook

        def replace(z: torch.Tensor, hook=None) -> torch.Tensor:
            key = (z.device, z.shape[2])
            if key not in self.cache:
                self.cache[key] = (self.edges.to(z.device), head_mask(self.heads, z.shape[2], z.device)[None, None, :, None])
            edges, heads = self.cache[key]
            contribution = pathway_contribution(self.seen.pop("pattern"), self.seen.pop("v"), edges)
            return torch.where(heads, z - contribution + self.replacement(contribution), z)

        return [(f"{prefix}.hook_pattern", keep("pattern")), (f"{prefix}.hook_v", keep("v")), (f"{prefix}.hook_z", replace)]


@register
class Mask(Intervention):
    name = "mask"

    def hooks(self, engine, condition, layer, state=None):
        cache = engine.mask_cache(condition.pathway, condition.heads, "scores")
        return [(f"blocks.{layer}.attn.hook_attn_scores", score_mask_hook(engine.edges(condition.pathway), condition.heads, cache))]


class Replacement(Intervention):
    """Replace the pathway's contribution to hook_z by `replacement(...)` of it."""

    def replacement(self, engine, condition, layer, state) -> Callable[[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def hooks(self, engine, condition, layer, state=None):
        cache = engine.mask_cache(condition.pathway, condition.heads, "replacement")
        replacement = self.replacement(engine, condition, layer, state)
        return ReplacementHooks(layer, engine.edges(condition.pathway), condition.heads, replacement, cache).hooks()


def _keys(conditions: Iterable["Condition"], name: str) -> list[ContributionKey]:
    return sorted({(layer, c.pathway) for c in conditions if c.intervention == name for layer in c.layers})


@register
class Mean(Replacement):
    name = "mean"
    needs_reference = True

    def __init__(self) -> None:
        self.means: dict[ContributionKey, torch.Tensor] = {}  # [query_pos, head, d_head] each

    def check(self, engine, condition):
        if any((layer, condition.pathway) not in self.means for layer in condition.layers):
            raise ConfigError("intervention", "mean", "reference means are missing: call the engine's fit() first")

    def fit(self, engine, batches, conditions):
        """Mean pathway contribution per (layer, pathway) over clean runs of the reference batches."""
        wanted = _keys(conditions, self.name)
        if not wanted:
            return
        sums: dict[ContributionKey, torch.Tensor] = {}
        count = 0
        for inputs in batches:
            for key, value in engine.clean_contributions(inputs, wanted).items():
                sums[key] = sums.get(key, 0) + value.double().sum(dim=0)
            count += len(inputs[0])
        if not count:
            raise ConfigError("reference", "no windows", "the mean intervention needs reference windows")
        self.means.update({key: (total / count).float() for key, total in sums.items()})

    def replacement(self, engine, condition, layer, state):
        mean = self.means[(layer, condition.pathway)]
        return lambda contribution: mean.to(contribution.dtype).expand_as(contribution)


@register
class Resample(Replacement):
    name = "resample"
    takes_donors = True

    def prepare(self, engine, conditions, state):
        """Each draw's donors run clean once; at every intervened layer the donor's clean contribution
        is used (not one already changed by the condition's intervention at a lower layer)."""
        for draw in sorted({c.draw for c in conditions if c.intervention == self.name}):
            if draw >= len(state.donors):
                raise ConfigError("donors", f"{len(state.donors)} draw(s)", f"resample draw {draw} needs donor windows: "
                                  "pass donors= to run_grid or run_naive (one list of inputs per draw)")
            if len(state.donors[draw][0]) != len(state.inputs[0]):
                raise ConfigError("donors", len(state.donors[draw][0]), f"need one donor per window ({len(state.inputs[0])})")
            wanted = _keys((c for c in conditions if c.draw == draw), self.name)
            for (layer, pathway), value in engine.clean_contributions(state.donors[draw], wanted).items():
                state.contributions[(draw, layer, pathway)] = value

    def replacement(self, engine, condition, layer, state):
        if state is None or (condition.draw, layer, condition.pathway) not in state.contributions:
            raise ConfigError("intervention", "resample", "needs donor inputs: pass donors= to run_grid or run_naive")
        donor = state.contributions[(condition.draw, layer, condition.pathway)]
        return lambda contribution: donor.to(contribution.dtype)
