"""An independent reference for the intervention engine: pathway edges enumerated pair by pair, and
the hierarchical transformer's forward pass rewritten with explicit Python loops over heads, queries
and keys, in float64, with an optional edit (mask or replacement of a pathway's contribution) per
shared layer. Nothing here calls the engine or the models' attention code."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

Edges = list[list[bool]]  # [query][key]


def naive_edges(groups: Sequence[int], pathway: str, names: Sequence[str], mask_self: bool = False) -> Edges:
    """The pathway's edges over tokens with modality ids `groups` (0 = CLS), one pair at a time."""

    def modality(name: str) -> int:
        return 0 if name == "cls" else list(names).index(name) + 1

    def member(part: str, a: int, b: int) -> bool:
        if part == "uni":
            return a != 0 and b != 0 and a == b
        if part == "cross":
            return a != 0 and b != 0 and a != b
        if part == "cls":
            return a == 0 or b == 0
        if part == "relay":
            return a != 0 and b == 0
        if part == "readout":
            return a == 0 and b != 0
        if part == "all":
            return True
        source, target = (s.strip() for s in part.split("->"))
        return a == modality(source) and b == modality(target)

    parts = [p.strip() for p in pathway.split("+") if p.strip()]
    n = len(groups)
    return [[(i != j or mask_self) and any(member(p, int(groups[i]), int(groups[j])) for p in parts) for j in range(n)]
            for i in range(n)]


def as_tensor(edges: Edges) -> torch.Tensor:
    return torch.tensor(edges, dtype=torch.bool)


@dataclass
class Edit:
    """What happens at one shared layer: `mask` drops the edges (for the listed heads) before the
    softmax; `replace` swaps the edges' contribution Σ_k∈E p[q,k]·v[k] for replace(contribution)."""

    edges: Edges
    heads: Sequence[int]
    kind: str = "mask"
    replace: Callable[[torch.Tensor], torch.Tensor] | None = None


def layer_norm(x: torch.Tensor, norm) -> torch.Tensor:
    weight, bias = norm.weight[0], norm.bias[0]
    mean = x.mean(dim=-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + norm.eps) * weight + bias


def linear(x: torch.Tensor, layer) -> torch.Tensor:
    return x @ layer.weight[0] + layer.bias[0]


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def attention(x: torch.Tensor, attn, edit: Edit | None = None, record: Edges | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [batch, pos, d_model] (after ln1) -> (attention output [batch, pos, d_model], the contribution
    of the `record` (or replaced) edges [batch, pos, head, d_head])."""
    batch, n, d_model = x.shape
    n_heads = attn.n_heads
    d_head = d_model // n_heads
    qkv = linear(x, attn.qkv)  # columns laid out (three head d_head)

    def part(which: int, head: int) -> torch.Tensor:
        start = which * d_model + head * d_head
        return qkv[..., start : start + d_head]

    contribution_edges = edit.edges if edit is not None and edit.kind == "replace" else record
    z = torch.zeros(batch, n, n_heads, d_head, dtype=x.dtype)
    contribution = torch.zeros_like(z)
    for head in range(n_heads):
        q, k, v = part(0, head), part(1, head), part(2, head)
        masked = edit is not None and edit.kind == "mask" and head in edit.heads
        for i in range(n):
            keys = [j for j in range(n) if not (masked and edit.edges[i][j])]
            if not keys:
                continue  # every key masked: the query attends to nothing
            scores = torch.stack([(q[:, i] * k[:, j]).sum(-1) / math.sqrt(d_head) for j in keys])  # [key, batch]
            weights = torch.exp(scores - scores.max(dim=0).values)
            weights = weights / weights.sum(dim=0)
            for weight, j in zip(weights, keys):
                z[:, i, head] += weight[:, None] * v[:, j]
                if contribution_edges is not None and contribution_edges[i][j]:
                    contribution[:, i, head] += weight[:, None] * v[:, j]
    if edit is not None and edit.kind == "replace":
        replaced = z - contribution + edit.replace(contribution)
        for head in edit.heads:
            z[:, :, head] = replaced[:, :, head]
    return linear(z.reshape(batch, n, d_model), attn.out), contribution


def block(x: torch.Tensor, module, edit: Edit | None = None, record: Edges | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    attn_out, contribution = attention(layer_norm(x, module.ln1), module.attn, edit, record)
    x = x + attn_out
    x = x + linear(gelu(linear(layer_norm(x, module.ln2), module.mlp.fc_in)), module.mlp.fc_out)
    return x, contribution


@torch.no_grad()
def hierarchical_forward(model, inputs: Sequence[torch.Tensor], edits: dict[int, Edit] | None = None,
                         record: Edges | None = None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """CLS-head logits [batch, class] (float64) of a HierarchicalTransformer with `edits` per shared
    layer (0-based), and the contribution of the `record` edges at every shared layer."""
    model = copy.deepcopy(model).double()
    edits = edits or {}
    x = model.embed(tuple(t.double() for t in inputs))
    ids = model.token_modalities.tolist()
    # CLS skips the encoders; each modality's tokens run through its own encoder only.
    parts = [x[:, [0]]]
    for index, group in enumerate(model.config.groups, start=1):
        positions = [p for p, m in enumerate(ids) if m == index]
        assert positions == list(range(positions[0], positions[-1] + 1))
        y = x[:, positions]
        for encoder_block in model.encoders[group.module_name].blocks:
            y, _ = block(y, encoder_block)
        parts.append(y)
    x = torch.cat(parts, dim=1)
    recorded = {}
    for layer, shared in enumerate(model.blocks):
        x, recorded[layer] = block(x, shared, edits.get(layer), record)
    x = layer_norm(x, model.ln_final)
    return linear(x[:, 0], _Plain(model.head_cls)), recorded


class _Plain:
    """nn.Linear as a [1, d_in, d_out] weight, like GroupedLinear's."""

    def __init__(self, layer: torch.nn.Linear):
        self.weight, self.bias = layer.weight.T[None], layer.bias[None]
