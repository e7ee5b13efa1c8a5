"""Which attention edges an intervention touches: pathways, layers and heads (DESIGN §4).

Pathways over tokens grouped by modality (id 0 = CLS):
  uni     query and key in the same modality, neither CLS
  cross   query and key in different modalities, neither CLS
  cls     every edge into or out of CLS
  all     every edge
  a->b    queries in modality a reading keys in modality b (directed)
Comma-separated names combine (union). Self edges (a token attending to itself) stay unless
`mask_self` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from isoprobe.errors import ConfigError

NAMED = ("uni", "cross", "cls", "all")
_DIRECTED = re.compile(r"^\s*([^\s>-][^>]*?)\s*->\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Pathway:
    """A set of attention edges, as written on the command line."""

    name: str

    def edges(self, token_groups: torch.Tensor, modality_names: tuple[str, ...], mask_self: bool = False) -> torch.Tensor:
        """Boolean [query_pos, key_pos]: True where the edge belongs to the pathway."""
        q, k = token_groups[:, None], token_groups[None, :]
        selected = torch.zeros(len(token_groups), len(token_groups), dtype=torch.bool, device=token_groups.device)
        for part in split_pathways(self.name):
            selected |= _edges_of(part, q, k, modality_names)
        if not mask_self:
            selected &= ~torch.eye(len(token_groups), dtype=torch.bool, device=token_groups.device)
        return selected


def split_pathways(spec: str) -> list[str]:
    return [p.strip() for p in spec.split(",") if p.strip()]


def _modality_id(name: str, modality_names: tuple[str, ...]) -> int:
    if name == "cls":
        return 0
    if name not in modality_names:
        raise ConfigError("--pathway", name, f"unknown modality; this model has {', '.join(modality_names)} (and cls)")
    return modality_names.index(name) + 1


def _edges_of(part: str, q: torch.Tensor, k: torch.Tensor, modality_names: tuple[str, ...]) -> torch.Tensor:
    not_cls = (q != 0) & (k != 0)
    if part == "uni":
        return not_cls & (q == k)
    if part == "cross":
        return not_cls & (q != k)
    if part == "cls":
        return (q == 0) | (k == 0)
    if part == "all":
        return torch.ones_like(not_cls)
    match = _DIRECTED.match(part)
    if match:
        source, target = (_modality_id(m, modality_names) for m in match.groups())
        return (q == source) & (k == target)
    pairs = ", ".join(f"{a}->{b}" for a in modality_names for b in modality_names if a != b)
    raise ConfigError("--pathway", part, f"choose from {', '.join(NAMED)} or a directed pair such as {pairs or 'a->b'}")


def parse_pathway(spec: str, modality_names: tuple[str, ...]) -> Pathway:
    """Validate a pathway specification (e.g. `cross`, `uni,cls`, `emg->acc`)."""
    parts = split_pathways(spec)
    if not parts:
        raise ConfigError("--pathway", spec, f"choose from {', '.join(NAMED)} or a directed pair such as a->b")
    dummy = torch.arange(len(modality_names) + 1)
    for part in parts:
        _edges_of(part, dummy[:, None], dummy[None, :], modality_names)
    return Pathway(",".join(parts))


def parse_layers(spec: str, n_layers: int) -> tuple[int, ...]:
    """`1-5`, `2,4`, `1-2,5` or `all` (1-based, as the paper counts) -> 0-based layer indices."""
    if spec.strip() == "all":
        return tuple(range(n_layers))
    layers: list[int] = []
    try:
        for part in spec.split(","):
            if "-" in part:
                first, last = (int(x) for x in part.split("-"))
                layers.extend(range(first, last + 1))
            else:
                layers.append(int(part))
    except ValueError:
        raise ConfigError("--layers", spec, f"write layers as 1-{n_layers}, 2,4 or all") from None
    bad = [layer for layer in layers if not 1 <= layer <= n_layers]
    if bad or not layers:
        raise ConfigError("--layers", spec, f"layers count from 1 to {n_layers} (the model's shared stage has {n_layers})")
    return tuple(sorted(set(layer - 1 for layer in layers)))


def parse_heads(spec: str, n_heads: int) -> tuple[int, ...] | None:
    """`all` -> None (every head); `0,2` -> those heads (0-based, as TransformerLens numbers them)."""
    if spec.strip() == "all":
        return None
    try:
        heads = tuple(sorted({int(h) for h in spec.split(",")}))
    except ValueError:
        raise ConfigError("--heads", spec, f"write all or head numbers 0–{n_heads - 1}, e.g. 0,2") from None
    if any(not 0 <= h < n_heads for h in heads):
        raise ConfigError("--heads", spec, f"heads are numbered 0–{n_heads - 1}")
    return heads
