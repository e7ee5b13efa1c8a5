"""Sets of shared layers as people write them: one parser for the command line's grammar and one
formatter with its inverse for the labels in tables (`L3`, `L1-L5`, `L2,L4`). Layers are 0-based in code
and 1-based wherever a person reads or writes them, as the paper counts (DESIGN §3). Torch-free, so the
report can read labels without loading a model."""

from __future__ import annotations

import re
from typing import Sequence

from isoprobe.errors import ConfigError

_LABEL_PART = re.compile(r"L(\d+)(?:-L(\d+))?")


def parse_layers(spec: str, n_layers: int) -> tuple[int, ...]:
    """`1-5`, `2,4`, `1-2,5` or `all` (1-based) -> sorted 0-based layer indices, checked against n_layers."""
    if spec.strip() == "all":
        return tuple(range(n_layers))
    ranges: list[tuple[int, int]] = []
    try:
        for part in spec.split(","):
            first, last = (int(x) for x in part.split("-")) if "-" in part else (int(part),) * 2
            ranges.append((first, last))
    except ValueError:
        raise ConfigError("layers", spec, f"write layers as 1-{n_layers}, 2,4 or all") from None
    for first, last in ranges:
        if last < first:  # never silently an empty range
            raise ConfigError("layers", spec, f"the range {first}-{last} runs backwards; write {last}-{first}")
    layers = [layer for first, last in ranges for layer in range(first, last + 1)]
    bad = [layer for layer in layers if not 1 <= layer <= n_layers]
    if bad or not layers:
        raise ConfigError("layers", spec, f"layers count from 1 to {n_layers} (the model's shared stage has {n_layers})")
    return tuple(sorted(set(layer - 1 for layer in layers)))


def format_layers(layers: Sequence[int], prefix: str = "L") -> str:
    """0-based layers as a 1-based label: a consecutive set as a range ("L1-L5"), any other as a list
    ("L2,L4"); prefix "" gives the command line's spelling ("1-5"), which `parse_layers` reads back."""
    one = [layer + 1 for layer in sorted(layers)]
    if len(one) > 1 and one == list(range(one[0], one[-1] + 1)):
        return f"{prefix}{one[0]}-{prefix}{one[-1]}"
    return ",".join(f"{prefix}{layer}" for layer in one)


def parse_layer_label(label: str) -> tuple[int, ...]:
    """A label `format_layers` wrote ("L3", "L1-L5", "L2,L4") -> its 0-based layers; () for anything else
    (a site such as "inputs")."""
    layers: set[int] = set()
    for part in str(label).split(","):
        match = _LABEL_PART.fullmatch(part.strip())
        if match is None:
            return ()
        first = int(match.group(1))
        layers.update(range(first - 1, int(match.group(2) or first)))
    return tuple(sorted(layers))
