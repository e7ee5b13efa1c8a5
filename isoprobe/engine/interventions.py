"""Interventions on attention pathways, each a small strategy that returns TransformerLens hooks.

mask      IsoNet logit masking: the pathway's score entries set to −inf before the softmax; a
          query row left with no key attends to nothing (see `safe_softmax`).
mean      the pathway's contribution to the attention output, Σ_k∈P(q) pattern[q,k]·v[k], replaced
          by its mean over a reference set (per layer, head and query position).
resample  that contribution replaced by its value on another window of the batch.

The replacement interventions separate "the pathway carries signal" from "masking pushed the
activations off-distribution" (DESIGN §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from einops import einsum

from isoprobe.errors import ConfigError

INTERVENTIONS = ("mask", "mean", "resample")
Hook = tuple[str, Callable]


def _head_mask(heads: tuple[int, ...] | None, n_heads: int, device) -> torch.Tensor:
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
            cache[key] = edges.to(scores.device)[None, None] & _head_mask(heads, scores.shape[1], scores.device)[None, :, None, None]
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
                self.cache[key] = (self.edges.to(z.device), _head_mask(self.heads, z.shape[2], z.device)[None, None, :, None])
            edges, heads = self.cache[key]
            contribution = pathway_contribution(self.seen.pop("pattern"), self.seen.pop("v"), edges)
            return torch.where(heads, z - contribution + self.replacement(contribution), z)

        return [(f"{prefix}.hook_pattern", keep("pattern")), (f"{prefix}.hook_v", keep("v")), (f"{prefix}.hook_z", replace)]


def resample_permutation(batch: int, seed: int, device) -> torch.Tensor:
    """Each window takes the contribution of another window of its batch (a derangement when batch > 1)."""
    if batch < 2:
        return torch.zeros(batch, dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(seed)
    shift = int(torch.randint(1, batch, (1,), generator=generator))  # drawn on the CPU, the same on every device
    return (torch.arange(batch, device=device) + shift) % batch


def check_intervention(name: str) -> str:
    if name not in INTERVENTIONS:
        raise ConfigError("--intervention", name, f"choose one of {', '.join(INTERVENTIONS)}")
    return name
