"""Which attention edges an intervention touches: pathways, layers and heads (DESIGN §4).

Pathways over tokens grouped by modality (id 0 = CLS):
  uni      query and key in the same modality, neither CLS
  cross    query and key in different modalities, neither CLS: direct token-to-token edges only
  relay    every modality token reading CLS (how a modality hears, one layer late, what CLS read
           from the other modality)
  readout  CLS reading modality tokens
  cls      every edge into or out of CLS (relay, readout and CLS's own edge)
  all      every edge
  a->b     queries in modality a reading keys in modality b (directed; `cls` names the CLS token)
`+` joins pathways into one condition (`cross+relay`: with it masked in every layer each modality's
token states depend on that modality's input alone); on the command line a comma separates rows, and
the row `pairs` stands for one row per directed pair of distinct modalities (emg->acc, acc->emg).
Self edges (a token attending to itself) stay unless `mask_self` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from isoprobe.errors import ConfigError

NAMED = ("uni", "cross", "relay", "readout", "cls", "all")
JOIN = "+"
_DIRECTED = re.compile(r"^\s*([^\s>-][^>]*?)\s*->\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Pathway:
    """A set of attention edges, as written on the command line (`cross`, `cross+relay`, `emg->acc`)."""

    name: str

    @property
    def parts(self) -> list[str]:
        return [p.strip() for p in self.name.split(JOIN) if p.strip()]

    def edges(self, token_groups: torch.Tensor, modality_names: tuple[str, ...], mask_self: bool = False) -> torch.Tensor:
        """Boolean [query_pos, key_pos]: True where the edge belongs to the pathway."""
        q, k = token_groups[:, None], token_groups[None, :]
        selected = torch.zeros(len(token_groups), len(token_groups), dtype=torch.bool, device=token_groups.device)
        for part in self.parts:
            selected |= _edges_of(part, q, k, modality_names)
        if not mask_self:
            selected &= ~torch.eye(len(token_groups), dtype=torch.bool, device=token_groups.device)
        return selected


def split_rows(spec: str) -> list[str]:
    """`uni,cross+relay` -> ["uni", "cross+relay"]: one condition per comma-separated entry."""
    return [p.strip() for p in spec.split(",") if p.strip()]


PAIRS = "pairs"


def pathway_rows(spec: str, modality_names: tuple[str, ...]) -> list[Pathway]:
    """Each comma-separated row of `spec`, parsed; the row `pairs` becomes every directed pair of distinct
    modalities, in the modalities' order (emg->acc, acc->emg)."""
    rows = []
    for row in split_rows(spec):
        names = [f"{a}->{b}" for a in modality_names for b in modality_names if a != b] if row == PAIRS else [row]
        rows += [parse_pathway(name, modality_names) for name in names]
    return rows


def _modality_id(name: str, modality_names: tuple[str, ...]) -> int:
    if name == "cls":
        return 0
    if name not in modality_names:
        raise ConfigError("pathway", name, f"unknown modality; this model has {', '.join(modality_names)} (and cls)")
    return modality_names.index(name) + 1


def _edges_of(part: str, q: torch.Tensor, k: torch.Tensor, modality_names: tuple[str, ...]) -> torch.Tensor:
    tokens_q, tokens_k = q != 0, k != 0
    if part == "uni":
        return tokens_q & tokens_k & (q == k)
    if part == "cross":
        return tokens_q & tokens_k & (q != k)
    if part == "relay":
        return tokens_q & ~tokens_k
    if part == "readout":
        return ~tokens_q & tokens_k
    if part == "cls":
        return ~tokens_q | ~tokens_k
    if part == "all":
        return torch.ones_like(tokens_q & tokens_k)
    match = _DIRECTED.match(part)
    if match:
        source, target = (_modality_id(m, modality_names) for m in match.groups())
        return (q == source) & (k == target)
    pairs = ", ".join(f"{a}->{b}" for a in modality_names for b in modality_names if a != b)
    raise ConfigError("pathway", part, f"choose from {', '.join(NAMED)} or a directed pair such as {pairs or 'a->b'}, "
                      f"joined with {JOIN} for one condition (e.g. cross{JOIN}relay)")


def parse_pathway(spec: str, modality_names: tuple[str, ...]) -> Pathway:
    """Validate one condition's pathway (e.g. `cross`, `cross+relay`, `emg->acc`)."""
    if "," in spec:
        raise ConfigError("pathway", spec, f"one condition joins pathways with {JOIN} (cross{JOIN}relay); "
                          "a comma separates rows")
    pathway = Pathway(JOIN.join(p.strip() for p in spec.split(JOIN)))
    if not pathway.parts or len(pathway.parts) != len(spec.split(JOIN)):
        raise ConfigError("pathway", spec, f"choose from {', '.join(NAMED)} or a directed pair such as a->b, "
                          f"joined with {JOIN}")
    dummy = torch.arange(len(modality_names) + 1)
    for part in pathway.parts:
        _edges_of(part, dummy[:, None], dummy[None, :], modality_names)
    return pathway


def parse_heads(spec: str, n_heads: int) -> tuple[int, ...] | None:
    """`all` -> None (every head); `0,2` -> those heads (0-based, as TransformerLens numbers them)."""
    if spec.strip() == "all":
        return None
    try:
        heads = tuple(sorted({int(h) for h in spec.split(",")}))
    except ValueError:
        raise ConfigError("heads", spec, f"write all or head numbers 0–{n_heads - 1}, e.g. 0,2") from None
    if any(not 0 <= h < n_heads for h in heads):
        raise ConfigError("heads", spec, f"heads are numbered 0–{n_heads - 1}")
    return heads
