"""Attention attribution (Hao et al., "Self-Attention Attribution: Interpreting Information
Interactions Inside Transformer", AAAI 2021; DESIGN §5): which attention edges, in which shared
layer, the target-class logit F rests on.

For layer l with attention pattern A_l [batch, head, q, k], Hao et al.'s Eq. 2 is

    Attr(A_l) = A_l ⊙ ∫_0^1 ∂F(α·A_l)/∂A_l dα,

the other layers left clean. It is integrated gradients over a multiplicative gate G on the pattern:
a hook on `blocks.{l}.attn.hook_pattern` returns G ⊙ pattern, and IG of F with respect to G from the
baseline G = 0 to the input G = 1 is exactly the expression above (∂F/∂G = A ⊙ ∂F/∂(G ⊙ A)). So the
completeness axiom of IG holds per layer: a layer's attributions sum to F(G=1) − F(G=0), the clean
logit minus the logit with that layer's attention switched off, up to the quadrature error
δ = Σ Attr − (F(1) − F(0)) (captum's convergence delta, the sign `attribute --method ig` reports too), which is reported. The integral uses captum's IntegratedGradients: the gate
is the input, the model's inputs (or, for models that run in stages, the residual stream entering
layer l, computed once) are additional forward arguments expanded per step, and
`internal_batch_size` bounds how many (window, step) rows one forward/backward pass holds.

Each layer's attributions are summed over heads and over the parts of a partition of all
[query_pos, key_pos] edges (tokens grouped by modality, 0 = CLS):
  uni:<modality>  query and key in that modality, not the same token
  cross           query and key in different modalities, neither CLS (direct token-to-token edges)
  relay           a modality token reading CLS
  readout         CLS reading a modality token
  self            a token reading itself (the diagonal, CLS's own edge included)
  uni:cls         only for layouts with several group-0 tokens: one of them reading another
A part with no edge in the token layout is left out (a model without CLS has no relay or readout);
a part whose edges the model never uses (the mmt's cross) is kept, summed over no edge: exactly 0.
Absolute values are taken per entry (head, query, key) before summing, so heads cannot cancel in
the shares: share(part) = Σ_part |Attr| / Σ_all |Attr|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from einops import einsum

from isoprobe.attribution.common import COLUMNS as COMMON_COLUMNS
from isoprobe.attribution.common import Target, summarise
from isoprobe.data.batches import window_batches
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.grid import attached, attention_layers, is_staged
from isoprobe.engine.stats import Segments
from isoprobe.errors import ConfigError
from isoprobe.layersets import parse_layers
from isoprobe.models.components.staged import residual_stream, run_from
from isoprobe.models.modes import evaluating
from isoprobe.models.pathways import Pathway
from isoprobe.options import Options, check_choices, check_counts, check_level
from isoprobe.results import TableResult

METHOD = "attention"
ALL_LAYERS = "all layers"
ALL_EDGES = "all"  # the part of the per-layer totals and completeness rows
COLUMNS = (*COMMON_COLUMNS, "edges")  # edges: query-key pairs in the part that the model lets exist, per layer

# captum's quadrature rules. Hao et al. use the right Riemann sum (their Eq. 3, m = 20 steps);
# Gauss–Legendre reaches a smaller completeness error for the same number of forward passes.
# captum's `riemann_trapezoid` is left out: its step sizes sum to 1 − 1/n, not 1, so its
# attributions are shrunk by that factor and completeness fails by construction.
Rule = Literal["gausslegendre", "riemann_right", "riemann_middle", "riemann_left"]


@dataclass(frozen=True)
class AttentionConfig(Options):
    target: Target = "true"
    steps: int = 20
    method: Rule = "gausslegendre"
    layers: str = "all"  # 1-based, as the engine's --layers: `all`, `2-4`, `1,3`
    batch_size: int = 16
    internal_batch_size: int | None = None  # (window, step) rows per pass; None: all steps of a batch at once
    bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        check_choices(self)
        # Riemann rules need two points at least (captum asserts it); a negative seed breaks the bootstrap stream.
        check_counts(self, {"steps": 2, "batch_size": 1, "bootstrap": 0, "seed": 0})
        if self.internal_batch_size is not None and (not isinstance(self.internal_batch_size, int)
                                                     or self.internal_batch_size < self.batch_size):
            # captum would silently raise it to the batch size: say so instead.
            raise ConfigError("internal_batch_size", self.internal_batch_size,
                              f"an integer ≥ batch_size ({self.batch_size}), or None for all steps at once")
        if not isinstance(self.layers, str) or not self.layers.strip():
            raise ConfigError("layers", self.layers, "write layers as all, 2-4 or 1,3 (counted from 1)")
        check_level(self)


@dataclass(frozen=True)
class AttentionResult(TableResult):
    """The long attribution table (COLUMNS) and the configuration that produced it."""

    kind: ClassVar[str] = "attribution"

    def shares(self) -> pd.DataFrame:
        """Share estimates as a [site, part] grid (sites in table order, parts as columns)."""
        rows = self.table[self.table.quantity == "share"]
        grid = rows.pivot(index="site", columns="part", values="estimate")
        return grid.loc[list(dict.fromkeys(rows.site)), list(dict.fromkeys(rows.part))]


@dataclass(frozen=True)
class AttentionAttributions:
    """Per-window numbers behind the table. layers: the attributed shared layers (0-based);
    parts: part name -> boolean [query_pos, key_pos] edges (those the model lets exist); signed,
    absolute: [window, layer, part] sums over heads and the part's edges of Attr and |Attr|; delta:
    [window, layer] completeness error Σ Attr − (F(1) − F(0)) (captum's sign); target: [window] the
    class whose logit is explained."""

    layers: tuple[int, ...]
    parts: dict[str, torch.Tensor]
    signed: np.ndarray
    absolute: np.ndarray
    delta: np.ndarray
    target: np.ndarray


def edge_parts(token_groups: torch.Tensor, modality_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The partition of all [query_pos, key_pos] edges into uni:<modality>, cross, relay, readout and
    self (see the module docstring); parts without edges are left out. token_groups: [pos], 0 = CLS."""
    groups = torch.as_tensor(token_groups).long().cpu()
    names = tuple(modality_names)
    q, k = groups[:, None], groups[None, :]
    diagonal = torch.eye(len(groups), dtype=torch.bool)
    parts = {f"uni:{name}": (q == index) & (k == index) & ~diagonal for index, name in enumerate(names, start=1)}
    parts["uni:cls"] = (q == 0) & (k == 0) & ~diagonal  # the four named pathways never hold CLS-to-CLS edges
    parts.update({name: Pathway(name).edges(groups, names) for name in ("cross", "relay", "readout")})
    parts["self"] = diagonal
    return {name: edges for name, edges in parts.items() if edges.any()}


def existing_edges(model: torch.nn.Module, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each part's edges that the model lets exist (`attention_edges`, where it says; all edges
    otherwise). A part left without any (the mmt's cross) keeps its row and sums over no edge:
    exactly 0, not the rounding the attributions of other edges carry."""
    allowed = getattr(model, "attention_edges", None)
    if allowed is None or not parts:
        return parts
    positions = len(next(iter(parts.values())))
    if tuple(allowed.shape) != (positions, positions):
        raise ConfigError("token_groups", positions, f"one id per position: the model's attention has "
                          f"{allowed.shape[-1]} positions")
    return {name: edges & allowed.cpu() for name, edges in parts.items()}


def _pattern_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def _check_model(model: torch.nn.Module) -> int:
    """The number of shared attention layers; ConfigError("model", …) when they cannot be gated."""
    n_layers = attention_layers(model)  # raises for a model without blocks.{l}.attn.hook_attn_scores (an MLP)
    missing = [_pattern_hook(layer) for layer in range(n_layers) if _pattern_hook(layer) not in model.hook_dict]
    if missing:
        raise ConfigError("model", type(model).__name__, f"has no {', '.join(missing)}: attention attribution gates "
                          "the attention pattern at that hook point")
    return n_layers


@dataclass
class _CleanRun:
    """One clean pass over a batch: logits [batch, class]; the pattern [batch, head, q, k] of each
    attributed layer (its shape, dtype and device make the gate); for staged models the residual
    stream entering each shared layer [batch, pos, d_model] (None otherwise)."""

    logits: torch.Tensor
    patterns: dict[int, torch.Tensor]
    residuals: list[torch.Tensor] | None


@torch.no_grad()
def _clean_run(model: torch.nn.Module, inputs: Sequence[torch.Tensor], layers: Sequence[int], n_layers: int) -> _CleanRun:
    patterns: dict[int, torch.Tensor] = {}

    def keep(layer: int) -> Callable:
        def hook(pattern: torch.Tensor, hook=None) -> None:
            patterns[layer] = pattern
        return hook

    with attached(model, [(_pattern_hook(layer), keep(layer)) for layer in layers]):
        if not is_staged(model):
            return _CleanRun(model(*inputs), patterns, None)
        residuals = residual_stream(model, inputs, n_layers)
        return _CleanRun(run_from(model, n_layers, residuals[-1], n_layers), patterns, residuals)


def _integrate(model: torch.nn.Module, clean: _CleanRun, inputs: Sequence[torch.Tensor], target: torch.Tensor,
               layer: int, steps: int, method: str, internal_batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """IG of the target logit over a gate on layer `layer`'s pattern, from 0 to 1: (Attr [batch, head,
    q, k], δ [batch] = Σ Attr − (F(1) − F(0)), captum's). Model in eval mode and gradients enabled by the caller."""
    gate: list[torch.Tensor] = []  # the gate of the current forward pass [rows, head, q, k]

    def gated(pattern: torch.Tensor, hook=None) -> torch.Tensor:
        return pattern * gate[-1]

    if clean.residuals is not None:
        # Everything below the layer is the same for every α: start from its input, computed once.
        def run(x: torch.Tensor) -> torch.Tensor:
            return run_from(model, layer, x, len(clean.residuals) - 1)
        arguments: tuple = (clean.residuals[layer],)
    else:
        run, arguments = model, tuple(inputs)

    def forward(g: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        gate[:] = [g]
        return run(*args)

    # Imported here: captum.attr pulls in matplotlib and its LLM tooling (over a second), which
    # importing isoprobe or starting the CLI should not pay.
    from captum.attr import IntegratedGradients

    ones = torch.ones_like(clean.patterns[layer])
    with attached(model, [(_pattern_hook(layer), gated)]):
        attributions, captum_delta = IntegratedGradients(forward).attribute(
            ones, baselines=torch.zeros_like(ones), target=target, additional_forward_args=arguments, n_steps=steps,
            method=method, internal_batch_size=internal_batch_size, return_convergence_delta=True)
    # captum's convergence delta, Σ Attr − (F(1) − F(0)): one sign convention with integrated gradients
    return attributions.detach(), captum_delta.detach()


def layer_attributions(model: torch.nn.Module, inputs: Sequence[torch.Tensor], target: torch.Tensor, layer: int,
                       steps: int = 20, method: Rule = "gausslegendre", internal_batch_size: int | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Hao et al.'s attribution of shared layer `layer` (0-based) for one batch.

    inputs: the model's inputs (one [batch, time, channel] tensor per modality for isoprobe's models);
    target: [batch] class indices -> (Attr [batch, head, query_pos, key_pos], δ [batch]) with
    Σ Attr − δ = F(1) − F(0), F being the target logit with the layer's pattern scaled by the gate."""
    n_layers = _check_model(model)
    if not 0 <= layer < n_layers:
        raise ConfigError("layer", layer, f"the model has shared layers 0–{n_layers - 1} (0-based)")
    with evaluating(model), torch.inference_mode(False), torch.enable_grad():
        clean = _clean_run(model, inputs, (layer,), n_layers)
        return _integrate(model, clean, inputs, target, layer, steps, method, internal_batch_size)


def _grouping(model: torch.nn.Module, token_groups, modality_names) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Token -> group ids [pos] (0 = CLS) and group names, given or declared by the model."""
    if token_groups is None:
        token_groups = getattr(model, "token_modalities", None)
        if token_groups is None:
            raise ConfigError("token_groups", None, f"{type(model).__name__} declares no token_modalities: "
                              "pass token_groups (one id per position, 0 = CLS)")
    if modality_names is None:
        modality_names = getattr(model, "modality_names", None)
        if modality_names is None:
            raise ConfigError("modality_names", None, f"{type(model).__name__} declares no modality_names: pass them")
    groups, names = torch.as_tensor(token_groups).long().cpu(), tuple(modality_names)
    if groups.ndim != 1 or len(groups) == 0 or groups.min() < 0 or groups.max() > len(names):
        raise ConfigError("token_groups", groups.tolist(), f"one id per position in 0–{len(names)} "
                          f"(0 = CLS, i = modality i of {', '.join(names)})")
    return groups, names


def _part_sums(model: torch.nn.Module, clean: _CleanRun, inputs: Sequence[torch.Tensor], target: torch.Tensor,
               layers: Sequence[int], membership: torch.Tensor, config: AttentionConfig,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch, every layer: Σ Attr and Σ |Attr| over heads and each part's edges ([batch, layer,
    part], float64) and δ [batch, layer]. membership: boolean [part, q, k]."""
    edges = membership.to(clean.logits.device, torch.float64)
    signed, absolute, delta = [], [], []
    for layer in layers:
        attr, error = _integrate(model, clean, inputs, target, layer, config.steps, config.method,
                                 config.internal_batch_size)
        attr = attr.double()
        signed.append(einsum(attr, edges, "batch head q k, part q k -> batch part"))
        absolute.append(einsum(attr.abs(), edges, "batch head q k, part q k -> batch part"))
        delta.append(error.double())
    return torch.stack(signed, dim=1), torch.stack(absolute, dim=1), torch.stack(delta, dim=1)


def attention_attributions(model: torch.nn.Module, windows: WindowSet, config: AttentionConfig,
                           device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None,
                           token_groups: torch.Tensor | Sequence[int] | None = None,
                           modality_names: Sequence[str] | None = None,
                           layers: Sequence[int] | None = None) -> AttentionAttributions:
    """Per-window part sums and completeness errors of every configured layer, batch by batch (layers:
    0-based, already parsed by the caller; default `config.layers` parsed here).

    The model's inputs are `windows.x` in the order of `model.modality_names` (for a model that does
    not declare them: in the order of `windows.x`); token_groups / modality_names default to the
    model's `token_modalities` / `modality_names`. No number depends on the batch size."""
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to attribute")
    n_layers = _check_model(model)
    layers = tuple(layers) if layers is not None else parse_layers(config.layers, n_layers)
    groups, names = _grouping(model, token_groups, modality_names)
    parts = existing_edges(model, edge_parts(groups, names))
    model = model.to(device)
    input_names = tuple(getattr(model, "modality_names", None) or windows.x)
    membership = torch.stack(list(parts.values()))  # [part, q, k]
    labels = np.asarray(windows.y, dtype=np.int64)
    signed, absolute, delta, targets = [], [], [], []
    n_batches = math.ceil(len(windows) / config.batch_size)
    with evaluating(model), torch.inference_mode(False), torch.enable_grad():
        batches = window_batches(windows.x, input_names, config.batch_size, device)
        for index, inputs in enumerate(batches):
            clean = _clean_run(model, inputs, layers, n_layers)
            start = index * config.batch_size
            if config.target == "true":
                target = torch.as_tensor(labels[start : start + len(inputs[0])], device=clean.logits.device)
            elif config.target == "predicted":
                target = clean.logits.argmax(dim=-1)
            else:
                raise ConfigError("target", config.target, "choose true or predicted")
            if clean.patterns[layers[0]].shape[-1] != len(groups):
                raise ConfigError("token_groups", len(groups), f"one id per position: the model's attention has "
                                  f"{clean.patterns[layers[0]].shape[-1]} positions")
            sums = _part_sums(model, clean, inputs, target, layers, membership, config)
            for store, value in zip((signed, absolute, delta), sums):
                store.append(value.cpu())
            targets.append(target.cpu())
            if progress is not None:
                progress(index + 1, n_batches)
    return AttentionAttributions(layers, parts, torch.cat(signed).numpy(), torch.cat(absolute).numpy(),
                                 torch.cat(delta).numpy(), torch.cat(targets).numpy())


def attention_table(data: AttentionAttributions, segments: Segments, config: AttentionConfig) -> pd.DataFrame:
    """The long table (COLUMNS): per site (L1 … and "all layers") and part, the share of absolute
    attribution and the signed sum; per site, part "all": the signed total, δ and |δ|. Every number is
    computed per window, then averaged with a cluster-bootstrap CI over segments. "all layers" adds
    the layers' sums, δs and |δ|s, and takes shares of the absolute attribution of all layers."""
    names = list(data.parts)
    sites = [(f"L{layer + 1}", [i]) for i, layer in enumerate(data.layers)] + [(ALL_LAYERS, list(range(len(data.layers))))]
    keys, columns = [], []
    for site, index in sites:
        signed = data.signed[:, index].sum(axis=1)  # [window, part]
        absolute = data.absolute[:, index].sum(axis=1)
        total = absolute.sum(axis=1, keepdims=True)
        # A window whose whole attribution is exactly 0 has no shares to give (NaN, not 0/0 = 0).
        share = np.full_like(absolute, np.nan)
        np.divide(absolute, total, out=share, where=total > 0)
        for p, name in enumerate(names):
            keys += [{"site": site, "part": name, "quantity": "share"}, {"site": site, "part": name, "quantity": "sum"}]
            columns += [share[:, p], signed[:, p]]
        delta = data.delta[:, index]
        keys += [{"site": site, "part": ALL_EDGES, "quantity": q} for q in ("sum", "delta", "abs_delta")]
        columns += [signed.sum(axis=1), delta.sum(axis=1), np.abs(delta).sum(axis=1)]
    table = summarise(keys, np.stack(columns, axis=1), segments, config.bootstrap, config.seed, config.level)
    edges = {name: int(edges.sum()) for name, edges in data.parts.items()}
    edges[ALL_EDGES] = sum(edges.values())
    table["method"] = METHOD
    table["windows"] = len(data.signed)
    table["segments"] = segments.n_segments
    table["edges"] = table.part.map(edges)
    return table[list(COLUMNS)]


def attribute(model: torch.nn.Module, windows: WindowSet, config: AttentionConfig, reference: WindowSet | None = None,
              device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None,
              token_groups: torch.Tensor | Sequence[int] | None = None,
              modality_names: Sequence[str] | None = None) -> AttentionResult:
    """Attention attribution of the target logit (Hao et al. 2021) per shared layer and edge part.

    windows: the evaluated split (labels `y`, segments); reference: unused (the baseline is the zero
    gate, not a window), accepted for the shared contract; token_groups [pos] / modality_names: for a
    HookedRootModule that does not declare `token_modalities` / `modality_names`. The model runs in
    eval mode and is restored afterwards; hooks are removed whatever happens."""
    data = attention_attributions(model, windows, config, device, progress, token_groups, modality_names)
    return AttentionResult(config, attention_table(data, Segments.of_windows(windows), config))
